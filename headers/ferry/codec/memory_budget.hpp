// How much memory a codec choice needs, and fitting it into a budget.
//
// ferry's default budget is 128 MiB for the whole process; the pipeline hands each
// codec stage its share (compression_options::memory_budget). A choice that does
// not fit runs with fewer threads; if even one thread does not fit it is refused
// with ferry::failure(too_large) naming the need, the budget and what would fit.
//
// zstd: one thread needs ZSTD_estimateCStreamSize (window + match tables: level 19
// ~ 90 MiB). With N worker threads zstd also keeps a round buffer of (N + 3) jobs
// and up to 2N+3 output buffers, where a job is 4 windows (level 3: 8 MiB, level 19:
// 32 MiB), plus one match state per worker. That model is checked against the
// measured peak (counting allocator) in test/codec.
// xz: lzma_easy_encoder_memusage for one thread, lzma_stream_encoder_mt_memusage
// for more.
#pragma once

#include <cstdint>
#include <string>

#include "ferry/codec/codec_spec.hpp"

namespace ferry::codec {

inline constexpr std::uint64_t default_memory_budget = std::uint64_t{128} << 20;

// Estimated peak bytes for compressing with spec on `threads` threads (1 = in the
// caller's thread, no workers). 0 for none. spec must not be auto.
std::uint64_t compression_memory(const codec_spec& spec, unsigned threads);

struct compression_plan {
    codec_spec spec;
    unsigned requested_threads = 1;
    unsigned threads = 1;              // what will be used, <= requested_threads
    std::uint64_t memory_estimate = 0; // compression_memory(spec, threads)
    std::string note;                  // why threads were reduced; empty otherwise
};

// Picks the most threads <= requested (0 = std::thread::hardware_concurrency())
// whose estimate fits the budget. Throws failure(too_large) if one thread does not
// fit, failure(unsupported) for auto.
compression_plan plan_compression(const codec_spec& spec, unsigned requested_threads,
                                  std::uint64_t memory_budget = default_memory_budget);

// Largest zstd window log a decompressor accepts within the budget: windows up to
// half of it, between 2^10 and zstd's own default limit 2^27 (26 for 128 MiB).
// (xz decoders use the budget itself as liblzma's memlimit.)
unsigned zstd_window_log_max(std::uint64_t memory_budget);

}  // namespace ferry::codec
