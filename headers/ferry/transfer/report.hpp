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

// A zstd level changed while streaming (send_options::adjust_level).
struct level_change {
    std::chrono::nanoseconds at{0};  // since the transfer started
    std::size_t stream = 0;          // which concurrent stream of its wave
    int from = 0, to = 0;
    double compress_busy = 0, write_busy = 0;  // the interval's figures that decided it
};

struct transfer_report {
    std::size_t paths = 0;          // store paths moved
    std::uint64_t nar_bytes = 0;    // their NAR bytes
    std::uint64_t wire_bytes = 0;   // bytes on the ssh channel (after compression)
    std::chrono::nanoseconds elapsed{0};
    // Per stage kind. With concurrent streams, busy is the wall time during which at
    // least one stream's stage was busy (so busy <= elapsed), bytes are summed.
    std::vector<stage_report> stages;
    std::string codec;              // the codec used ("zstd:3"; the starting level if it changed)
    std::string auto_reason;        // send with codec auto: the rule's one-line reason
    double link_bytes_per_s = 0;    // send with codec auto: the link speed it weighed
    std::chrono::nanoseconds choosing{0};  // send with codec auto: measuring and choosing (part of elapsed)
    std::vector<level_change> level_changes;

    // The stage with the largest busy time relative to elapsed ("" if none).
    std::string bottleneck() const;
    // "read 46%, write 93%": each stage's busy time as a share of elapsed (for logs).
    std::string busy_summary() const;
    double seconds() const { return std::chrono::duration<double>(elapsed).count(); }
};

struct progress {
    std::size_t items_done = 0, items_total = 0;
    std::uint64_t bytes_done = 0, bytes_total = 0;  // NAR bytes (bytes_total 0 = unknown)
};
// Called on the pipeline's I/O executor; must not block.
using progress_fn = std::function<void(const progress&)>;

// What one send stream did during the last interval (send_options::interval):
// busy fractions of the interval's wall time per stage, bytes moved, the codec
// being written. The basis for changing the zstd level while streaming.
struct interval_report {
    std::size_t stream = 0;               // which concurrent stream of its wave
    std::chrono::nanoseconds since_start{0}, length{0};
    double read_busy = 0, compress_busy = 0, write_busy = 0;  // 0..1 (write: the link / remote import)
    std::uint64_t nar_bytes = 0, wire_bytes = 0;             // during the interval
    int level = 0;                        // the compressor's level (0 for none)
};
// Called on the pipeline's I/O executor; must not block.
using interval_fn = std::function<void(const interval_report&)>;
// Returns the zstd level to use from now on (the current one = no change).
using level_policy = std::function<int(const interval_report&)>;

}  // namespace ferry::transfer
