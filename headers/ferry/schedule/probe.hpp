// Probing build machines: one portable shell command per machine, run
// concurrently on every candidate, under one deadline for the whole probe.
//
// The command (probe_command) works with any POSIX sh on Linux and macOS: no
// /proc, no GNU-only options. Its output is a few "key value" lines framed by
// "ferry-probe 1" and "end" (so truncation is detected):
//   ferry-probe 1
//   os Linux
//   cores 8
//   uptime  20:01:02 up 3 days,  1:02,  2 users,  load average: 0.52, 0.58, 0.59
//   df /dev/sda1 102400 50000 52400 49% /
//   tool nix-store
//   end
// parse_probe_output turns it into a probe_result. Both are pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/schedule/machine.hpp"

#include "ferry/ssh/quote.hpp"

namespace ferry::schedule {

struct probe_result {
    std::string os;                      // uname -s: "Linux", "Darwin", ...
    unsigned cores = 0;                  // online processors, >= 1
    double load1 = 0, load5 = 0, load15 = 0;
    // Free bytes (for unprivileged users, df's "Available") on the file system
    // of the store directory; if that directory does not exist, of its nearest
    // existing ancestor. nullopt when df printed nothing usable.
    std::optional<std::uint64_t> free_bytes;
    bool has_nix_store = false, has_zstd = false, has_xz = false, has_guix = false;

    // 1-minute load per core (not capped).
    double load_per_core() const noexcept { return cores ? load1 / cores : load1; }
    friend bool operator==(const probe_result&, const probe_result&) = default;
};

// The sh script (to be run by `sh -c`). store_dir is quoted for the shell.
std::string probe_script(std::string_view store_dir);
// The whole remote command: `sh -c '<script>'`, so the remote user's login
// shell (which may be csh or fish) only has to run `sh`.
std::string probe_command(std::string_view store_dir);
// POSIX shell quoting is the ssh layer's (one implementation for every remote command).
using ferry::ssh::shell_quote;

// Throws ferry::failure(errc::bad_input / errc::truncated) naming the line
// number and what was expected.
probe_result parse_probe_output(std::string_view output);

// What the transport (the ssh layer, or a fake in tests) reports for one
// command: an error (could not connect, authenticate, ...) or the exit
// status and standard output.
struct remote_result {
    std::error_code error;
    std::string message;  // context for error; empty on success
    int exit_status = -1;
    std::string output;   // standard output
};

// Runs `command` on `m`. Must honour terminal cancellation of the awaiting
// coroutine (the probe cancels what is still running at its deadline). May also
// throw; exceptions count as an error of that machine.
using run_remote_fn =
    std::function<asio::awaitable<remote_result>(const machine& m, const std::string& command)>;

enum class probe_state { pending, ok, failed, cancelled };

struct probe_outcome {
    probe_state state = probe_state::pending;
    std::optional<probe_result> result;  // when ok
    std::error_code error;               // when failed (errc::timed_out at the deadline)
    std::string message;                 // when failed: names the host and the step
};

struct probe_options {
    std::string store_dir = "/nix/store";
    std::chrono::milliseconds deadline{3000};  // for the whole probe, not per machine
};

// Decides, whenever a probe completes, whether the answers so far are enough:
// return true to stop and cancel the rest.
using probe_stop_fn = std::function<bool(const std::vector<probe_outcome>&)>;

// Probes every machine of `machines` concurrently. Returns (one outcome per
// machine, same order) when all have answered, when `enough` says so, or at
// the deadline, whichever comes first; still-running probes are then cancelled
// (state cancelled after `enough`, failed with errc::timed_out at the
// deadline) and not waited for. Run it on a single-threaded executor (or a
// strand): the probes share state without locks.
asio::awaitable<std::vector<probe_outcome>> probe_machines(std::vector<machine> machines,
                                                           run_remote_fn run_remote,
                                                           probe_options options,
                                                           probe_stop_fn enough = {});

}  // namespace ferry::schedule
