// Helpers shared by the send and receive pipelines (private to transfer).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
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

// Wall time during which at least one of several concurrent stages of one kind
// was busy (the streams of a wave): summing them would exceed the elapsed time.
class busy_union {
public:
    void enter() {
        std::lock_guard lock(m_);
        if (active_++ == 0) since_ = clock::now();
    }
    void leave() {
        std::lock_guard lock(m_);
        if (--active_ == 0) total_ += clock::now() - since_;
    }
    std::chrono::nanoseconds total() const {
        std::lock_guard lock(m_);
        return total_;
    }

private:
    mutable std::mutex m_;
    int active_ = 0;
    clock::time_point since_;
    std::chrono::nanoseconds total_{0};
};

// One stream's stage busy time, readable while the stage runs: pool threads add
// to it, the interval monitor samples it on the I/O executor.
struct busy_clock {
    std::atomic<std::int64_t> ns{0};
    busy_union* all = nullptr;  // the stage kind across concurrent streams (optional)
    std::chrono::nanoseconds busy() const { return std::chrono::nanoseconds(ns.load()); }
};

inline void busy_begin(stage_report&) {}
inline void busy_end(stage_report& s, clock::duration d) { s.busy += d; }
inline void busy_begin(busy_clock& c) {
    if (c.all) c.all->enter();
}
inline void busy_end(busy_clock& c, clock::duration d) {
    c.ns += std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    if (c.all) c.all->leave();
}

// Runs f() (blocking work) on the pool and resumes on the caller's executor;
// adds its wall time to the meter (a stage_report or a busy_clock).
template <class Meter, class F>
auto on_pool(asio::thread_pool& pool, Meter& meter, F f) -> asio::awaitable<decltype(f())> {
    using R = decltype(f());
    co_return co_await asio::co_spawn(
        pool,
        [&meter, f = std::move(f)]() mutable -> asio::awaitable<R> {
            busy_begin(meter);
            auto start = clock::now();
            struct timed {
                Meter& m;
                clock::time_point t;
                ~timed() { busy_end(m, clock::now() - t); }
            } t{meter, start};
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
