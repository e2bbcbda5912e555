// Choosing the build machine for one request: slots first, network second.
//
//   1. skip machines in backoff (no connection attempt);
//   2. try-lock a slot on every other candidate (no waiting: the daemon blocks
//      on the reply); machines without a free slot are busy;
//   3. use a fresh cached probe result where there is one, probe the rest
//      concurrently under ONE deadline, stopping as soon as no machine still
//      probing can beat the best answer in (score <= speed);
//   4. skip overloaded machines and those with less than min_free_bytes free;
//      choose the highest score, keep its slot, release the others at once.
// Probe failures enter backoff; successes reset it and refresh the cache.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/schedule/decision.hpp"
#include "ferry/schedule/machine.hpp"
#include "ferry/schedule/probe.hpp"
#include "ferry/schedule/slot.hpp"
#include "ferry/schedule/state.hpp"

namespace ferry::schedule {

// speed / (1 + 1-minute load per core).
double score(const machine& m, const probe_result& r) noexcept;

enum class machine_status {
    chosen,
    usable,       // acceptable, but another machine scored higher
    busy,         // every slot taken
    backed_off,   // recent failures: not contacted
    unreachable,  // the probe failed or timed out (now in backoff)
    overloaded,   // normalized load >= overload_threshold
    low_disk,     // free space < min_free_bytes
    not_probed,   // probe cancelled or skipped: a better answer was already in
};
std::string_view to_string(machine_status s) noexcept;

// Pure: whether a probed machine may take the build (usable) or why not.
machine_status judge(const machine& m, const probe_result& r, std::uint64_t min_free_bytes) noexcept;

struct select_options {
    std::filesystem::path state_dir;  // slots under <state>/offload, ferry's files under <state>/ferry
    probe_options probe;              // store directory and the one deadline
    std::chrono::milliseconds cache_ttl{5000};
    std::uint64_t min_free_bytes = 100ull << 20;  // guix offload's %minimum-disk-space
    backoff_policy backoff;
    wall_clock clock = system_wall_clock();
};

struct machine_report {
    machine_status status = machine_status::not_probed;
    std::optional<probe_result> probe;
    bool from_cache = false;
    double score = 0;
    std::string message;  // why it failed (unreachable / backed_off)
};

struct selection {
    std::optional<std::size_t> chosen;  // index into the candidates
    slot held;                          // the chosen machine's slot
    std::vector<machine_report> reports;  // one per candidate, same order

    std::size_t unreachable() const noexcept;
};

// Candidates: machines matching the request (the caller filters, and may
// shuffle them as guix offload does: ties go to the earlier one). Throws
// ferry::failure only for local trouble (state directory not writable).
asio::awaitable<selection> select_machine(std::vector<machine> candidates, run_remote_fn run_remote,
                                          select_options options);

// Every unreachable or backed-off candidate with its error, for the message
// that goes with a postponement or decline ("a: probing a: connection refused;
// b: backed off: ..."). names[i] names candidate i; empty when there is none.
std::string unreachable_summary(const selection& s, const std::vector<std::string>& names);

// The facts decide() needs, from a selection.
decision_facts facts_for(daemon_kind daemon, std::size_t configured, const selection& s,
                         bool can_build_locally) noexcept;

}  // namespace ferry::schedule
