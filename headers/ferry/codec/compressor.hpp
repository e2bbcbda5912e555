// Streaming compressors (zstd, xz, none) as sans-I/O stages: bytes in, bytes out,
// no files, no threads of ferry's own (zstd/xz may run worker threads internally).
// The pipeline runs them on its thread pool; one compressor is used by one thread
// at a time.
//
// Contract of every call:
// - output is appended to `out`, at most options.output_limit bytes per call, so a
//   stage never buffers without bound;
// - feed() consumes a prefix of `in` and returns its length: when it returns less
//   than in.size() the output limit was reached; pass the rest again;
// - flush() makes everything fed so far decodable by the receiver; finish() ends the
//   frame (zstd) / stream (xz). Both return false while output is still to come:
//   call again (with the same out drained or not) until true; feed() in between (or
//   flush() during finish()) is a logic error (failure(unsupported)); finish() after
//   an incomplete flush() completes the flush first;
// - after finish() the compressor may be fed again: it starts a new frame/stream.
//   Concatenated frames/streams decode as one with `zstd -dc` / `xz -dc`.
// - set_level() takes effect at the next frame boundary: if a frame is open, the
//   next feed/flush ends it first (zstd: ZSTD_e_end, xz: LZMA_FINISH) and opens a new
//   one at the new level. The `auto` rule uses this to adjust while streaming.
// Errors from the library are thrown as ferry::failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/codec/memory_budget.hpp"
#include "ferry/codec/stage_stats.hpp"

namespace ferry::codec {

inline constexpr std::size_t default_output_limit = std::size_t{1} << 20;

struct compression_options {
    unsigned threads = 0;  // 0 = std::thread::hardware_concurrency(); reduced to fit the budget
    std::uint64_t memory_budget = default_memory_budget;
    std::size_t output_limit = default_output_limit;  // >= 1
};

class compressor {
public:
    virtual ~compressor() = default;
    compressor(const compressor&) = delete;
    compressor& operator=(const compressor&) = delete;

    std::size_t feed(std::span<const std::byte> in, std::string& out);
    bool flush(std::string& out);
    bool finish(std::string& out);

    // Validates the level (failure(bad_input)) and re-plans the memory budget for it
    // (fewer threads, or failure(too_large): the current level then stays).
    void set_level(int level);

    // The spec and plan of the frame being written (the new level once applied).
    const compression_plan& plan() const { return plan_; }
    codec_spec spec() const { return plan_.spec; }
    const stage_stats& stats() const { return stats_; }
    // Bytes the library holds now / at most so far (counted by ferry's allocator).
    virtual std::uint64_t memory_in_use() const { return 0; }
    virtual std::uint64_t peak_memory() const { return 0; }

protected:
    compressor(compression_plan plan, const compression_options& options);

    enum class drain_mode { flush, end };
    // Compress a prefix of in, appending at most limit bytes; returns bytes consumed.
    virtual std::size_t do_compress(std::span<const std::byte> in, std::string& out,
                                    std::size_t limit) = 0;
    // Flush or end the frame, appending at most limit bytes; true when complete.
    virtual bool do_drain(drain_mode mode, std::string& out, std::size_t limit) = 0;
    // Between frames: use this plan (level, threads) for the next frame.
    virtual void do_apply(const compression_plan& plan) = 0;

private:
    bool end_frame_for_level_change(std::string& out);
    bool flush_step(std::string& out, std::size_t out_start);

    compression_plan plan_;
    compression_plan pending_plan_;
    bool level_change_pending_ = false;
    bool frame_open_ = false;      // input fed since the last frame end
    bool frame_written_ = false;   // at least one frame ended
    enum class drain_state { idle, flushing, ending };
    drain_state draining_ = drain_state::idle;  // flush()/finish() returned false
    std::uint64_t memory_budget_;
    std::size_t output_limit_;
    stage_stats stats_;
};

// Throws failure(unsupported) for auto, failure(too_large) if the budget is too
// small for even one thread. The plan says how many threads were granted.
std::unique_ptr<compressor> make_compressor(const codec_spec& spec,
                                            const compression_options& options = {});

}  // namespace ferry::codec
