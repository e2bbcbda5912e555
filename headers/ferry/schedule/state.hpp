// Scheduler state shared by every hook process through small files under
// ferry's state directory:
//   <state>/ferry/backoff/<name>:<port>  unreachable machines and when to retry
//   <state>/ferry/probe/<name>:<port>    the last probe result and its time
//   <state>/ferry/link/<name>:<port>     the last measured upload speed and its time
//   <state>/ferry/slot-wait-missed       when a hook last waited for a slot in vain
// Files are replaced atomically (write a temporary file, rename), so readers
// never see half a file. A missing or unreadable file means "no record".
// Times are wall-clock (they are compared across processes); the clock is
// injected so tests control it.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "ferry/schedule/machine.hpp"
#include "ferry/schedule/probe.hpp"

namespace ferry::schedule {

using wall_clock = std::function<std::chrono::system_clock::time_point()>;
wall_clock system_wall_clock();

struct backoff_policy {
    std::chrono::seconds initial{60};  // after the first failure
    unsigned factor = 3;               // 60 s, 180 s, 540 s, ...
    std::chrono::seconds cap{3600};
};

// Delay after the n-th consecutive failure (n >= 1): initial * factor^(n-1), capped.
std::chrono::seconds backoff_delay(unsigned failures, const backoff_policy& policy = {});

struct backoff_record {
    unsigned failures = 0;
    std::chrono::system_clock::time_point retry_at;
    std::string last_error;
};

class backoff_store {
public:
    explicit backoff_store(std::filesystem::path state_dir, wall_clock clock = system_wall_clock(),
                           backoff_policy policy = {});

    std::optional<backoff_record> read(const machine& m) const;
    // True while a recorded failure's delay has not run out: skip the machine
    // without connecting.
    bool backed_off(const machine& m) const;
    // One more consecutive failure; returns the new record.
    backoff_record record_failure(const machine& m, const std::string& error);
    // Forget the failures (the machine answered).
    void record_success(const machine& m);

private:
    std::filesystem::path file(const machine& m) const;
    std::filesystem::path dir_;
    wall_clock clock_;
    backoff_policy policy_;
};

class probe_cache {
public:
    explicit probe_cache(std::filesystem::path state_dir, wall_clock clock = system_wall_clock(),
                         std::chrono::milliseconds ttl = std::chrono::seconds(5));

    // The stored result if it is younger than the ttl (and not from the future).
    std::optional<probe_result> fresh(const machine& m) const;
    void store(const machine& m, const probe_result& r);
    // Drops the stored result: after an offload to m failed (its disk filled up,
    // say), the next decision probes m afresh instead of trusting old figures.
    void forget(const machine& m);

private:
    std::filesystem::path file(const machine& m) const;
    std::filesystem::path dir_;
    wall_clock clock_;
    std::chrono::milliseconds ttl_;
};

// The upload speed last measured to a machine (transfer::measure_upload, 0.8 s):
// codec `auto` needs it, and a link changes slowly, so one measurement serves the
// offloads of the next minutes instead of each paying for its own.
class link_cache {
public:
    explicit link_cache(std::filesystem::path state_dir, wall_clock clock = system_wall_clock(),
                        std::chrono::milliseconds ttl = std::chrono::minutes(10));

    std::optional<double> fresh(const machine& m) const;  // bytes per second
    void store(const machine& m, double bytes_per_s);

private:
    std::filesystem::path file(const machine& m) const;
    std::filesystem::path dir_;
    wall_clock clock_;
    std::chrono::milliseconds ttl_;
};

// Whether a hook that finds every slot taken may wait briefly for one before
// postponing (hook::offload_settings::slot_wait). The daemon reads the hook's
// reply synchronously, so while a hook waits nothing else is scheduled; a wait
// that ran out means the machines' builds are long, and for `window` after it
// every hook postpones at once instead of blocking the daemon again.
class slot_wait_memory {
public:
    explicit slot_wait_memory(std::filesystem::path state_dir, wall_clock clock = system_wall_clock(),
                              std::chrono::milliseconds window = std::chrono::seconds(10));

    bool recently_missed() const;
    void record_miss();

private:
    std::filesystem::path file_;
    wall_clock clock_;
    std::chrono::milliseconds window_;
};

}  // namespace ferry::schedule
