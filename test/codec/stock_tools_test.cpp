// ferry's output must decode with the stock `zstd -dc` / `xz -dc` of a build
// machine, and ferry must decode what the stock tools write on the receive side.
#include <boost/test/unit_test.hpp>

#include "codec/helpers.hpp"
#include "ferry/codec/commands.hpp"

using namespace ferry::codec;
using namespace ferry::codec::test;

BOOST_AUTO_TEST_SUITE(codec_stock_tools)

BOOST_AUTO_TEST_CASE(stock_tools_decode_ferry_output) {
    auto text = text_data(3 << 20, 21);
    auto noise = noise_data(300000, 22);
    auto data = text + noise;
    struct config {
        codec_spec spec;
        unsigned threads;
    };
    for (auto [spec, threads] : {config{{codec_kind::zstd, 1}, 1}, config{{codec_kind::zstd, 3}, 2},
                                 config{{codec_kind::zstd, 12}, 1}, config{{codec_kind::xz, 0}, 1},
                                 config{{codec_kind::xz, 0}, 2}, config{{codec_kind::none, 0}, 1}}) {
        BOOST_TEST_CONTEXT(to_string(spec) << " threads " << threads) {
            auto comp = make_compressor(spec, {.threads = threads});
            auto packed = compress_all(*comp, data, 1 << 16);
            packed += compress_all(*comp, "and a second frame\n", 1 << 16);  // concatenated
            int status = -1;
            auto plain = run_command(decompress_command(spec.kind), packed, &status);
            BOOST_TEST(status == 0);
            BOOST_TEST((plain == data + "and a second frame\n"));
        }
    }
}

BOOST_AUTO_TEST_CASE(ferry_decodes_stock_tool_output) {
    // Large enough for several zstd jobs / xz blocks with -T2.
    auto text = text_data(6 << 20, 23);
    struct config {
        const char* command;
        codec_kind kind;
    };
    for (auto [command, kind] : {config{"zstd -c -T2", codec_kind::zstd}, config{"zstd -1 -T2 -c", codec_kind::zstd},
                                 config{"xz -c -T2 -0 --block-size=1MiB", codec_kind::xz},
                                 config{"xz -c -T2 -1", codec_kind::xz}}) {
        BOOST_TEST_CONTEXT(command) {
            int status = -1;
            auto packed = run_command(command, text, &status);
            BOOST_TEST_REQUIRE(status == 0);
            auto twice = packed + packed;  // concatenated frames / streams
            for (unsigned threads : {1U, 2U}) {
                auto d = make_decompressor(kind, {.threads = threads});
                BOOST_TEST((decompress_all(*d, twice, 100000) == text + text));
            }
        }
    }
    // The receive side's actual command line.
    int status = -1;
    auto packed = run_command(compress_command({codec_kind::zstd, 1}, 0), text, &status);
    BOOST_TEST_REQUIRE(status == 0);
    auto d = make_decompressor(codec_kind::zstd);
    BOOST_TEST((decompress_all(*d, packed, 1 << 20) == text));
}

BOOST_AUTO_TEST_CASE(level_changes_mid_stream_decode_with_stock_zstd) {
    auto a = text_data(2 << 20, 31), b = text_data(1 << 20, 32), c = text_data(1 << 20, 33);
    auto comp = make_compressor({codec_kind::zstd, 1}, {.threads = 2});
    auto packed = compress_all(*comp, a, 1 << 16, default_output_limit, false);
    BOOST_TEST(comp->spec().level == 1);
    comp->set_level(9);
    BOOST_TEST(comp->spec().level == 1);  // the open frame keeps its level
    packed += compress_all(*comp, b, 1 << 16, default_output_limit, false);
    BOOST_TEST(comp->spec().level == 9);
    comp->set_level(3);
    packed += compress_all(*comp, c, 1 << 16);
    BOOST_TEST(comp->spec().level == 3);
    int status = -1;
    auto plain = run_command("zstd -dc", packed, &status);
    BOOST_TEST(status == 0);
    BOOST_TEST((plain == a + b + c));
    auto d = make_decompressor(codec_kind::zstd);
    BOOST_TEST((decompress_all(*d, packed, 1 << 16) == a + b + c));
    // Independent of zstd -l's output format: each frame starts with the magic.
    std::size_t frames = 0;
    for (auto pos = packed.find("\x28\xb5\x2f\xfd"); pos != std::string::npos; pos = packed.find("\x28\xb5\x2f\xfd", pos + 1))
        ++frames;
    BOOST_TEST(frames >= 3U);
}

BOOST_AUTO_TEST_CASE(xz_level_change_starts_a_new_stream) {
    auto a = text_data(500000, 41), b = text_data(500000, 42);
    auto comp = make_compressor({codec_kind::xz, 0}, {.threads = 1});
    auto packed = compress_all(*comp, a, 1 << 16, default_output_limit, false);
    comp->set_level(2);
    packed += compress_all(*comp, b, 1 << 16);
    BOOST_TEST(comp->spec().level == 2);
    int status = -1;
    auto plain = run_command("xz -dc", packed, &status);
    BOOST_TEST(status == 0);
    BOOST_TEST((plain == a + b));
}

BOOST_AUTO_TEST_SUITE_END()
