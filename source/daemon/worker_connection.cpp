#include "ferry/daemon/worker_connection.hpp"

#include "ferry/protocol/wire.hpp"

#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <asio/experimental/as_tuple.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::daemon {

namespace worker = protocol::worker;

namespace detail {

struct worker_state {
    worker_state(asio::any_io_executor ex, std::string path, daemon_log log_)
        : socket_path(std::move(path)), socket(std::move(ex)), log(std::move(log_)) {}

    std::string socket_path;
    asio::local::stream_protocol::socket socket;
    daemon_log log;
    worker::worker_client client;
    std::string in;                             // daemon bytes not decoded yet
    std::vector<char> read_buffer = std::vector<char>(65536);
    std::string daemon_version;
    bool broken = false;
    bool closed = false;

    // "<socket>: Nix daemon: <step>", the prefix of every error.
    std::string where(std::string_view step) const {
        auto d = client.dialect();
        return fmt::format("{}: {} daemon: {}", socket_path, d ? worker::to_string(*d) : "store", step);
    }
};

}  // namespace detail

namespace {

using detail::worker_state;

// The daemon ended the operation with STDERR_ERROR: the stream is in sync, so the
// connection stays usable (unlike for every other failure).
struct daemon_refused : failure {
    using failure::failure;
};

// Nix 2.8 colours the path in its messages (hintfmt's ANSI "\x1b[35;1m...\x1b[0m");
// ferry's messages go to logs and the build hook's stderr: CSI sequences are dropped.
std::string without_terminal_escapes(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\x1b' && i + 1 < text.size() && text[i + 1] == '[') {
            i += 2;
            while (i < text.size() && !(text[i] >= 0x40 && text[i] <= 0x7e)) ++i;  // up to the final byte
            continue;
        }
        out += text[i];
    }
    return out;
}

asio::awaitable<void> send(worker_state& st, const std::string& bytes) {
    co_await asio::async_write(st.socket, asio::buffer(bytes), asio::use_awaitable);
}

// The next whole message; reads more bytes as needed. A data_chunk views st.in:
// the caller uses it, then drops r.consumed bytes.
asio::awaitable<worker::worker_client::result> next_message(worker_state& st) {
    for (;;) {
        auto r = st.client.decode(st.in);
        if (!r.need_more()) co_return r;
        auto [ec, n] = co_await st.socket.async_read_some(asio::buffer(st.read_buffer),
                                                          asio::experimental::as_tuple(asio::use_awaitable));
        if (ec == asio::error::eof || (!ec && n == 0))
            throw failure(errc::remote_failed, fmt::format("the daemon closed the connection at offset {} while "
                                                           "ferry waited for {}", st.client.stream_offset() + st.in.size(),
                                                           st.client.awaited()));
        if (ec) throw asio::system_error(ec);
        st.in.append(st.read_buffer.data(), n);
    }
}

// Handles the stderr stream of the front operation up to its final message, which
// it returns (done or path_info_reply). Log lines go to st.log, export pieces to
// on_data; a daemon error is thrown as daemon_refused.
asio::awaitable<worker::worker_client::message> until_final(worker_state& st, std::string_view step,
                                                            const worker_connection::data_sink* on_data) {
    for (;;) {
        auto r = co_await next_message(st);
        if (auto* piece = std::get_if<worker::data_chunk>(&r.msg)) {
            // Awaited before the next read; the piece views st.in, dropped after.
            if (on_data && *on_data) co_await (*on_data)(piece->bytes);
            st.in.erase(0, r.consumed);
            continue;
        }
        std::optional<worker::worker_client::message> final_message;
        std::optional<std::string> refusal;
        std::visit(
            [&](auto& m) {
                using T = std::decay_t<decltype(m)>;
                if constexpr (std::is_same_v<T, worker::log_line>) {
                    if (st.log) st.log(m.text);
                } else if constexpr (std::is_same_v<T, worker::daemon_version>) {
                    st.daemon_version = m.text;
                } else if constexpr (std::is_same_v<T, worker::daemon_error>) {
                    refusal = without_terminal_escapes(m.message);
                } else if constexpr (std::is_same_v<T, worker::done> || std::is_same_v<T, worker::path_info_reply>) {
                    final_message = std::move(m);
                }
                // activity: skipped; server_hello cannot come here (the codec expects it only first).
            },
            r.msg);
        // Dropped only now: a data_chunk views these bytes. The codec has moved past
        // them, so they must be dropped before an error is thrown, too.
        st.in.erase(0, r.consumed);
        if (refusal) throw daemon_refused(errc::remote_failed, fmt::format("{}: {}", st.where(step), *refusal));
        if (final_message) co_return std::move(*final_message);
    }
}

