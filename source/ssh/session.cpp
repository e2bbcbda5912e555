// ferry::ssh::session: options, connect, and the session's lifetime.
#include "session_state.hpp"

#include <mutex>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "ferry/io/deadline.hpp"

namespace ferry::ssh {

namespace detail {
namespace {

// libssh must never write to stderr: no log level, and a sink in case.
void silence_libssh() {
    static std::once_flag once;
    std::call_once(once, [] {
        ssh_init();
        ssh_set_log_level(SSH_LOG_NOLOG);
        ssh_set_log_callback([](int, const char*, const char*, void*) {});
    });
}

}  // namespace
}  // namespace detail

// --- session ----------------------------------------------------------------------

asio::awaitable<session> session::connect(session_options options) {
    detail::silence_libssh();
    auto ex = co_await asio::this_coro::executor;
    auto st = std::make_shared<detail::session_state>(ex, std::move(options));
    auto& opt = st->opt;
    st->s = ssh_new();
    if (!st->s) throw failure(errc::connect_failed, fmt::format("{}: ssh_new failed", opt.host));
    ssh_session s = st->s;
    int verbosity = SSH_LOG_NOLOG;
    ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
    if (ssh_options_set(s, SSH_OPTIONS_HOST, opt.host.c_str()) != SSH_OK)
        throw st->error(errc::bad_input, "setting the host name");
    if (opt.read_config) {
        if (ssh_options_parse_config(s, opt.config_file.empty() ? nullptr : opt.config_file.c_str()) != SSH_OK)
            throw st->error(errc::bad_input,
                            fmt::format("reading ssh config {}",
                                        opt.config_file.empty() ? "~/.ssh/config" : opt.config_file.string()));
    } else {
        bool no = false;
        ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &no);
    }
    if (opt.port) {
        unsigned int port = *opt.port;
        ssh_options_set(s, SSH_OPTIONS_PORT, &port);
    }
    if (!opt.user.empty()) ssh_options_set(s, SSH_OPTIONS_USER, opt.user.c_str());
    if (!opt.known_hosts.empty()) {
        ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, opt.known_hosts.c_str());
        ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
    }
    if (!opt.ciphers.empty() && (ssh_options_set(s, SSH_OPTIONS_CIPHERS_C_S, opt.ciphers.c_str()) != SSH_OK ||
                                 ssh_options_set(s, SSH_OPTIONS_CIPHERS_S_C, opt.ciphers.c_str()) != SSH_OK))
        throw st->error(errc::bad_input, fmt::format("setting ciphers '{}'", opt.ciphers));
    // Without TCP_NODELAY a small packet written while the previous one is
    // unacknowledged waits for the peer's delayed ACK (40 ms on Linux): the
    // handshake and login stalled four times, 0.17 s of a 0.2 s connect on loopback,
    // and every short request/reply exchange after it could stall the same way.
    // Bulk writes are whole SSH packets, so nothing is lost by sending at once.
    int nodelay = 1;
    ssh_options_set(s, SSH_OPTIONS_NODELAY, &nodelay);
    {
        char* address = nullptr;
        char* user = nullptr;
        unsigned int port = 22;
        ssh_options_get(s, SSH_OPTIONS_HOST, &address);
        ssh_options_get(s, SSH_OPTIONS_USER, &user);
        ssh_options_get_port(s, &port);
        st->target = fmt::format("{}{}{}:{}", user ? user : "", user ? "@" : "", address ? address : "?", port);
        ssh_string_free_char(address);
        ssh_string_free_char(user);
    }
    ssh_set_blocking(s, 0);

    const std::string what = fmt::format("{} ({}): connecting, SSH handshake and login", opt.host, st->target);
    co_await io::with_deadline(st->handshake(), opt.connect_timeout, what);

    st->event = ssh_event_new();
    if (!st->event || ssh_event_add_session(st->event, s) != SSH_OK)
        throw st->error(errc::connect_failed, "setting up the event loop");
    st->last_input = detail::clock::now();
    asio::co_spawn(ex, st->drive(), asio::detached);
    asio::co_spawn(ex, st->keepalive(), asio::detached);
    session result;
    result.state_ = std::move(st);
    co_return result;
}

session::~session() { close(); }

session& session::operator=(session&& other) noexcept {
    if (this != &other) {
        close();
        state_ = std::move(other.state_);
    }
    return *this;
}

void session::close() {
    if (state_) {
        state_->teardown();
        state_.reset();
    }
}

bool session::is_open() const { return state_ && !state_->closed && !state_->broken; }

const std::string& session::host() const {
    static const std::string none;
    return state_ ? state_->host : none;
}

std::size_t session::open_channels() const { return state_ ? state_->channels_in_use : 0; }

}  // namespace ferry::ssh
