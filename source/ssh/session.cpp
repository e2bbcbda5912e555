#include "ferry/ssh/session.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>  // ssh_send_keepalive (client side too)

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/core.h>

#include "ferry/io/deadline.hpp"
#include "ferry/io/errors.hpp"
#include "ferry/io/fault.hpp"
#include "ferry/util/error.hpp"

namespace ferry::ssh {

std::string exit_status::describe() const {
    if (!signal.empty()) return fmt::format("killed by signal {}{}", signal, core_dumped ? " (core dumped)" : "");
    return fmt::format("exit code {}", code);
}

namespace detail {
namespace {

using clock = std::chrono::steady_clock;
using asio::experimental::as_tuple;

// Step names are named constants, never literals inside a co_await operand: g++ 12
// miscompiles string literals and braced temporaries there.
constexpr const char* step_connect = "connecting";
constexpr const char* step_handshake = "SSH handshake";
constexpr const char* step_auth = "authenticating";
constexpr const char* step_flush = "sending";
constexpr const char* step_slot = "waiting for a free channel slot";
constexpr const char* step_open = "opening a channel";
constexpr const char* step_exec = "starting the remote command";
constexpr const char* step_write = "writing to the remote command's stdin";
constexpr const char* step_eof = "sending EOF to the remote command";
constexpr const char* step_read = "reading the remote command's output";
constexpr const char* step_wait = "waiting for the remote command to exit";

// libssh must never write to stderr: no log level, and a sink in case.
void silence_libssh() {
    static std::once_flag once;
    std::call_once(once, [] {
        ssh_init();
        ssh_set_log_level(SSH_LOG_NOLOG);
        ssh_set_log_callback([](int, const char*, const char*, void*) {});
    });
}

std::string fingerprint(ssh_key key) {
    unsigned char* hash = nullptr;
    std::size_t len = 0;
    if (!key || ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &len) != 0) return "(unknown)";
    char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len);
    std::string out = text ? text : "(unknown)";
    ssh_string_free_char(text);
    ssh_clean_pubkey_hash(&hash);
    return out;
}

// Asio's epoll reactor is edge-triggered and a read *wait* does not re-arm: waiting
// while bytes already sit in the socket (libssh reads only 4 KiB per poll) would
// sleep until more arrive — possibly never. So look first.
bool readable_now(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0;
}

struct key_holder {
    ssh_key key = nullptr;
    ~key_holder() { ssh_key_free(key); }
};

}  // namespace

struct session_state : std::enable_shared_from_this<session_state> {
    asio::any_io_executor ex;
    session_options opt;
    std::string host;  // as the caller named it (an alias, maybe)
    std::string target;  // where it led: "user@address:port"
    ssh_session s = nullptr;
    ssh_event event = nullptr;
    std::optional<asio::posix::stream_descriptor> socket;
    asio::steady_timer wake;  // a pulse: cancelled to wake every waiter
    asio::steady_timer keepalive_timer;
    std::uint64_t generation = 0;
    std::size_t channels_in_use = 0;
    std::vector<channel_state*> channels;
    bool closed = false;
    std::optional<failure> broken;  // why the session became unusable
    clock::time_point last_input = clock::now();

    session_state(asio::any_io_executor e, session_options o)
        : ex(std::move(e)), opt(std::move(o)), host(opt.host), wake(ex, clock::time_point::max()), keepalive_timer(ex) {}
    ~session_state();

    void notify() {
        ++generation;
        wake.cancel();
    }
    failure error(errc code, std::string_view step) const {
        const char* what = s ? ssh_get_error(s) : "";
        return failure(code, fmt::format("{}: {}{}{}", host, step, what && *what ? ": " : "", what ? what : ""));
    }
    void check_usable(std::string_view step) const {
        if (broken) throw failure(broken->code(), fmt::format("{} (while {})", broken->what(), step));
        if (closed) throw failure(errc::cancelled, fmt::format("{}: {}: session closed", host, step));
    }
    void fail(failure f) {
        if (!broken) broken.emplace(std::move(f));
        notify();
    }
    // SSH_WRITE_PENDING only says POLLOUT is in libssh's poll mask, which can stay
    // set with nothing left to send: only a flush attempt tells.
    bool write_pending() {
        if (!(ssh_get_poll_flags(s) & SSH_WRITE_PENDING)) return false;
        int rc = ssh_blocking_flush(s, 0);
        if (rc == SSH_ERROR) fail(error(errc::connect_failed, "sending"));
        return rc == SSH_AGAIN;
    }
    void ensure_socket() {
        if (!socket && ssh_get_fd(s) >= 0) socket.emplace(ex, ssh_get_fd(s));
    }

