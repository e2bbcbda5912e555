#include "ferry/remote/serve_connection.hpp"

#include <algorithm>
#include <array>
#include <set>
#include <variant>

#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::remote {

namespace serve = protocol::serve;

namespace detail {

struct serve_state {
    std::string host;
    nix_remote_options options;
    ssh::channel ch;
    serve::serve_client client;
    std::string in;  // reply bytes not decoded yet
    stderr_tail tail;
    bool broken = false;
    bool closed = false;

    void check_usable(const char* step) const {
        if (closed) throw failure(errc::cancelled, fmt::format("{}: nix-store --serve: {}: the connection is closed", host, step));
        if (broken)
            throw failure(errc::remote_failed,
                          fmt::format("{}: nix-store --serve: {}: an earlier operation failed; reconnect", host, step));
    }
};

}  // namespace detail

namespace {

using detail::serve_state;

// The next whole reply; throws remote_failed (quoting stderr) if stdout ends first.
asio::awaitable<serve::serve_client::reply> read_reply(serve_state& st) {
    std::array<char, 65536> buf;
    for (;;) {
        auto r = st.client.decode(st.in);
        if (!r.need_more()) {
            st.in.erase(0, r.consumed);
            co_return std::move(r.msg);
        }
        std::size_t n = co_await st.ch.read(asio::buffer(buf));
        if (n == 0) {
            co_await st.tail.wait_complete(stderr_grace);
            std::string message;
            st.client.end_of_stream(message);
            throw failure(errc::remote_failed, fmt::format("{}: `{}`: {}{}", st.host, st.ch.command(), message,
                                                           st.tail.quote()));
        }
        st.in.append(buf.data(), n);
    }
}

template <class Reply>
Reply expect(serve_state& st, serve::serve_client::reply r, const char* what) {
    if (auto* p = std::get_if<Reply>(&r)) return std::move(*p);
    throw failure(errc::bad_input, fmt::format("{}: nix-store --serve: unexpected reply to {}", st.host, what));
}

// Runs one request/reply exchange beside the stderr pump; a failure breaks the connection.
template <class T, class F>
asio::awaitable<T> exchange(serve_state& st, const char* step, F body, log_sink sink = {}) {
    st.check_usable(step);
    try {
        co_return co_await with_stderr<T>(st.ch, body(), st.tail, std::move(sink));
    } catch (...) {
        st.broken = true;
        throw;
    }
}

asio::awaitable<void> drain(ssh::channel& ch) {
    std::array<char, 16384> buf;
    while (co_await ch.read(asio::buffer(buf)) > 0) {
    }
}

}  // namespace

serve_connection::serve_connection() = default;
serve_connection::serve_connection(serve_connection&&) noexcept = default;
serve_connection& serve_connection::operator=(serve_connection&& other) noexcept {
    if (this != &other) {
        abort();
        state_ = std::move(other.state_);
    }
    return *this;
}
serve_connection::~serve_connection() { abort(); }

asio::awaitable<serve_connection> serve_connection::open(ssh::session& s, nix_remote_options options) {
    serve_connection c;
    c.state_ = std::make_unique<serve_state>();
    auto& st = *c.state_;
    st.host = s.host();
    st.options = std::move(options);
    st.ch = co_await s.exec(serve_command(st.options));
    co_await exchange<void>(st, "handshake", [&st]() -> asio::awaitable<void> {
        auto hello = st.client.hello();
        co_await st.ch.write(asio::buffer(hello));
        auto h = expect<serve::server_hello>(st, co_await read_reply(st), "the handshake");
        if (serve::minor_of(h.version) < 5)
            throw failure(errc::unsupported,
                          fmt::format("{}: nix-store --serve speaks protocol 0x{:x}; ferry needs 0x205 or later "
                                      "(Nix 2.4+)",
                                      st.host, h.version));
    });
    co_return c;
}

std::uint64_t serve_connection::server_version() const { return state_ ? state_->client.server_version().value_or(0) : 0; }
const std::string& serve_connection::host() const { return state_->host; }
const nix_remote_options& serve_connection::options() const { return state_->options; }
bool serve_connection::broken() const { return !state_ || state_->broken || state_->closed; }
std::string serve_connection::stderr_text() const { return state_ ? state_->tail.text() : std::string(); }

