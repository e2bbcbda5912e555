#include "codecs.hpp"
#include "ferry/util/error.hpp"

namespace ferry::codec {

std::unique_ptr<compressor> make_compressor(const codec_spec& spec, const compression_options& options) {
    auto plan = plan_compression(spec, options.threads, options.memory_budget);
    switch (spec.kind) {
    case codec_kind::none: return detail::make_none_compressor(std::move(plan), options);
    case codec_kind::zstd: return detail::make_zstd_compressor(std::move(plan), options);
    case codec_kind::xz: return detail::make_xz_compressor(std::move(plan), options);
    case codec_kind::auto_select: break;
    }
    throw failure(errc::unsupported, "codec auto must be resolved before compressing");
}

std::unique_ptr<decompressor> make_decompressor(codec_kind kind, const decompression_options& options) {
    switch (kind) {
    case codec_kind::none: return detail::make_none_decompressor(options);
    case codec_kind::zstd: return detail::make_zstd_decompressor(options);
    case codec_kind::xz: return detail::make_xz_decompressor(options);
    case codec_kind::auto_select: break;
    }
    throw failure(errc::unsupported, "codec auto must be resolved before decompressing");
}

}  // namespace ferry::codec