    asio::awaitable<void> wait_change(std::uint64_t seen, const char* step);
    asio::awaitable<void> wait_socket(const char* step);
    asio::awaitable<void> flush(const char* step);
    asio::awaitable<void> handshake();
    void verify_host_key();
    asio::awaitable<void> authenticate();
    bool pump();
    asio::awaitable<void> drive();
    asio::awaitable<void> keepalive();
    // How long the peer has sent nothing. Any libssh call may be the one that
    // reads the peer's bytes (keepalive replies included), so ask the kernel:
    // TCP_INFO's last_data_recv; our own record where that is unavailable.
    clock::duration silence() const {
        auto ours = clock::now() - last_input;
        tcp_info info{};
        socklen_t len = sizeof info;
        if (::getsockopt(ssh_get_fd(s), IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return ours;
        return std::min<clock::duration>(ours, std::chrono::milliseconds(info.tcpi_last_data_recv));
    }
    void teardown();
};

struct channel_state {
    std::shared_ptr<session_state> session;
    ssh_channel ch = nullptr;
    ssh_channel_callbacks_struct callbacks{};
    std::string command;
    std::array<std::string, 2> buffered;  // stdout, stderr not yet read
    std::array<std::size_t, 2> consumed{};  // read offset in each
    // libssh kept bytes we could not take (our buffer was full). Only then is its
    // buffer read directly: reading it when empty would make libssh pump the socket.
    std::array<bool, 2> libssh_holds{};
    bool remote_eof = false, remote_closed = false, discard = false, slot_held = false;
    std::optional<exit_status> status;
    static constexpr std::size_t buffer_limit = 4 << 20;

    explicit channel_state(std::shared_ptr<session_state> s) : session(std::move(s)) {}
    ~channel_state() { close(); }

    std::string step(const char* what) const { return fmt::format("{} (`{}`)", what, command); }
    failure error(errc code, const char* what) const { return session->error(code, step(what)); }
    void fault(const char* what) {
        if (session->opt.faults) session->opt.faults->check(fmt::format("{}: {}", session->host, step(what)));
    }
    void close();
    void forget() {  // the session is going away: libssh frees the channel with it
        if (ch) ssh_remove_channel_callbacks(ch, &callbacks);
        ch = nullptr;
        release_slot();
    }
    void release_slot() {
        if (!slot_held) return;
        slot_held = false;
        --session->channels_in_use;
        session->notify();
    }
    void pull_leftovers(int which);
    void install_callbacks();
};

// --- waiting ------------------------------------------------------------------

asio::awaitable<void> session_state::wait_change(std::uint64_t seen, const char* step) {
    check_usable(step);
    if (generation != seen) co_return;
    auto [ec] = co_await wake.async_wait(as_tuple(asio::use_awaitable));
    (void)ec;
    check_usable(step);
    if (generation != seen) co_return;
    // Not a pulse: our own operation was cancelled (a deadline, a parallel group).
    asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none)
        throw failure(errc::cancelled, fmt::format("{}: {}: cancelled", host, step));
}

// During connect and auth, before the driver runs: the socket itself.
asio::awaitable<void> session_state::wait_socket(const char* step) {
    ensure_socket();
    if (!socket) throw error(errc::connect_failed, step);
    bool want_write = write_pending();
    if (!want_write && readable_now(ssh_get_fd(s))) co_return;
    auto [ec] = co_await socket->async_wait(want_write ? asio::posix::stream_descriptor::wait_write
                                                       : asio::posix::stream_descriptor::wait_read,
                                            as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted)
        throw failure(errc::cancelled, fmt::format("{}: {}: cancelled", host, step));
    if (ec) throw failure(ec, fmt::format("{}: {}", host, step));
}

// Pushes libssh's pending output into the socket; waits while the socket is full.
asio::awaitable<void> session_state::flush(const char* step) {
    while (s && !closed && (ssh_get_poll_flags(s) & SSH_WRITE_PENDING)) {
        int rc = ssh_blocking_flush(s, 0);
        if (rc == SSH_ERROR) {
            fail(error(errc::connect_failed, step));
            check_usable(step);
        }
        if (rc == SSH_OK) break;
        auto [ec] = co_await socket->async_wait(asio::posix::stream_descriptor::wait_write,
                                                as_tuple(asio::use_awaitable));
        if (ec) {
            check_usable(step);
            throw failure(errc::cancelled, fmt::format("{}: {}: cancelled", host, step));
        }
    }
    check_usable(step);
}

// --- connecting -----------------------------------------------------------------

asio::awaitable<void> session_state::handshake() {
    for (;;) {
        int rc = ssh_connect(s);
        if (rc == SSH_OK) break;
        if (rc == SSH_ERROR) throw error(errc::connect_failed, fmt::format("{} to {}", step_connect, target));
        co_await wait_socket(step_handshake);
    }
    ensure_socket();
    verify_host_key();
    co_await authenticate();
}

void session_state::verify_host_key() {
    key_holder offered;
    if (ssh_get_server_publickey(s, &offered.key) != SSH_OK) throw error(errc::connect_failed, "reading the host key");
    const std::string offered_fp = fingerprint(offered.key);
    const char* offered_type = ssh_key_type_to_char(ssh_key_type(offered.key));
    if (!opt.host_key.empty()) {
        // "type base64 [comment]"
        std::string line = opt.host_key;
        auto a = line.find_first_of(" \t");
        auto b = a == std::string::npos ? a : line.find_first_not_of(" \t", a);
        auto c = b == std::string::npos ? b : line.find_first_of(" \t\r\n", b);
        key_holder pinned;
        if (b == std::string::npos ||
            ssh_pki_import_pubkey_base64(line.substr(b, c == std::string::npos ? c : c - b).c_str(),
                                         ssh_key_type_from_name(line.substr(0, a).c_str()), &pinned.key) != SSH_OK)
            throw failure(errc::bad_input,
                          fmt::format("{}: the pinned host key is not an OpenSSH public key line "
                                      "(\"ssh-ed25519 AAAA...\"): '{}'",
                                      host, line.substr(0, 40)));
        if (ssh_key_cmp(offered.key, pinned.key, SSH_KEY_CMP_PUBLIC) != 0)
            throw failure(errc::host_key_mismatch,
                          fmt::format("{} ({}): host key mismatch: pinned {} {}, but the server offered {} {}; "
                                      "not connecting",
                                      host, target, line.substr(0, a), fingerprint(pinned.key), offered_type,
                                      offered_fp));
        return;
    }
    std::string file = opt.known_hosts.empty() ? "known_hosts" : opt.known_hosts.string();
    switch (ssh_session_is_known_server(s)) {
    case SSH_KNOWN_HOSTS_OK:
        return;
    case SSH_KNOWN_HOSTS_CHANGED: {
        ssh_knownhosts_entry* entry = nullptr;
        std::string expected = "(unknown)";
        if (ssh_session_get_known_hosts_entry(s, &entry) == SSH_KNOWN_HOSTS_CHANGED && entry)
            expected = fingerprint(entry->publickey);
        ssh_knownhosts_entry_free(entry);
        throw failure(errc::host_key_mismatch,
                      fmt::format("{} ({}): host key mismatch: {} lists {}, but the server offered {} {}; "
                                  "not connecting",
                                  host, target, file, expected, offered_type, offered_fp));
    }
    case SSH_KNOWN_HOSTS_OTHER:
        throw failure(errc::host_key_mismatch,
                      fmt::format("{} ({}): host key mismatch: {} lists a key of another type, the server "
                                  "offered {} {}; not connecting",
                                  host, target, file, offered_type, offered_fp));
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN:
        throw failure(errc::host_key_mismatch,
                      fmt::format("{} ({}): unknown host key {} {}: not in {} and no key pinned; ferry never "
                                  "accepts an unknown key",
                                  host, target, offered_type, offered_fp, file));
    default:
        throw error(errc::host_key_mismatch, fmt::format("checking the host key against {}", file));
    }
}

asio::awaitable<void> session_state::authenticate() {
    key_holder key;
    if (!opt.identity.empty() &&
        ssh_pki_import_privkey_file(opt.identity.c_str(), nullptr, nullptr, nullptr, &key.key) != SSH_OK)
        throw failure(errc::auth_failed,
                      fmt::format("{}: cannot read the private key {} (missing, or protected by a passphrase)", host,
                                  opt.identity.string()));
    for (;;) {
        int rc = key.key ? ssh_userauth_publickey(s, nullptr, key.key) : ssh_userauth_publickey_auto(s, nullptr, nullptr);
        if (rc == SSH_AUTH_SUCCESS) co_return;
        if (rc == SSH_AUTH_AGAIN) {
            co_await wait_socket(step_auth);
            continue;
        }
        if (rc == SSH_AUTH_ERROR) throw error(errc::auth_failed, step_auth);
        throw failure(errc::auth_failed,
                      fmt::format("{} ({}): public key authentication refused for {}", host, target,
                                  opt.identity.empty() ? std::string("the default identities and ssh-agent")
                                                       : opt.identity.string()));
    }
}

// --- the driver --------------------------------------------------------------

// Lets libssh read and process what arrived; callbacks fill channel buffers.
// libssh reads at most 4 KiB per poll: loop while there is more, bounded so
// readers get to run.
// Returns true when the socket is drained.
bool session_state::pump() {
    bool drained = false;
    for (int i = 0; i < 256 && !closed; ++i) {
        int rc = ssh_event_dopoll(event, 0);
        if (rc == SSH_ERROR) {
            fail(error(errc::connect_failed, "reading from the connection"));
            return true;
        }
        if (rc == SSH_AGAIN) {
            drained = true;
            break;
        }
        last_input = clock::now();  // the peer is alive (keepalive replies land here)
    }
    if (!closed && !ssh_is_connected(s)) fail(error(errc::connect_failed, "connection lost"));
    notify();
    return drained;
}

asio::awaitable<void> session_state::drive() {
    auto self = shared_from_this();
    while (!closed && !broken) {
        bool want_write = write_pending();
        if (!want_write && readable_now(ssh_get_fd(s))) {
            // Bytes are waiting already (see readable_now): process them, but let
            // the readers woken by the last round run first.
            co_await asio::post(ex, asio::use_awaitable);
            if (closed || broken) break;
            pump();
            continue;
        }
        auto [ec] = co_await socket->async_wait(want_write ? asio::posix::stream_descriptor::wait_write
                                                           : asio::posix::stream_descriptor::wait_read,
                                                as_tuple(asio::use_awaitable));
        if (closed) break;
        if (ec) {
            fail(failure(ec, fmt::format("{}: waiting on the connection", host)));
            break;
        }
        if (want_write) {
            if (ssh_blocking_flush(s, 0) == SSH_ERROR) fail(error(errc::connect_failed, step_flush));
            continue;
        }
        pump();
    }
}

asio::awaitable<void> session_state::keepalive() {
    auto self = shared_from_this();
    const auto interval = opt.keepalive_interval;
    while (!closed && !broken) {
        keepalive_timer.expires_after(interval);
        co_await keepalive_timer.async_wait(as_tuple(asio::use_awaitable));
        if (closed || broken) break;
        auto silent = silence();
        if (silent > interval * opt.keepalive_count_max) {
            fail(failure(errc::timed_out,
                         fmt::format("{}: no answer to keepalives for {} s: connection considered dead", host,
                                     std::chrono::duration_cast<std::chrono::seconds>(silent).count())));
            break;
        }
        // Half the interval: a reply that came just after the last check must not
        // make us skip a round and then see twice the silence.
        if (silent >= interval / 2) {
            // The server answers keepalive@openssh.com (with a failure): that is input.
            // libssh's first call after an answered request only clears its state
            // without sending; a second call then sends (or finds one pending).
            ssh_send_keepalive(s);
            ssh_send_keepalive(s);
            try {
                co_await flush(step_flush);
            } catch (const failure&) {
                break;
            }
        }
    }
}

void session_state::teardown() {
    if (closed) return;
    closed = true;
    for (auto* c : channels) c->forget();
    channels.clear();
    keepalive_timer.cancel();
    if (socket) {
        socket->cancel();
        socket->release();  // libssh owns and closes the fd
    }
    if (event && s) ssh_event_remove_session(event, s);
    if (s) ssh_disconnect(s);
    notify();
}

session_state::~session_state() {
    teardown();
    if (event) ssh_event_free(event);
    if (s) ssh_free(s);
}

// --- channels -------------------------------------------------------------------

namespace {

channel_state* state_of(void* userdata) { return static_cast<channel_state*>(userdata); }

int on_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr, void* user) {
    auto* c = state_of(user);
    c->session->last_input = clock::now();
    auto& buf = c->buffered[is_stderr ? 1 : 0];
    std::size_t take = len;
    if (!c->discard) {
        // Bounded: what we do not take stays in libssh's buffer, which stops
        // granting window to the remote until it drains.
        std::size_t held = buf.size() - c->consumed[is_stderr ? 1 : 0];
        take = std::min<std::size_t>(len, held >= channel_state::buffer_limit ? 0 : channel_state::buffer_limit - held);
        buf.append(static_cast<const char*>(data), take);
    }
    c->libssh_holds[is_stderr ? 1 : 0] = take < len;
    c->session->notify();
    return static_cast<int>(take);
}

void on_eof(ssh_session, ssh_channel, void* user) {
    auto* c = state_of(user);
    c->remote_eof = true;
    c->session->notify();
}

void on_close(ssh_session, ssh_channel, void* user) {
    auto* c = state_of(user);
    c->remote_eof = c->remote_closed = true;
    c->session->notify();
}

void on_exit_status(ssh_session, ssh_channel, int code, void* user) {
    auto* c = state_of(user);
    exit_status st;
    st.code = code;
    c->status = st;
    c->session->notify();
}

void on_exit_signal(ssh_session, ssh_channel, const char* signal, int core, const char*, const char*, void* user) {
    auto* c = state_of(user);
    exit_status st;
    st.signal = signal ? signal : "?";
    st.core_dumped = core != 0;
    c->status = st;
    c->session->notify();
}

}  // namespace

