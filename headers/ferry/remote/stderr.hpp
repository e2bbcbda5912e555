// A remote command's stderr, read while the caller works on its stdout.
//
// libssh grants a channel one window for stdout and stderr together: a command
// whose stderr nobody reads stalls its stdout once ferry's bounded stderr buffer
// is full. So every long operation on a channel runs beside a pump that drains
// stderr — into a caller's sink (a build log goes to the daemon's fd 4 as it
// comes) and into a bounded tail that error messages quote.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "ferry/ssh/session.hpp"

namespace ferry::remote {

// Receives stderr bytes as they arrive (any chunking). Awaited before the next
// read: a slow sink slows the remote down instead of buffering without bound.
using log_sink = std::function<asio::awaitable<void>(std::string_view)>;

// The last `limit` bytes of a stream.
class stderr_tail {
public:
    explicit stderr_tail(std::size_t limit = 16384) : limit_(limit) {}
    void append(std::string_view bytes);
    const std::string& text() const { return text_; }
    // "" when empty, else "; remote stderr: <last lines>" for error messages,
    // preceded by "; disk full on the remote machine" when it says ENOSPC.
    std::string quote() const;
    std::size_t total() const { return total_; }

    // The pump read stderr to its end.
    void mark_complete();
    // Waits until mark_complete, at most `limit`. An error composed when stdout
    // ended must quote the stderr that came with it: SSH's EOF covers both
    // streams, so by then libssh holds all of it, but the pump may not have read
    // it yet.
    asio::awaitable<void> wait_complete(std::chrono::milliseconds limit);

private:
    std::size_t limit_;
    std::size_t total_ = 0;
    std::string text_;
    bool complete_ = false;
    asio::steady_timer* waiter_ = nullptr;  // the pending wait_complete, if any
};

// How long an error at stdout's end waits for the rest of stderr (wait_complete).
inline constexpr std::chrono::milliseconds stderr_grace{2000};

// Drains ch's stderr into tail and sink until cancelled. At EOF it keeps waiting
// (for cancellation), so it never ends an operation it runs beside.
asio::awaitable<void> pump_stderr(ssh::channel& ch, stderr_tail& tail, log_sink sink);

// Reads what is left of ch's stderr into tail, until its end or `limit`: for an
// error composed after the pump stopped (the operation it ran beside ended). At
// the channel's EOF that is at once; a command still running costs `limit`.
asio::awaitable<void> drain_stderr(ssh::channel& ch, stderr_tail& tail, std::chrono::milliseconds limit);

// Runs op beside pump_stderr; returns op's result once op completes (either way),
// cancelling the pump. A failing sink fails the operation.
template <class T>
asio::awaitable<T> with_stderr(ssh::channel& ch, asio::awaitable<T> op, stderr_tail& tail, log_sink sink = {}) {
    auto ex = co_await asio::this_coro::executor;
    auto group = asio::experimental::make_parallel_group(
        asio::co_spawn(ex, std::move(op), asio::experimental::deferred),
        asio::co_spawn(ex, pump_stderr(ch, tail, std::move(sink)), asio::experimental::deferred));
    if constexpr (std::is_void_v<T>) {
        auto [order, op_error, pump_error] =
            co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        if (order[0] == 1 && pump_error) std::rethrow_exception(pump_error);
        if (op_error) std::rethrow_exception(op_error);
    } else {
        auto [order, op_error, value, pump_error] =
            co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        if (order[0] == 1 && pump_error) std::rethrow_exception(pump_error);
        if (op_error) std::rethrow_exception(op_error);
        co_return std::move(value);
    }
}

}  // namespace ferry::remote
