// The concrete compressors and decompressors behind the factories.
#pragma once

#include <memory>

#include "ferry/codec/compressor.hpp"
#include "ferry/codec/decompressor.hpp"

namespace ferry::codec::detail {

std::unique_ptr<compressor> make_none_compressor(compression_plan plan, const compression_options& options);
std::unique_ptr<compressor> make_zstd_compressor(compression_plan plan, const compression_options& options);
std::unique_ptr<compressor> make_xz_compressor(compression_plan plan, const compression_options& options);

std::unique_ptr<decompressor> make_none_decompressor(const decompression_options& options);
std::unique_ptr<decompressor> make_zstd_decompressor(const decompression_options& options);
std::unique_ptr<decompressor> make_xz_decompressor(const decompression_options& options);

}  // namespace ferry::codec::detail