void channel_state::install_callbacks() {
    callbacks = {};
    ssh_callbacks_init(&callbacks);
    callbacks.userdata = this;
    callbacks.channel_data_function = on_data;
    callbacks.channel_eof_function = on_eof;
    callbacks.channel_close_function = on_close;
    callbacks.channel_exit_status_function = on_exit_status;
    callbacks.channel_exit_signal_function = on_exit_signal;
    ssh_set_channel_callbacks(ch, &callbacks);
}

void channel_state::close() {
    if (ch) {
        ssh_remove_channel_callbacks(ch, &callbacks);
        if (!session->closed) {
            if (!remote_closed) ssh_channel_close(ch);
            ssh_channel_free(ch);
        }
        ch = nullptr;
        std::erase(session->channels, this);
    }
    release_slot();
}

// Takes what libssh kept in its own buffer while ours was full (or discards it).
void channel_state::pull_leftovers(int which) {
    if (!ch) return;
    std::array<char, 16384> scratch;
    // Also asked when libssh_holds is false: reading the (empty) libssh buffer makes
    // libssh read the socket, which the driver alone might not get to at once.
    for (;;) {
        auto& buf = buffered[which];
        std::size_t held = buf.size() - consumed[which];
        if (!discard && held >= buffer_limit) return;
        std::size_t want = discard ? scratch.size() : std::min(scratch.size(), buffer_limit - held);
        int n = ssh_channel_read_nonblocking(ch, scratch.data(), static_cast<uint32_t>(want), which);
        if (n > 0 && !discard) buf.append(scratch.data(), static_cast<std::size_t>(n));
        // Fewer than asked for: libssh's buffer is empty now.
        if (n <= 0 || static_cast<std::size_t>(n) < want) {
            libssh_holds[which] = false;
            return;
        }
    }
}

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

