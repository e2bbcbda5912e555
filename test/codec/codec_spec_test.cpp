#include <boost/test/unit_test.hpp>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/codec/commands.hpp"
#include "ferry/util/error.hpp"

using namespace ferry::codec;

namespace {

// The failure's message, or "" if parsing succeeded.
std::string parse_error(std::string_view text) {
    try {
        parse_codec_spec(text);
    } catch (const ferry::failure& f) {
        BOOST_TEST((f.code() == ferry::errc::bad_input));
        return f.what();
    }
    return "";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(codec_spec_parsing)

BOOST_AUTO_TEST_CASE(accepts_every_form_of_the_contract) {
    BOOST_TEST((parse_codec_spec("auto") == codec_spec{codec_kind::auto_select, 0}));
    BOOST_TEST(parse_codec_spec("auto").is_auto());
    BOOST_TEST((parse_codec_spec("none") == codec_spec{codec_kind::none, 0}));
    BOOST_TEST((parse_codec_spec("zstd") == codec_spec{codec_kind::zstd, 3}));
    BOOST_TEST((parse_codec_spec("xz") == codec_spec{codec_kind::xz, 6}));
    for (int level = 1; level <= 19; ++level)
        BOOST_TEST((parse_codec_spec("zstd:" + std::to_string(level)) == codec_spec{codec_kind::zstd, level}));
    for (int level = 0; level <= 9; ++level)
        BOOST_TEST((parse_codec_spec("xz:" + std::to_string(level)) == codec_spec{codec_kind::xz, level}));
}

BOOST_AUTO_TEST_CASE(canonical_text_reads_back) {
    for (auto text : {"auto", "none", "zstd:1", "zstd:19", "xz:0", "xz:9"})
        BOOST_TEST(to_string(parse_codec_spec(text)) == text);
    BOOST_TEST(to_string(parse_codec_spec("zstd")) == "zstd:3");
    BOOST_TEST(to_string(parse_codec_spec("xz")) == "xz:6");
}

BOOST_AUTO_TEST_CASE(rejects_with_what_was_expected) {
    for (auto bad : {"", "gzip", "ZSTD", "zstd:", "xz:", "zstd:abc", "auto:1", "none:0", "zstd-3", " zstd",
                     "zstd:3 ", "zstd :3", "lz4:1"})
        BOOST_TEST(parse_error(bad).find("expected") != std::string::npos, "input '" << bad << "'");
    BOOST_TEST(parse_error("gzip") ==
               "codec \"gzip\": expected auto, none, zstd, zstd:N (N 1-19), xz or xz:N (N 0-9)");
    BOOST_TEST(parse_error("zstd:0") == "codec \"zstd:0\": expected zstd:N with N an integer from 1 to 19");
    BOOST_TEST(parse_error("zstd:20").find("from 1 to 19") != std::string::npos);
    BOOST_TEST(parse_error("zstd:-1").find("from 1 to 19") != std::string::npos);
    BOOST_TEST(parse_error("zstd:+3").find("from 1 to 19") != std::string::npos);
    BOOST_TEST(parse_error("xz:10") == "codec \"xz:10\": expected xz:N with N an integer from 0 to 9");
    BOOST_TEST(parse_error("xz:99999999999999999999").find("from 0 to 9") != std::string::npos);
    BOOST_TEST(parse_error("xz:6e").find("from 0 to 9") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(lists_split_on_commas_and_name_the_bad_item) {
    auto specs = parse_codec_list("none,zstd:1,zstd,xz:0,auto");
    BOOST_TEST_REQUIRE(specs.size() == 5U);
    BOOST_TEST((specs[1] == codec_spec{codec_kind::zstd, 1}));
    BOOST_TEST((specs[2] == codec_spec{codec_kind::zstd, 3}));
    BOOST_TEST(specs[4].is_auto());
    for (auto [bad, needle] : {std::pair{"zstd:1,,xz", "item 2 is empty"}, std::pair{"zstd,", "item 2 is empty"},
                               std::pair{"", "item 1 is empty"}, std::pair{"none,xz:12", "item 2: codec \"xz:12\""}}) {
        try {
            parse_codec_list(bad);
            BOOST_FAIL("accepted " << bad);
        } catch (const ferry::failure& f) {
            BOOST_TEST(std::string(f.what()).find(needle) != std::string::npos, f.what());
        }
    }
}

BOOST_AUTO_TEST_CASE(remote_command_text) {
    BOOST_TEST(decompress_command(codec_kind::zstd) == "zstd -dc");
    BOOST_TEST(decompress_command(codec_kind::xz) == "xz -dc");
    BOOST_TEST(decompress_command(codec_kind::none) == "cat");
    BOOST_TEST(compress_command({codec_kind::zstd, 1}, 0) == "zstd -1 -T0 -c");
    BOOST_TEST(compress_command({codec_kind::xz, 0}, 0) == "xz -0 -T0 -c");
    BOOST_TEST(compress_command({codec_kind::zstd, 19}, 2) == "zstd -19 -T2 -c");
    BOOST_TEST(compress_command({codec_kind::none, 0}, 4) == "cat");
    BOOST_CHECK_THROW(decompress_command(codec_kind::auto_select), ferry::failure);
    BOOST_CHECK_THROW(compress_command({codec_kind::auto_select, 0}, 1), ferry::failure);
    BOOST_CHECK_THROW(compress_command({codec_kind::zstd, 22}, 1), ferry::failure);
}

BOOST_AUTO_TEST_SUITE_END()