// Runs one request and its reply. Failures other than the daemon's own error
// break the connection and are rethrown as ferry::failure naming the socket.
template <class T, class Body>
asio::awaitable<T> exchange(worker_state& st, std::string step, Body body) {
    if (st.closed) throw failure(errc::cancelled, st.where(step) + ": the connection is closed");
    if (st.broken) throw failure(errc::remote_failed, st.where(step) + ": an earlier operation failed; reconnect");
    try {
        co_return co_await body(step);
    } catch (const daemon_refused&) {
        throw;
    } catch (const failure& e) {
        st.broken = true;
        if (std::string_view(e.what()).find(st.socket_path) != std::string_view::npos) throw;
        throw failure(e.code(), fmt::format("{}: {}", st.where(step), e.what()));
    } catch (const asio::system_error& e) {
        st.broken = true;
        bool cancelled = e.code() == asio::error::operation_aborted;
        throw failure(cancelled ? errc::cancelled : errc::remote_failed,
                      fmt::format("{}: {}", st.where(step), e.code().message()));
    } catch (...) {
        st.broken = true;
        throw;
    }
}

asio::awaitable<void> handshake(worker_state& st) {
    co_await send(st, st.client.hello());
    auto r = co_await next_message(st);
    st.in.erase(0, r.consumed);
    co_await send(st, st.client.finish_handshake());
    co_await until_final(st, "the handshake", nullptr);
}

}  // namespace

worker_connection::worker_connection() = default;
worker_connection::worker_connection(worker_connection&&) noexcept = default;
worker_connection& worker_connection::operator=(worker_connection&& other) noexcept {
    if (this != &other) {
        close();
        state_ = std::move(other.state_);
    }
    return *this;
}
worker_connection::~worker_connection() { close(); }

asio::awaitable<worker_connection> worker_connection::connect(std::string socket_path, daemon_log log) {
    worker_connection c;
    c.state_ = std::make_unique<worker_state>(co_await asio::this_coro::executor, std::move(socket_path),
                                              std::move(log));
    auto& st = *c.state_;
    auto [ec] = co_await st.socket.async_connect(asio::local::stream_protocol::endpoint(st.socket_path),
                                                 asio::experimental::as_tuple(asio::use_awaitable));
    if (ec)
        throw failure(errc::connect_failed,
                      fmt::format("{}: connecting to the store daemon's socket: {}", st.socket_path, ec.message()));
    co_await exchange<void>(st, "the handshake", [&st](std::string) { return handshake(st); });
    co_return c;
}

worker::dialect worker_connection::dialect() const { return state_->client.dialect().value(); }
std::uint64_t worker_connection::server_version() const { return state_->client.server_version().value_or(0); }
const std::string& worker_connection::daemon_version() const { return state_->daemon_version; }
const std::string& worker_connection::socket_path() const { return state_->socket_path; }
bool worker_connection::broken() const { return !state_ || state_->broken || state_->closed; }
void worker_connection::set_log(daemon_log log) { state_->log = std::move(log); }

asio::awaitable<void> worker_connection::export_path(std::string path, bool sign,
                                                     data_sink on_data) {
    auto& st = *state_;
    co_await exchange<void>(st, "ExportPath of " + path, [&](std::string step) -> asio::awaitable<void> {
        co_await send(st, st.client.export_path(path, sign));
        co_await until_final(st, step, &on_data);
    });
}

asio::awaitable<std::optional<worker::path_info>> worker_connection::query_path_info(std::string path) {
    auto& st = *state_;
    co_return co_await exchange<std::optional<worker::path_info>>(
        st, "QueryPathInfo of " + path, [&](std::string step) -> asio::awaitable<std::optional<worker::path_info>> {
            co_await send(st, st.client.query_path_info(path));
            auto reply = co_await until_final(st, step, nullptr);
            auto* info = std::get_if<worker::path_info_reply>(&reply);
            if (!info) throw failure(errc::bad_input, "the daemon answered with something other than a path info");
            co_return std::move(info->info);
        });
}

asio::awaitable<void> worker_connection::add_temp_root(std::string path) {
    auto& st = *state_;
    co_await exchange<void>(st, "AddTempRoot of " + path, [&](std::string step) -> asio::awaitable<void> {
        co_await send(st, st.client.add_temp_root(path));
        co_await until_final(st, step, nullptr);
    });
}

void worker_connection::close() noexcept {
    if (!state_ || state_->closed) return;
    state_->closed = true;
    asio::error_code ignored;
    state_->socket.close(ignored);
}

asio::awaitable<void> export_bundle(worker_connection& c, const std::vector<std::string>& paths, bool sign,
                                    const worker_connection::data_sink& on_data) {
    std::string marker;
    for (const auto& path : paths) {
        marker.clear();
        protocol::wire::append_u64(marker, 1);
        co_await on_data(marker);
        co_await c.export_path(path, sign, on_data);
    }
    marker.clear();
    protocol::wire::append_u64(marker, 0);
    co_await on_data(marker);
}

}  // namespace ferry::daemon
