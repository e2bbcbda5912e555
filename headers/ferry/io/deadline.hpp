// Deadlines for awaitables: `co_await with_deadline(op(), 5s, "host1: handshake")`
// runs op and a timer side by side; whichever finishes first cancels the other
// (Asio's parallel_group wait_for_one, which also completes on a failure — unlike
// awaitable operator||, which waits for a success). On timeout the operation is
// cancelled, awaited until it has unwound, and ferry::failure(errc::timed_out)
// naming `what` is thrown.
//
// The operation must honour cancellation (Asio timers, sockets, descriptors and
// channels do; so do ferry's ssh and io awaitables). T must be default
// constructible and movable (co_spawn's completion carries a T even on failure).
#pragma once

#include <chrono>
#include <exception>
#include <string>
#include <type_traits>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::io {

namespace detail {
[[noreturn]] void throw_timed_out(const std::string& what, std::chrono::steady_clock::duration limit);
}

template <class T>
asio::awaitable<T> with_deadline(asio::awaitable<T> op, std::chrono::steady_clock::duration limit,
                                 std::string what) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex, limit);
    auto group = asio::experimental::make_parallel_group(
        asio::co_spawn(ex, std::move(op), asio::experimental::deferred),
        timer.async_wait(asio::experimental::deferred));
    if constexpr (std::is_void_v<T>) {
        auto [order, error, timer_ec] =
            co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        (void)timer_ec;
        if (order[0] == 1) detail::throw_timed_out(what, limit);
        if (error) std::rethrow_exception(error);
    } else {
        auto [order, error, value, timer_ec] =
            co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        (void)timer_ec;
        if (order[0] == 1) detail::throw_timed_out(what, limit);
        if (error) std::rethrow_exception(error);
        co_return std::move(value);
    }
}

}  // namespace ferry::io