namespace {

asio::awaitable<void> open_and_exec(std::shared_ptr<detail::channel_state> c) {
    auto& st = *c->session;
    const std::string step_open_full = c->step(detail::step_open);
    const std::string step_exec_full = c->step(detail::step_exec);
    for (int refused = 0;;) {
        std::uint64_t seen = st.generation;
        int rc = ssh_channel_open_session(c->ch);
        if (rc == SSH_OK) break;
        if (rc == SSH_ERROR && st.channels_in_use > 1 && ++refused < 50 && !st.broken && !st.closed) {
            // sshd frees a closed channel's session a moment after the CLOSE
            // exchange: an open right after a slot came free can still be refused
            // (MaxSessions). Try again shortly on a fresh channel.
            ssh_remove_channel_callbacks(c->ch, &c->callbacks);
            ssh_channel_free(c->ch);
            c->ch = ssh_channel_new(st.s);
            if (!c->ch) throw c->error(errc::remote_failed, detail::step_open);
            c->install_callbacks();
            asio::steady_timer pause(st.ex, std::chrono::milliseconds(20 * refused));
            co_await pause.async_wait(asio::use_awaitable);
            continue;
        }
        if (rc == SSH_ERROR) throw c->error(errc::remote_failed, detail::step_open);
        co_await st.flush(detail::step_flush);
        co_await st.wait_change(seen, step_open_full.c_str());
    }
    for (;;) {
        std::uint64_t seen = st.generation;
        int rc = ssh_channel_request_exec(c->ch, c->command.c_str());
        if (rc == SSH_OK) break;
        if (rc == SSH_ERROR) throw c->error(errc::remote_failed, detail::step_exec);
        co_await st.flush(detail::step_flush);
        co_await st.wait_change(seen, step_exec_full.c_str());
    }
    co_await st.flush(detail::step_flush);
}

}  // namespace

