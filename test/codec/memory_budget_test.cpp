// The memory budget: estimates, thread reduction, refusal, and the estimates
// checked against what the libraries really allocate (ferry's counting allocator).
#include <boost/test/unit_test.hpp>

#include "codec/helpers.hpp"
#include "ferry/util/error.hpp"

using namespace ferry::codec;
using namespace ferry::codec::test;

namespace {

constexpr std::uint64_t mib = 1 << 20;

}  // namespace

BOOST_AUTO_TEST_SUITE(codec_memory_budget)

BOOST_AUTO_TEST_CASE(cheap_choices_keep_their_threads) {
    auto plan = plan_compression({codec_kind::zstd, 1}, 2);
    BOOST_TEST(plan.threads == 2U);
    BOOST_TEST(plan.note.empty());
    BOOST_TEST(plan.memory_estimate <= default_memory_budget);
    BOOST_TEST(plan_compression({codec_kind::xz, 0}, 2).threads == 2U);
    BOOST_TEST(plan_compression({codec_kind::none, 0}, 2).memory_estimate == 0U);
    BOOST_TEST(plan_compression({codec_kind::zstd, 1}, 0).requested_threads >= 1U);
}

BOOST_AUTO_TEST_CASE(expensive_choices_get_fewer_threads) {
    // Library notes: xz preset 3 needs 134 MiB for two threads.
    auto xz3 = plan_compression({codec_kind::xz, 3}, 2);
    BOOST_TEST(xz3.threads == 1U);
    BOOST_TEST(xz3.memory_estimate <= default_memory_budget);
    BOOST_TEST(xz3.note.find("xz:3 with 2 threads needs") == 0U, xz3.note);
    BOOST_TEST(xz3.note.find("memory budget of 128 MiB") != std::string::npos, xz3.note);
    // zstd:19 jobs are 4 x 8 MiB windows: workers do not fit 128 MiB.
    auto zstd19 = plan_compression({codec_kind::zstd, 19}, 2);
    BOOST_TEST(zstd19.threads == 1U);
    BOOST_TEST(!zstd19.note.empty());
    // A larger budget gives the threads back.
    BOOST_TEST(plan_compression({codec_kind::xz, 3}, 2, 512 * mib).threads == 2U);
    // The factory applies the plan.
    auto comp = make_compressor({codec_kind::xz, 3}, {.threads = 2});
    BOOST_TEST(comp->plan().threads == 1U);
}

BOOST_AUTO_TEST_CASE(choices_over_budget_are_refused_with_advice) {
    try {
        plan_compression({codec_kind::xz, 9}, 2);
        BOOST_FAIL("xz:9 accepted in 128 MiB");
    } catch (const ferry::failure& f) {
        BOOST_TEST((f.code() == ferry::errc::too_large));
        std::string message = f.what();
        BOOST_TEST(message.find("xz:9 needs") == 0U, message);
        BOOST_TEST(message.find("over the memory budget of 128 MiB: use xz:6 or lower") != std::string::npos,
                   message);
    }
    try {
        make_compressor({codec_kind::zstd, 19}, {.threads = 1, .memory_budget = 16 * mib});
        BOOST_FAIL("zstd:19 accepted in 16 MiB");
    } catch (const ferry::failure& f) {
        BOOST_TEST((f.code() == ferry::errc::too_large));
        BOOST_TEST(std::string(f.what()).find("use zstd:") != std::string::npos, f.what());
    }
    BOOST_CHECK_THROW(plan_compression({codec_kind::auto_select, 0}, 1), ferry::failure);
}

BOOST_AUTO_TEST_CASE(set_level_replans_or_refuses) {
    auto comp = make_compressor({codec_kind::xz, 0}, {.threads = 2});
    BOOST_TEST(comp->plan().threads == 2U);
    BOOST_CHECK_THROW(comp->set_level(9), ferry::failure);
    BOOST_CHECK_THROW(comp->set_level(10), ferry::failure);
    comp->set_level(3);
    auto text = text_data(100000, 61);
    auto packed = compress_all(*comp, text, 4096);
    BOOST_TEST(comp->spec().level == 3);
    BOOST_TEST(comp->plan().threads == 1U);
    auto d = make_decompressor(codec_kind::xz);
    BOOST_TEST((decompress_all(*d, packed, 4096) == text));
}

BOOST_AUTO_TEST_CASE(estimates_bound_the_measured_peak) {
    // Enough input to fill every zstd job buffer at level 1 (2 MiB jobs) and 3 (8 MiB).
    auto text = text_data(40 << 20, 62);
    struct config {
        codec_spec spec;
        unsigned threads;
        std::size_t size;
    };
    for (auto [spec, threads, size] :
         {config{{codec_kind::zstd, 1}, 1, 8u << 20}, config{{codec_kind::zstd, 1}, 2, 24u << 20},
          config{{codec_kind::zstd, 3}, 2, 40u << 20}, config{{codec_kind::zstd, 9}, 1, 4u << 20},
          config{{codec_kind::xz, 0}, 1, 2u << 20}, config{{codec_kind::xz, 0}, 2, 8u << 20}}) {
        BOOST_TEST_CONTEXT(to_string(spec) << " threads " << threads) {
            auto comp = make_compressor(spec, {.threads = threads, .memory_budget = 1024 * mib});
            BOOST_TEST_REQUIRE(comp->plan().threads == threads);
            compress_all(*comp, std::string_view(text).substr(0, size), 1 << 20);
            BOOST_TEST_MESSAGE(to_string(spec) << " -T" << threads << ": estimate "
                               << comp->plan().memory_estimate / mib << " MiB, measured peak "
                               << comp->peak_memory() / mib << " MiB");
            BOOST_TEST(comp->peak_memory() > 0U);
            BOOST_TEST(comp->peak_memory() <= comp->plan().memory_estimate);
        }
    }
}

BOOST_AUTO_TEST_CASE(decoders_refuse_windows_over_budget) {
    // `zstd --long=27` on a pipe declares a 128 MiB window; xz -9 a 64 MiB dictionary.
    auto text = text_data(100000, 63);
    int status = -1;
    auto zstd_long = run_command("zstd --long=27 -c", text, &status);
    BOOST_TEST_REQUIRE(status == 0);
    auto xz9 = run_command("cat | xz -9 -c", text, &status);  // from a pipe: no size to shrink the dictionary
    BOOST_TEST_REQUIRE(status == 0);
    for (auto [kind, packed] : {std::pair{codec_kind::zstd, zstd_long}, std::pair{codec_kind::xz, xz9}}) {
        try {
            auto d = make_decompressor(kind, {.memory_budget = 32 * mib});
            decompress_all(*d, packed, 4096);
            BOOST_FAIL(name(kind) << " decoded past the budget");
        } catch (const ferry::failure& f) {
            BOOST_TEST((f.code() == ferry::errc::too_large), f.what());
            BOOST_TEST(std::string(f.what()).find("memory budget of 32 MiB") != std::string::npos, f.what());
        }
        auto d = make_decompressor(kind, {.memory_budget = 512 * mib});
        BOOST_TEST((decompress_all(*d, packed, 4096) == text));
    }
}

BOOST_AUTO_TEST_SUITE_END()
