#include "ferry/codec/commands.hpp"

#include <fmt/format.h>

#include "ferry/util/error.hpp"

namespace ferry::codec {

std::string decompress_command(codec_kind kind) {
    switch (kind) {
    case codec_kind::none: return "cat";
    case codec_kind::zstd: return "zstd -dc";
    case codec_kind::xz: return "xz -dc";
    case codec_kind::auto_select: break;
    }
    throw failure(errc::unsupported, "decompress_command: codec auto must be resolved first");
}

std::string compress_command(const codec_spec& spec, unsigned threads) {
    switch (spec.kind) {
    case codec_kind::none: return "cat";
    case codec_kind::zstd:
    case codec_kind::xz:
        check_level(spec.kind, spec.level);
        return fmt::format("{} -{} -T{} -c", name(spec.kind), spec.level, threads);
    case codec_kind::auto_select: break;
    }
    throw failure(errc::unsupported, "compress_command: codec auto must be resolved first");
}

}  // namespace ferry::codec
