// One coroutine per machine on one io_context, each under its own deadline: the
// concurrency of `ferry test` and `ferry status`. A slow or dead machine costs its
// own deadline, never the others' time.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <system_error>

#include <asio/awaitable.hpp>

namespace ferry::cli {

// Runs body(i) for every i in [0, n) concurrently on one single-threaded
// io_context and returns when all have ended. When body(i) throws or exceeds
// `deadline` (it is then cancelled and awaited until it unwound), on_error(i, code,
// message) is called with errc::timed_out / the exception's code and what().
void run_per_machine(std::size_t n, std::chrono::milliseconds deadline,
                     const std::function<asio::awaitable<void>(std::size_t)>& body,
                     const std::function<void(std::size_t, std::error_code, const std::string&)>& on_error);

}  // namespace ferry::cli