asio::awaitable<channel> session::exec(std::string command) {
    auto st = state_;
    if (!st) throw failure(errc::cancelled, "ssh exec on a closed session");
    auto c = std::make_shared<detail::channel_state>(st);
    c->command = std::move(command);
    c->fault(detail::step_exec);
    const std::string slot_step = c->step(detail::step_slot);
    // MaxSessions: queue rather than have the server refuse the channel.
    while (st->channels_in_use >= std::max<std::size_t>(1, st->opt.max_channels))
        co_await st->wait_change(st->generation, slot_step.c_str());
    st->check_usable(slot_step);
    ++st->channels_in_use;
    c->slot_held = true;
    c->ch = ssh_channel_new(st->s);
    if (!c->ch) throw c->error(errc::remote_failed, detail::step_open);
    st->channels.push_back(c.get());
    c->install_callbacks();
    const std::string what = fmt::format("{}: {}", st->host, c->step(detail::step_exec));
    co_await io::with_deadline(open_and_exec(c), st->opt.request_timeout, what);
    channel result;
    result.state_ = std::move(c);
    co_return result;
}

// --- channel ------------------------------------------------------------------------

channel::~channel() { close(); }

channel& channel::operator=(channel&& other) noexcept {
    if (this != &other) {
        close();
        state_ = std::move(other.state_);
    }
    return *this;
}

