// The shell text of the stock tools at the remote end of a pipeline: the send side
// pipes into decompress_command(), the receive side has the remote run
// compress_command() and decodes with a ferry decompressor. Stock zstd/xz decode
// concatenated frames/streams, so ferry's level changes need nothing special.
#pragma once

#include <string>

#include "ferry/codec/codec_spec.hpp"

namespace ferry::codec {

// "zstd -dc", "xz -dc" or "cat". failure(unsupported) for auto.
std::string decompress_command(codec_kind kind);

// "zstd -1 -T0 -c", "xz -0 -T2 -c", "cat"; threads 0 = all the remote's cores.
// failure(unsupported) for auto.
std::string compress_command(const codec_spec& spec, unsigned threads);

}  // namespace ferry::codec
