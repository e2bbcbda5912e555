// Per-stage figures for `ferry bench`: bytes in and out, and the wall time spent
// inside the stage's calls (steady_clock). With zstd or xz worker threads, busy is
// the caller's time only: the workers overlap it, so busy can undercount CPU.
#pragma once

#include <chrono>
#include <cstdint>

namespace ferry::codec {

struct stage_stats {
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::chrono::nanoseconds busy{0};
};

}  // namespace ferry::codec