void channel::close() {
    if (state_) {
        state_->close();
        state_.reset();
    }
}

const std::string& channel::command() const {
    static const std::string none;
    return state_ ? state_->command : none;
}

namespace {
detail::channel_state& live(const std::shared_ptr<detail::channel_state>& c, const char* step) {
    if (!c) throw failure(errc::cancelled, fmt::format("ssh channel: {}: channel closed", step));
    return *c;
}
}  // namespace

asio::awaitable<void> channel::write(asio::const_buffer data) {
    auto keep = state_;
    auto& c = live(keep, detail::step_write);
    auto& st = *c.session;
    c.fault(detail::step_write);
    const std::string step = c.step(detail::step_write);
    const char* p = static_cast<const char*>(data.data());
    std::size_t left = data.size();
    while (left > 0) {
        st.check_usable(step);
        if (!c.ch) throw c.error(errc::remote_failed, detail::step_write);
        if (c.remote_closed) throw failure(errc::remote_failed, fmt::format("{}: {}: the channel was closed by the remote side", st.host, step));
        co_await st.flush(detail::step_flush);  // the socket takes no more: back-pressure
        std::uint64_t seen = st.generation;
        // Bounded per call so that libssh's output buffer stays small.
        int n = ssh_channel_write(c.ch, p, static_cast<uint32_t>(std::min<std::size_t>(left, 1 << 20)));
        if (n == SSH_ERROR) throw c.error(errc::remote_failed, detail::step_write);
        if (n > 0) {
            st.last_input = detail::clock::now();  // window to write into: the peer reads
            p += n;
            left -= static_cast<std::size_t>(n);
            continue;
        }
        // The remote window is closed: wait for a window adjust (processed by the driver).
        co_await st.wait_change(seen, step.c_str());
    }
    co_await st.flush(detail::step_flush);
}

