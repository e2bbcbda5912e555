// Helpers shared by the send and receive pipelines (private to transfer).
#pragma once

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <utility>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>

#include "ferry/transfer/report.hpp"

namespace ferry::transfer::detail {

using clock = std::chrono::steady_clock;

// The first failure among concurrent stages, in time: Asio 1.22's && rethrows in
// operand order, which would report a cancellation instead of its cause.
struct first_error {
    std::exception_ptr error;
};

template <class T>
asio::awaitable<T> recorded(asio::awaitable<T> op, first_error& first) {
    try {
        co_return co_await std::move(op);
    } catch (...) {
        if (!first.error) first.error = std::current_exception();
        throw;
    }
}

// Runs f() (blocking work) on the pool and resumes on the caller's executor;
// adds its wall time to stage.busy.
template <class F>
auto on_pool(asio::thread_pool& pool, stage_report& stage, F f) -> asio::awaitable<decltype(f())> {
    using R = decltype(f());
    co_return co_await asio::co_spawn(
        pool,
        [&stage, f = std::move(f)]() mutable -> asio::awaitable<R> {
            auto start = clock::now();
            struct timed {
                stage_report& s;
                clock::time_point t;
                ~timed() { s.busy += clock::now() - t; }
            } t{stage, start};
            if constexpr (std::is_void_v<R>) {
                f();
                co_return;
            } else {
                co_return f();
            }
        },
        asio::use_awaitable);
}

// A private pool when the caller gave none.
struct pool_ref {
    std::optional<asio::thread_pool> own;
    asio::thread_pool* pool;
    explicit pool_ref(asio::thread_pool* given) : pool(given) {
        if (!pool) pool = &own.emplace(2);
    }
    ~pool_ref() {
        if (own) own->join();
    }
};

}  // namespace ferry::transfer::detail
