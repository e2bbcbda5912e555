// Which codec a pipeline uses, as written on the command line and in ferry.conf:
//   auto | none | zstd | zstd:N (N 1-19) | xz | xz:N (N 0-9)
// `zstd` means zstd:3 and `xz` means xz:6 (the stock tools' defaults). `auto` is
// kept as its own kind: the bench rule resolves it to a concrete spec later, and
// nothing in codec compresses with an unresolved `auto`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ferry::codec {

enum class codec_kind { auto_select, none, zstd, xz };

inline constexpr int default_zstd_level = 3;
inline constexpr int min_zstd_level = 1;
inline constexpr int max_zstd_level = 19;  // beyond 19 stock `zstd` needs --ultra
inline constexpr int default_xz_level = 6;
inline constexpr int min_xz_level = 0;
inline constexpr int max_xz_level = 9;

struct codec_spec {
    codec_kind kind = codec_kind::auto_select;
    int level = 0;  // zstd 1-19, xz 0-9; 0 for none and auto

    bool is_auto() const { return kind == codec_kind::auto_select; }
    friend bool operator==(const codec_spec&, const codec_spec&) = default;
};

// The codec's name as on the command line: "auto", "none", "zstd", "xz".
std::string_view name(codec_kind kind);

// Canonical text: "auto", "none", "zstd:3", "xz:6" (parse_codec_spec reads it back).
std::string to_string(const codec_spec& spec);

// Checks that level is valid for kind; throws ferry::failure(bad_input) naming the range.
void check_level(codec_kind kind, int level);

// Parses one spec. Throws ferry::failure(bad_input) saying what was expected.
codec_spec parse_codec_spec(std::string_view text);

// Parses the comma-separated list of `--codec`, e.g. "none,zstd:1,xz:0". Empty
// items are errors; the message names the item's position.
std::vector<codec_spec> parse_codec_list(std::string_view text);

}  // namespace ferry::codec