asio::awaitable<void> channel::send_eof() {
    auto keep = state_;
    auto& c = live(keep, detail::step_eof);
    c.fault(detail::step_eof);
    c.session->check_usable(detail::step_eof);
    if (!c.ch || c.remote_closed) co_return;
    if (ssh_channel_send_eof(c.ch) == SSH_ERROR) throw c.error(errc::remote_failed, detail::step_eof);
    co_await c.session->flush(detail::step_flush);
}

asio::awaitable<std::size_t> channel::read(asio::mutable_buffer into, stream which) {
    auto keep = state_;
    auto& c = live(keep, detail::step_read);
    auto& st = *c.session;
    c.fault(detail::step_read);
    const int i = which == stream::err ? 1 : 0;
    const std::string step = c.step(detail::step_read);
    if (into.size() == 0) co_return 0;
    for (;;) {
        auto& buf = c.buffered[i];
        if (buf.size() == c.consumed[i]) {
            buf.clear();
            c.consumed[i] = 0;
            c.pull_leftovers(i);
        }
        if (buf.size() > c.consumed[i]) {
            std::size_t n = std::min(into.size(), buf.size() - c.consumed[i]);
            std::memcpy(into.data(), buf.data() + c.consumed[i], n);
            c.consumed[i] += n;
            // Reading from libssh's buffer may have granted window: send it.
            co_await st.flush(detail::step_flush);
            co_return n;
        }
        // stdout ends at the remote EOF. OpenSSH may still send stderr (extended
        // data) after its EOF, so stderr ends only when the channel closes.
        if (!c.ch || c.remote_closed || (i == 0 && c.remote_eof)) co_return 0;
        std::uint64_t seen = st.generation;
        co_await st.wait_change(seen, step.c_str());
    }
}

asio::awaitable<exit_status> channel::wait() {
    auto keep = state_;
    auto& c = live(keep, detail::step_wait);
    auto& st = *c.session;
    const std::string step = c.step(detail::step_wait);
    c.discard = true;
    for (int i = 0; i < 2; ++i) {
        c.buffered[i].clear();
        c.consumed[i] = 0;
    }
    for (;;) {
        if (c.status && c.remote_closed) break;
        if (c.remote_closed || !c.ch) {
            if (c.status) break;
            throw failure(errc::remote_failed,
                          fmt::format("{}: {}: the channel closed without an exit status", st.host, step));
        }
        c.pull_leftovers(0);
        c.pull_leftovers(1);
        co_await st.flush(detail::step_flush);
        std::uint64_t seen = st.generation;
        if (c.status && c.remote_closed) break;
        co_await st.wait_change(seen, step.c_str());
    }
    exit_status result = *c.status;
    c.close();  // frees the slot: the server has closed its side
    co_return result;
}

// --- run ------------------------------------------------------------------------------

namespace {

asio::awaitable<void> collect(channel& ch, stream which, std::string& into, std::size_t limit, std::string what) {
    std::array<char, 65536> buf;
    for (;;) {
        std::size_t n = co_await ch.read(asio::buffer(buf), which);
        if (n == 0) co_return;
        if (into.size() + n > limit)
            throw failure(errc::too_large, fmt::format("{}: more than {} bytes of output", what, limit));
        into.append(buf.data(), n);
    }
}

asio::awaitable<void> feed(channel& ch, const std::string& input) {
    if (!input.empty()) co_await ch.write(asio::buffer(input));
    co_await ch.send_eof();
}

}  // namespace

asio::awaitable<command_result> run(session& s, std::string command, std::string input, std::size_t output_limit) {
    using namespace asio::experimental::awaitable_operators;
    channel ch = co_await s.exec(command);
    command_result result;
    const std::string what_out = fmt::format("{}: stdout of `{}`", s.host(), command);
    const std::string what_err = fmt::format("{}: stderr of `{}`", s.host(), command);
    try {
        co_await (feed(ch, input) && collect(ch, stream::out, result.out, output_limit, what_out) &&
                  collect(ch, stream::err, result.err, output_limit, what_err));
    } catch (const asio::multiple_exceptions& e) {
        // The first failure is the cause; the others are the cancellations it caused.
        std::rethrow_exception(io::first_cause(e.first_exception()));
    }
    result.status = co_await ch.wait();
    co_return result;
}

}  // namespace ferry::ssh
