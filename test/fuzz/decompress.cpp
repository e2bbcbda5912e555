// libFuzzer target: the zstd and xz decoders on arbitrary bytes.
// Input: byte 0 picks the codec (bit 0: zstd/xz), the xz decoder's threads (bit 1)
// and the feed chunk size (bits 2-7); the rest is the compressed stream. The total
// output is capped so that a valid high-ratio stream cannot run the fuzzer out of
// memory; only ferry::failure may escape the decoder.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "ferry/codec/decompressor.hpp"
#include "ferry/util/error.hpp"

namespace {

constexpr std::size_t output_cap = std::size_t{8} << 20;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    using namespace ferry::codec;
    auto selector = data[0];
    auto kind = (selector & 1) != 0 ? codec_kind::xz : codec_kind::zstd;
    decompression_options options;
    options.threads = (selector & 2) != 0 ? 2 : 1;
    options.memory_budget = std::uint64_t{64} << 20;
    options.output_limit = 4096;
    std::size_t chunk = std::size_t{1} << ((selector >> 2) % 17);  // 1 byte to 64 KiB
    std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data + 1), size - 1);

    auto d = make_decompressor(kind, options);
    std::string out;
    std::size_t total = 0;
    try {
        while (!in.empty() || d->has_pending_output()) {
            auto piece = in.first(std::min(chunk, in.size()));
            auto consumed = d->feed(piece, out);
            if (consumed > piece.size() || out.size() > options.output_limit) __builtin_trap();
            in = in.subspan(consumed);
            total += out.size();
            out.clear();
            if (total > output_cap) return 0;
        }
        while (!d->finish(out)) {
            if (out.size() > options.output_limit) __builtin_trap();
            total += out.size();
            out.clear();
            if (total > output_cap) return 0;
        }
    } catch (const ferry::failure&) {
    }
    return 0;
}
