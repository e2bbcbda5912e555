// `ferry status [FILE [REGEX]] [--json] [--timeout SECONDS]`: what every build
// machine looks like right now, all machines at once (one coroutine per machine on
// one io_context, each under its own deadline).
//
// Per machine: one ssh command (clock_command) reads the clock, one more
// (status_command) answers host name, kernel, architecture, cores, load, free
// store space and tools; slots in use and
// the backoff record come from ferry's local state directory (read only: status
// never takes a slot nor changes a backoff record).
//
// Output: a table on stdout, or with --json one JSON document on stdout:
//   {"ferry_version": "...", "file": "...", "machines": [
//     {"name": "...", "answered": true, "error": null,
//      "host_name": "...", "kernel": "Linux 6.1.0", "arch": "x86_64", "cores": 2,
//      "load1": 0.5, "load5": 0.4, "load15": 0.3, "load_per_core": 0.25,
//      "free_bytes": 123, "clock_offset_seconds": 0.01,
//      "tools": ["nix-store", "zstd", "xz"],
//      "slots": {"in_use": 0, "max": 1},
//      "backoff": null | {"failures": 1, "retry_in_seconds": 42, "last_error": "..."}}]}
// A machine that did not answer has "answered": false, "error": "<reason>" and null
// for every remote fact.
// Exit status: 0 every machine answered; 1 at least one did not; 2 usage or
// configuration error (bad option, unreadable or malformed FILE or ferry.conf, bad
// REGEX, no machine selected).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "ferry/schedule/machine.hpp"
#include "ferry/schedule/probe.hpp"

namespace ferry::cli {

// The facts one status command returns.
struct status_facts {
    std::string host_name;                // uname -n
    std::string kernel;                   // uname -sr
    std::string arch;                     // uname -m
    std::optional<double> remote_time;    // seconds since the epoch (clock_command)
    schedule::probe_result probe;         // cores, load, free space, tools
};

// `sh -c '<script>'`: a few "ferry-status KEY VALUE" lines, then the scheduler's
// probe (schedule::probe_script, framed "ferry-probe 1" ... "end"). POSIX sh only.
std::string status_command(std::string_view store_dir);

// Pure. Throws ferry::failure(bad_input / truncated) naming the line.
status_facts parse_status_output(std::string_view output);

// The clock is read by a command of its own (`date +%s.%N`), run alone so the
// round trip that bounds the estimate is short. Seconds since the epoch, or
// nullopt (BSD date prints "N" for %N: then whole seconds).
std::string clock_command();
std::optional<double> parse_clock_output(std::string_view output);

// Slot files of `m` under `state_dir` currently locked by someone (ferry or guix
// offload), found with F_OFD_GETLK: nothing is taken. Missing files are free.
unsigned slots_in_use(const std::filesystem::path& state_dir, const schedule::machine& m);

// argv[0] is "status". Returns the exit status.
int status_command_main(int argc, char** argv);

}  // namespace ferry::cli
