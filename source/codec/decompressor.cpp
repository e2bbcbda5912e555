#include "ferry/codec/decompressor.hpp"

#include <algorithm>

#include "stage_timer.hpp"

namespace ferry::codec {

decompressor::decompressor(codec_kind kind, const decompression_options& options)
    : kind_(kind), output_limit_(std::max<std::size_t>(options.output_limit, 1)) {}

std::size_t decompressor::feed(std::span<const std::byte> in, std::string& out) {
    detail::stage_timer timer(stats_, out);
    if (in.empty() && !pending_) return 0;
    auto result = do_decompress(in, out, output_limit_, stats_.bytes_in);
    stats_.bytes_in += result.consumed;
    pending_ = result.pending;
    return result.consumed;
}

bool decompressor::finish(std::string& out) {
    detail::stage_timer timer(stats_, out);
    bool done = do_finish(out, output_limit_, stats_.bytes_in);
    pending_ = !done;
    return done;
}

}  // namespace ferry::codec
