// What a transfer reports: per-stage bytes and busy time (so `ferry bench` can
// name the bottleneck), and progress callbacks while it runs (the Guix daemon
// kills a silent hook; Nix shows "N copied").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ferry::transfer {

struct stage_report {
    std::string name;  // "read", "compress", "write", "import" (remote), "receive", "decompress", "restore"
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::chrono::nanoseconds busy{0};  // wall time inside the stage's own work (not waiting)
};

struct transfer_report {
    std::size_t paths = 0;          // store paths moved
    std::uint64_t nar_bytes = 0;    // their NAR bytes
    std::uint64_t wire_bytes = 0;   // bytes on the ssh channel (after compression)
    std::chrono::nanoseconds elapsed{0};
    std::vector<stage_report> stages;

    // The stage with the largest busy time relative to elapsed ("" if none).
    std::string bottleneck() const;
    double seconds() const { return std::chrono::duration<double>(elapsed).count(); }
};

struct progress {
    std::size_t items_done = 0, items_total = 0;
    std::uint64_t bytes_done = 0, bytes_total = 0;  // NAR bytes (bytes_total 0 = unknown)
};
// Called on the pipeline's I/O executor; must not block.
using progress_fn = std::function<void(const progress&)>;

}  // namespace ferry::transfer
