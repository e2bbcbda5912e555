// Decoders reject corrupt and truncated input with a message naming the codec and
// the compressed offset, and never claim success on a strict prefix.
#include <boost/test/unit_test.hpp>

#include "codec/helpers.hpp"
#include "ferry/util/error.hpp"

using namespace ferry::codec;
using namespace ferry::codec::test;

namespace {

// Decodes data; returns the failure (code and message) or an empty message on success.
std::pair<std::error_code, std::string> decode_error(codec_kind kind, std::string_view data,
                                                     std::size_t chunk = 4096,
                                                     std::uint64_t budget = default_memory_budget) {
    try {
        auto d = make_decompressor(kind, {.memory_budget = budget});
        decompress_all(*d, data, chunk);
    } catch (const ferry::failure& f) {
        return {f.code(), f.what()};
    }
    return {{}, ""};
}

std::string compressed(codec_kind kind, int level, std::string_view data) {
    auto c = make_compressor({kind, level}, {.threads = 1});
    return compress_all(*c, data, 1 << 16);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(codec_corrupt_input)

BOOST_AUTO_TEST_CASE(garbage_is_rejected_with_the_offset) {
    auto [zstd_code, zstd_message] = decode_error(codec_kind::zstd, "this is not zstd at all");
    BOOST_TEST((zstd_code == ferry::errc::bad_input));
    BOOST_TEST(zstd_message.find("zstd: corrupt input at compressed offset 0") == 0U, zstd_message);
    auto [xz_code, xz_message] = decode_error(codec_kind::xz, "this is not xz either");
    BOOST_TEST((xz_code == ferry::errc::bad_input));
    BOOST_TEST(xz_message.find("xz: corrupt input at compressed offset") == 0U, xz_message);
    BOOST_TEST(xz_message.find("not in the .xz format") != std::string::npos, xz_message);
}

BOOST_AUTO_TEST_CASE(flipped_bytes_are_detected) {
    auto text = text_data(200000, 51);
    for (auto [kind, level] : {std::pair{codec_kind::zstd, 3}, std::pair{codec_kind::xz, 1}}) {
        auto packed = compressed(kind, level, text);
        int detected = 0, tried = 0;
        for (std::size_t pos = 20; pos < packed.size(); pos += packed.size() / 23) {
            auto bad = packed;
            bad[pos] = static_cast<char>(bad[pos] ^ 0x55);
            ++tried;
            auto [code, message] = decode_error(kind, bad);
            if (!message.empty()) {
                ++detected;
                BOOST_TEST(message.find("offset") != std::string::npos, message);
            }
        }
        // Both formats carry a checksum of the content: every flip must be caught.
        BOOST_TEST(detected == tried, name(kind) << ": " << detected << "/" << tried);
    }
    // Second frame corrupt: the offset points past the first frame.
    auto first = compressed(codec_kind::zstd, 1, text);
    auto second = compressed(codec_kind::zstd, 1, text);
    second[second.size() / 2] ^= 0x01;
    auto [code, message] = decode_error(codec_kind::zstd, first + second);
    BOOST_TEST((code == ferry::errc::bad_input));
    BOOST_TEST(message.find("frame 2 starting at offset " + std::to_string(first.size())) != std::string::npos,
               message);
}

BOOST_AUTO_TEST_CASE(every_strict_prefix_is_truncated) {
    auto text = text_data(3000, 52);
    for (auto [kind, level] : {std::pair{codec_kind::zstd, 19}, std::pair{codec_kind::xz, 0}}) {
        auto packed = compressed(kind, level, text);
        for (std::size_t n = 0; n < packed.size(); ++n) {
            auto [code, message] = decode_error(kind, std::string_view(packed).substr(0, n), 7);
            BOOST_TEST_REQUIRE(!message.empty(), name(kind) << " accepted a prefix of " << n);
            BOOST_TEST_REQUIRE((code == ferry::errc::truncated || code == ferry::errc::bad_input), message);
            if (n > 0 && code == ferry::errc::truncated)
                BOOST_TEST_REQUIRE(message.find("offset " + std::to_string(n)) != std::string::npos, message);
        }
        BOOST_TEST(decode_error(kind, packed).second.empty());
        BOOST_TEST(decode_error(kind, "").second.find("empty") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(trailing_garbage_after_a_frame_is_rejected) {
    auto packed = compressed(codec_kind::zstd, 3, text_data(10000, 53));
    auto [code, message] = decode_error(codec_kind::zstd, packed + "junk");
    BOOST_TEST(!message.empty());
    auto xz_packed = compressed(codec_kind::xz, 0, text_data(10000, 53));
    auto [xz_code, xz_message] = decode_error(codec_kind::xz, xz_packed + "junk");
    BOOST_TEST(!xz_message.empty());
}

BOOST_AUTO_TEST_SUITE_END()
