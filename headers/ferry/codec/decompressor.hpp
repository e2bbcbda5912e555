// Streaming decompressors for the receive side (zstd, xz, none), sans-I/O like the
// compressors. Both accept concatenated frames/streams (what `zstd -T2`, `xz -T2`,
// ferry's level changes and `cat a.zst b.zst` produce); zstd skippable frames are
// skipped.
//
// Contract:
// - feed() consumes a prefix of in, appends at most options.output_limit bytes and
//   returns the bytes consumed; less than in.size() means the output limit was hit:
//   pass the rest again.
// - has_pending_output(): output may be waiting although all input was consumed (the
//   last call filled its limit): call feed() with an empty span to get it.
// - finish(): the input has ended; drains what is left (bounded; false = call again)
//   and throws failure(truncated) if the input stopped inside a frame/stream or held
//   no frame at all.
// - corrupt input throws failure(bad_input) naming the codec, the compressed byte
//   offset and the library's reason; a stream needing more memory than the budget
//   (zstd window, xz dictionary) throws failure(too_large). Output is never trusted
//   for sizes: memory is bounded by the budget and output_limit.
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

struct decompression_options {
    unsigned threads = 1;  // xz only: >1 uses lzma_stream_decoder_mt (multi-block streams)
    std::uint64_t memory_budget = default_memory_budget;
    std::size_t output_limit = std::size_t{1} << 20;  // >= 1
};

class decompressor {
public:
    virtual ~decompressor() = default;
    decompressor(const decompressor&) = delete;
    decompressor& operator=(const decompressor&) = delete;

    std::size_t feed(std::span<const std::byte> in, std::string& out);
    bool has_pending_output() const { return pending_; }
    bool finish(std::string& out);

    codec_kind kind() const { return kind_; }
    const stage_stats& stats() const { return stats_; }

protected:
    decompressor(codec_kind kind, const decompression_options& options);

    struct step {
        std::size_t consumed = 0;
        bool pending = false;  // output limit reached: more may come without input
    };
    // offset = compressed bytes consumed before in[0], for error messages.
    virtual step do_decompress(std::span<const std::byte> in, std::string& out,
                               std::size_t limit, std::uint64_t offset) = 0;
    // Input ended: drain; true when all output was given; throws if truncated.
    virtual bool do_finish(std::string& out, std::size_t limit, std::uint64_t offset) = 0;

private:
    codec_kind kind_;
    std::size_t output_limit_;
    bool pending_ = false;
    stage_stats stats_;
};

// kind must be none, zstd or xz (failure(unsupported) for auto).
std::unique_ptr<decompressor> make_decompressor(codec_kind kind,
                                                const decompression_options& options = {});

}  // namespace ferry::codec
