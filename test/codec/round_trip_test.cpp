#include <boost/test/unit_test.hpp>

#include "codec/helpers.hpp"
#include "ferry/util/error.hpp"

using namespace ferry::codec;
using namespace ferry::codec::test;

namespace {

const codec_spec single_thread_specs[] = {
    {codec_kind::none, 0}, {codec_kind::zstd, 1}, {codec_kind::zstd, 3}, {codec_kind::zstd, 19},
    {codec_kind::xz, 0},   {codec_kind::xz, 6},
};

std::string round_trip(const codec_spec& spec, std::string_view data, std::size_t chunk,
                       std::size_t limit, unsigned threads = 1, unsigned decode_threads = 1) {
    compression_options options;
    options.threads = threads;
    options.output_limit = limit;
    auto c = make_compressor(spec, options);
    auto packed = compress_all(*c, data, chunk, limit);
    BOOST_TEST(c->stats().bytes_in == data.size());
    BOOST_TEST(c->stats().bytes_out == packed.size());
    decompression_options decode;
    decode.output_limit = limit;
    decode.threads = decode_threads;
    auto d = make_decompressor(spec.kind, decode);
    auto plain = decompress_all(*d, packed, chunk, limit);
    BOOST_TEST(d->stats().bytes_in == packed.size());
    BOOST_TEST(d->stats().bytes_out == plain.size());
    return plain;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(codec_round_trips)

BOOST_AUTO_TEST_CASE(text_and_random_in_large_chunks) {
    auto text = text_data(1 << 20);
    auto noise = noise_data(256 << 10);
    for (const auto& spec : single_thread_specs) {
        BOOST_TEST_CONTEXT(to_string(spec)) {
            auto small_text = spec.level >= 19 ? std::string_view(text).substr(0, 128 << 10) : std::string_view(text);
            BOOST_TEST((round_trip(spec, small_text, 64 << 10, default_output_limit) == small_text));
            BOOST_TEST((round_trip(spec, noise, 100000, default_output_limit) == noise));
        }
    }
}

BOOST_AUTO_TEST_CASE(one_byte_at_a_time_with_one_byte_outputs) {
    auto text = text_data(3000, 7);
    for (const auto& spec : single_thread_specs) {
        BOOST_TEST_CONTEXT(to_string(spec)) {
            BOOST_TEST((round_trip(spec, text, 1, default_output_limit) == text));
            BOOST_TEST((round_trip(spec, text, 1, 1) == text));
            BOOST_TEST((round_trip(spec, text, 777, 13) == text));
        }
    }
}

BOOST_AUTO_TEST_CASE(empty_input_makes_one_decodable_frame) {
    for (const auto& spec : single_thread_specs) {
        BOOST_TEST_CONTEXT(to_string(spec)) {
            auto c = make_compressor(spec, {.threads = 1});
            auto packed = compress_all(*c, "", 1);
            BOOST_TEST((spec.kind == codec_kind::none) == packed.empty());
            auto d = make_decompressor(spec.kind);
            BOOST_TEST(decompress_all(*d, packed, 4096).empty());
        }
    }
}

BOOST_AUTO_TEST_CASE(multithreaded_compression_round_trips) {
    auto text = text_data(12 << 20, 3);
    BOOST_TEST((round_trip({codec_kind::zstd, 1}, text, 1 << 20, default_output_limit, 2) == text));
    BOOST_TEST((round_trip({codec_kind::zstd, 3}, text, 300000, 65536, 2) == text));
    auto part = std::string_view(text).substr(0, 3 << 20);
    // xz:0 blocks are 3 MiB (3 x dictionary): 3 MiB gives two threads work.
    BOOST_TEST((round_trip({codec_kind::xz, 0}, text.substr(0, 7 << 20), 1 << 20, default_output_limit, 2, 2) ==
                text.substr(0, 7 << 20)));
    BOOST_TEST((round_trip({codec_kind::xz, 1}, part, 4096, 1000, 2) == part));
}

BOOST_AUTO_TEST_CASE(frames_concatenate_after_finish) {
    auto a = text_data(200000, 4), b = noise_data(50000, 5), c = text_data(10, 6);
    for (const auto& spec : single_thread_specs) {
        BOOST_TEST_CONTEXT(to_string(spec)) {
            auto comp = make_compressor(spec, {.threads = 1});
            auto packed = compress_all(*comp, a, 65536);
            packed += compress_all(*comp, b, 65536);
            packed += compress_all(*comp, c, 65536);
            auto d = make_decompressor(spec.kind);
            BOOST_TEST((decompress_all(*d, packed, 1000) == a + b + c));
        }
    }
}

BOOST_AUTO_TEST_CASE(flush_makes_everything_fed_decodable) {
    // After flush(), a decoder given the bytes so far yields every byte fed so far.
    for (auto spec : {codec_spec{codec_kind::zstd, 3}, codec_spec{codec_kind::xz, 1}}) {
        BOOST_TEST_CONTEXT(to_string(spec)) {
            auto comp = make_compressor(spec, {.threads = 1});
            auto d = make_decompressor(spec.kind);
            std::string sent, decoded, out;
            for (int round = 0; round < 3; ++round) {
                auto piece = text_data(5000, 10 + round);
                sent += piece;
                std::string packed;
                auto rest = std::string_view(piece);
                while (!rest.empty()) {
                    rest.remove_prefix(comp->feed(bytes(rest), out));
                    packed += out;
                    out.clear();
                }
                while (!comp->flush(out)) {
                    packed += out;
                    out.clear();
                }
                packed += out;
                out.clear();
                auto view = std::string_view(packed);
                while (!view.empty() || d->has_pending_output()) {
                    view.remove_prefix(d->feed(bytes(view), out));
                    decoded += out;
                    out.clear();
                }
                BOOST_TEST(decoded == sent);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(feeding_during_an_unfinished_finish_is_refused) {
    compression_options options;
    options.threads = 1;
    options.output_limit = 1;
    auto comp = make_compressor({codec_kind::zstd, 1}, options);
    std::string out;
    auto data = noise_data(1000);
    auto rest = std::string_view(data);
    while (!rest.empty()) {
        rest.remove_prefix(comp->feed(bytes(rest), out));
        out.clear();
    }
    BOOST_TEST_REQUIRE(!comp->finish(out));
    BOOST_CHECK_THROW(comp->feed(bytes("x"), out), ferry::failure);
    while (!comp->finish(out)) {
    }
}

BOOST_AUTO_TEST_CASE(stats_count_bytes_and_time) {
    auto text = text_data(1 << 20, 8);
    auto comp = make_compressor({codec_kind::zstd, 3}, {.threads = 1});
    auto packed = compress_all(*comp, text, 65536);
    BOOST_TEST(comp->stats().bytes_in == text.size());
    BOOST_TEST(comp->stats().bytes_out == packed.size());
    BOOST_TEST(comp->stats().busy.count() > 0);
    BOOST_TEST(packed.size() < text.size() / 2);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(codec_drain_order)

// finish() right after an incomplete flush() (1-byte output limit) completes the
// flush first: liblzma would reject LZMA_FINISH in the middle of LZMA_FULL_FLUSH.
BOOST_AUTO_TEST_CASE(finish_after_an_incomplete_flush) {
    for (auto spec : {codec_spec{codec_kind::zstd, 3}, codec_spec{codec_kind::xz, 0}}) {
        BOOST_TEST_CONTEXT(to_string(spec)) {
            compression_options options;
            options.threads = 1;
            options.output_limit = 1;
            auto comp = make_compressor(spec, options);
            auto text = text_data(2000, 71);
            std::string packed = compress_all(*comp, text, 100, 1, false), out;
            BOOST_TEST_REQUIRE(!comp->flush(out));
            packed += out;
            out.clear();
            BOOST_CHECK_THROW(comp->feed(bytes("x"), out), ferry::failure);
            while (!comp->finish(out)) {
                BOOST_TEST_REQUIRE(out.size() <= 1U);
                packed += out;
                out.clear();
            }
            packed += out;
            BOOST_TEST(comp->stats().bytes_out == packed.size());
            int status = -1;
            BOOST_TEST((run_command(spec.kind == codec_kind::zstd ? "zstd -dc" : "xz -dc", packed, &status) == text));
            BOOST_TEST(status == 0);
        }
    }
}

BOOST_AUTO_TEST_CASE(set_level_then_flush_ends_the_frame) {
    compression_options options;
    options.threads = 1;
    options.output_limit = 7;
    auto comp = make_compressor({codec_kind::xz, 0}, options);
    auto a = text_data(3000, 72), b = text_data(3000, 73);
    auto packed = compress_all(*comp, a, 500, 7, false);
    comp->set_level(1);
    std::string out;
    while (!comp->flush(out)) {
        packed += out;
        out.clear();
    }
    packed += out;
    out.clear();
    BOOST_TEST(comp->spec().level == 1);
    packed += compress_all(*comp, b, 500, 7);
    auto d = make_decompressor(codec_kind::xz);
    BOOST_TEST((decompress_all(*d, packed, 64) == a + b));
}

BOOST_AUTO_TEST_SUITE_END()
