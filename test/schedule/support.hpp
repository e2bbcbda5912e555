// Helpers shared by the schedule tests: temporary state directories, running a
// coroutine to completion, and a scripted run_remote.
#pragma once

// g++ 12 false positive on every Asio coroutine frame (class-specific operator new/delete).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>

#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/schedule/probe.hpp"

namespace schedule_test {

struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "ferry-schedule-XXXXXX").string();
        path = ::mkdtemp(tmpl.data());
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

template <class T>
T run(asio::io_context& io, asio::awaitable<T> task) {
    auto fut = asio::co_spawn(io, std::move(task), asio::use_future);
    io.run();
    io.restart();
    return fut.get();
}

// Linux-style probe output.
inline std::string probe_output(unsigned cores, double load1, unsigned long long free_kib) {
    return fmt::format(
        "ferry-probe 1\nos Linux\ncores {}\n"
        "uptime  20:01:02 up 3 days,  1:02,  2 users,  load average: {:.2f}, 0.50, 0.40\n"
        "df /dev/sda1 999999999 1000 {} 1% /\ntool nix-store\nend\n",
        cores, load1, free_kib);
}

// A scripted remote: per machine name, a delay then an answer (or never).
struct fake_remote {
    struct script {
        std::chrono::milliseconds delay{0};
        bool never = false;  // waits for an hour (until cancelled)
        std::error_code error;
        std::string output;
    };
    std::map<std::string, script> scripts;
    std::map<std::string, int> calls;

    ferry::schedule::run_remote_fn fn() {
        return [this](const ferry::schedule::machine& m,
                      const std::string&) -> asio::awaitable<ferry::schedule::remote_result> {
            ++calls[m.name];
            script s = scripts.at(m.name);
            asio::steady_timer t(co_await asio::this_coro::executor);
            t.expires_after(s.never ? std::chrono::hours(1) : s.delay);
            co_await t.async_wait(asio::use_awaitable);  // throws when cancelled
            ferry::schedule::remote_result r;
            if (s.error) {
                r.error = s.error;
                r.message = "connect: " + s.error.message();
            } else {
                r.exit_status = 0;
                r.output = s.output;
            }
            co_return r;
        };
    }
};

}  // namespace schedule_test
