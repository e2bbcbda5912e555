#include "ferry/codec/codec_spec.hpp"

#include <charconv>

#include <fmt/format.h>

#include "ferry/util/error.hpp"

namespace ferry::codec {
namespace {

constexpr std::string_view expected_specs =
    "expected auto, none, zstd, zstd:N (N 1-19), xz or xz:N (N 0-9)";

struct level_range {
    int min;
    int max;
};

level_range range_of(codec_kind kind) {
    switch (kind) {
    case codec_kind::zstd: return {min_zstd_level, max_zstd_level};
    case codec_kind::xz: return {min_xz_level, max_xz_level};
    case codec_kind::none:
    case codec_kind::auto_select: break;
    }
    return {0, 0};
}

}  // namespace

std::string_view name(codec_kind kind) {
    switch (kind) {
    case codec_kind::auto_select: return "auto";
    case codec_kind::none: return "none";
    case codec_kind::zstd: return "zstd";
    case codec_kind::xz: return "xz";
    }
    return "?";
}

std::string to_string(const codec_spec& spec) {
    if (spec.kind == codec_kind::zstd || spec.kind == codec_kind::xz)
        return fmt::format("{}:{}", name(spec.kind), spec.level);
    return std::string(name(spec.kind));
}

void check_level(codec_kind kind, int level) {
    auto range = range_of(kind);
    if (level < range.min || level > range.max)
        throw failure(errc::bad_input,
                      fmt::format("{} level {} is out of range: expected {} to {}", name(kind),
                                  level, range.min, range.max));
}

codec_spec parse_codec_spec(std::string_view text) {
    if (text == "auto") return {codec_kind::auto_select, 0};
    if (text == "none") return {codec_kind::none, 0};
    if (text == "zstd") return {codec_kind::zstd, default_zstd_level};
    if (text == "xz") return {codec_kind::xz, default_xz_level};

    auto colon = text.find(':');
    auto head = text.substr(0, colon);
    codec_kind kind;
    if (head == "zstd")
        kind = codec_kind::zstd;
    else if (head == "xz")
        kind = codec_kind::xz;
    else
        throw failure(errc::bad_input, fmt::format("codec \"{}\": {}", text, expected_specs));
    if (colon == std::string_view::npos)
        throw failure(errc::bad_input, fmt::format("codec \"{}\": {}", text, expected_specs));

    auto digits = text.substr(colon + 1);
    auto range = range_of(kind);
    int level = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), level);
    // from_chars accepts a leading '-': reject signs and anything after the digits.
    if (digits.empty() || digits.front() == '-' || ec != std::errc{} ||
        end != digits.data() + digits.size() || level < range.min || level > range.max)
        throw failure(errc::bad_input,
                      fmt::format("codec \"{}\": expected {}:N with N an integer from {} to {}",
                                  text, name(kind), range.min, range.max));
    return {kind, level};
}

std::vector<codec_spec> parse_codec_list(std::string_view text) {
    std::vector<codec_spec> specs;
    std::size_t item = 1;
    for (;;) {
        auto comma = text.find(',');
        auto part = text.substr(0, comma);
        if (part.empty())
            throw failure(errc::bad_input,
                          fmt::format("codec list: item {} is empty; {}", item, expected_specs));
        try {
            specs.push_back(parse_codec_spec(part));
        } catch (const failure& f) {
            throw failure(f.code(), fmt::format("codec list item {}: {}", item, f.what()));
        }
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
        ++item;
    }
    return specs;
}

}  // namespace ferry::codec
