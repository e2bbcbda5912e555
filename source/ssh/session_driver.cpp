// Driving the connection once it is up: waiting for wake-ups, flushing, the
// coroutine that lets libssh read the socket, the keepalive, and teardown.
#include "session_state.hpp"

#include <libssh/server.h>  // ssh_send_keepalive (client side too)

#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace ferry::ssh::detail {

using asio::experimental::as_tuple;

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
    acknowledge_now(ssh_get_fd(s));  // what the last step read
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
    if (!closed) acknowledge_now(ssh_get_fd(s));
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

}  // namespace ferry::ssh::detail
