// Small pieces every I/O test needs: run one coroutine to completion on a fresh
// io_context (exceptions propagate to the test), and the pinned-key ssh options
// for a test host (explicit address, port, user, key; no ~/.ssh/config).
#pragma once

#include <chrono>

#include <asio.hpp>

#include "ferry/hosts/test_host.hpp"
#include "ferry/ssh/session.hpp"

namespace ferry::test_support {

// Runs the awaitable `f()` returns on its own io_context until it completes; returns its value.
template <class F>
auto run_async(F f) {
    asio::io_context io;
    auto fut = asio::co_spawn(io, f(), asio::use_future);
    io.run();
    return fut.get();
}

inline ssh::session_options pinned_options(const hosts::test_host& host) {
    ssh::session_options o;
    o.host = "127.0.0.1";
    o.port = host.port();
    o.user = "root";
    o.read_config = false;
    o.identity = host.client_key();
    o.host_key = host.host_key_line();
    o.connect_timeout = std::chrono::seconds(20);
    return o;
}

}  // namespace ferry::test_support