asio::awaitable<std::vector<std::string>> serve_connection::query_valid_paths(const std::vector<std::string>& paths,
                                                                              bool lock, bool substitute) {
    auto& st = *state_;
    check_store_paths(st.options, paths);
    co_return co_await exchange<std::vector<std::string>>(
        st, "QueryValidPaths", [&]() -> asio::awaitable<std::vector<std::string>> {
            auto req = st.client.query_valid_paths(paths, lock, substitute);
            co_await st.ch.write(asio::buffer(req));
            co_return expect<serve::valid_paths>(st, co_await read_reply(st), "QueryValidPaths").paths;
        });
}

namespace {

std::vector<std::string> not_in(const std::vector<std::string>& paths, const std::vector<std::string>& valid) {
    std::set<std::string> have(valid.begin(), valid.end());
    std::vector<std::string> missing;
    for (const auto& p : paths)
        if (!have.count(p)) missing.push_back(p);
    return missing;
}

}  // namespace

asio::awaitable<std::vector<std::string>> serve_connection::query_missing(const std::vector<std::string>& paths,
                                                                          bool substitute) {
    co_return not_in(paths, co_await query_valid_paths(paths, false, substitute));
}

asio::awaitable<std::vector<std::string>> serve_connection::protect_and_query_missing(
    const std::vector<std::string>& paths, bool substitute) {
    // nix-store --serve adds the temp roots before it substitutes and answers.
    co_return not_in(paths, co_await query_valid_paths(paths, true, substitute));
}

asio::awaitable<std::vector<serve::path_info>> serve_connection::query_path_infos(const std::vector<std::string>& paths) {
    auto& st = *state_;
    check_store_paths(st.options, paths);
    co_return co_await exchange<std::vector<serve::path_info>>(
        st, "QueryPathInfos", [&]() -> asio::awaitable<std::vector<serve::path_info>> {
            auto req = st.client.query_path_infos(paths);
            co_await st.ch.write(asio::buffer(req));
            co_return expect<serve::path_infos>(st, co_await read_reply(st), "QueryPathInfos").infos;
        });
}

asio::awaitable<serve::build_result> serve_connection::build_derivation(std::string drv_path,
                                                                        serve::basic_derivation drv,
                                                                        serve::build_options options, log_sink log) {
    auto& st = *state_;
    check_store_paths(st.options, {drv_path});
    co_return co_await exchange<serve::build_result>(
        st, "BuildDerivation",
        [&]() -> asio::awaitable<serve::build_result> {
            auto req = st.client.build_derivation(drv_path, drv, options);
            co_await st.ch.write(asio::buffer(req));
            co_return expect<serve::build_result>(st, co_await read_reply(st), "BuildDerivation");
        },
        std::move(log));
}

asio::awaitable<void> serve_connection::close() {
    if (!state_ || state_->closed) co_return;
    auto& st = *state_;
    if (st.broken) {
        abort();
        co_return;
    }
    ssh::exit_status status;
    try {
        co_await st.ch.send_eof();
        // Read stdout to its end beside stderr, so a last warning reaches the tail.
        co_await with_stderr<void>(st.ch, drain(st.ch), st.tail);
        status = co_await st.ch.wait();
    } catch (...) {
        abort();
        throw;
    }
    st.closed = true;
    if (!status.success())
        throw failure(errc::remote_failed, fmt::format("{}: `{}` ended with {}{}", st.host, st.ch.command(),
                                                       status.describe(), st.tail.quote()));
}

void serve_connection::abort() noexcept {
    if (!state_ || state_->closed) return;
    state_->closed = true;
    state_->ch.close();
}

serve::basic_derivation to_basic_derivation(const store::derivation& drv, const std::vector<std::string>& inputs) {
    serve::basic_derivation b;
    for (const auto& o : drv.outputs) b.outputs[o.name] = serve::derivation_output{o.path, o.hash_algo, o.hash};
    b.input_srcs.insert(inputs.begin(), inputs.end());
    b.platform = drv.platform;
    b.builder = drv.builder;
    b.args = drv.args;
    for (const auto& [k, v] : drv.env) b.env[k] = v;
    return b;
}

}  // namespace ferry::remote
