// Internal to the ssh layer: the state behind ferry::ssh::session and
// ferry::ssh::channel, shared by session.cpp (connect, lifetime),
// session_connect.cpp (handshake, host key, authentication),
// session_driver.cpp (socket driving, wake-ups, keepalive) and channel.cpp.
#pragma once

#include "ferry/ssh/session.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/core.h>

#include "ferry/io/errors.hpp"
#include "ferry/io/fault.hpp"
#include "ferry/util/error.hpp"

namespace ferry::ssh::detail {

using clock = std::chrono::steady_clock;

// Step names are named constants, never literals inside a co_await operand: g++ 12
// miscompiles string literals and braced temporaries there.
inline constexpr const char* step_connect = "connecting";
inline constexpr const char* step_handshake = "SSH handshake";
inline constexpr const char* step_auth = "authenticating";
inline constexpr const char* step_flush = "sending";
inline constexpr const char* step_slot = "waiting for a free channel slot";
inline constexpr const char* step_open = "opening a channel";
inline constexpr const char* step_exec = "starting the remote command";
inline constexpr const char* step_write = "writing to the remote command's stdin";
inline constexpr const char* step_eof = "sending EOF to the remote command";
inline constexpr const char* step_read = "reading the remote command's output";
inline constexpr const char* step_wait = "waiting for the remote command to exit";

// Asio's epoll reactor is edge-triggered and a read *wait* does not re-arm: waiting
// while bytes already sit in the socket (libssh reads only 4 KiB per poll) would
// sleep until more arrive — possibly never. So look first.
inline bool readable_now(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0;
}

// Acknowledges what arrived at once instead of after the delayed-ACK timer (40 ms
// on Linux). sshd leaves Nagle's algorithm on for sessions without a terminal, so
// its second small packet in a row waits for our ACK of the first: the login and
// each request/reply exchange stalled 40 ms that way. Not sticky in the kernel,
// hence after every read. A socket that is not TCP (a test pipe) just says no.
inline void acknowledge_now(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

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

}  // namespace ferry::ssh::detail
