#include <boost/test/unit_test.hpp>

#include "ferry/codec/auto_rule.hpp"
#include "ferry/util/error.hpp"

using namespace ferry::codec;

namespace {

// One-thread figures measured on this machine (library-notes.md, 64 MiB of
// binaries); xz:0's ratio from the 1 GB export (test-hosts.md, 4.0 with 2 threads).
auto_inputs measured(double link_bytes_per_s) {
    auto_inputs in;
    in.link_bytes_per_s = link_bytes_per_s;
    in.local_cores = 2;
    in.candidates = {
        {{codec_kind::zstd, 1}, 204e6, 2.38}, {{codec_kind::zstd, 3}, 208e6, 2.66},
        {{codec_kind::zstd, 6}, 68e6, 2.84},  {{codec_kind::zstd, 9}, 41e6, 2.94},
        {{codec_kind::xz, 0}, 16e6, 3.2},
    };
    return in;
}

constexpr double loopback = 440e6;      // libssh channel write, default cipher
constexpr double mbit100 = 11.2e6;      // tc tbf 100mbit, measured
constexpr double mbit10 = 1.12e6;

}  // namespace

BOOST_AUTO_TEST_SUITE(auto_rule)

BOOST_AUTO_TEST_CASE(loopback_picks_none_or_zstd_1) {
    auto in = measured(loopback);
    auto c = choose_codec(in);
    BOOST_TEST(to_string(c.spec) == "none");
    BOOST_TEST(c.considered.size() == 6u);  // none + 5 candidates
    // With the remote import as the common floor (1 GB in 5.4 s) still none: the cheapest.
    in.sink_bytes_per_s = 185e6;
    c = choose_codec(in);
    BOOST_TEST(to_string(c.spec) == "none");
    BOOST_TEST(c.limit == "import");
    // A slow cipher (60 MB/s) on a 60 MB/s link: compression pays again.
    in.sink_bytes_per_s = 0;
    in.cipher_bytes_per_s = 60e6;
    in.link_bytes_per_s = 60e6;
    c = choose_codec(in);
    BOOST_TEST((c.spec.kind == codec_kind::zstd));
}

BOOST_AUTO_TEST_CASE(hundred_mbit_picks_a_stronger_zstd_level) {
    auto c = choose_codec(measured(mbit100));
    BOOST_TEST((c.spec.kind == codec_kind::zstd));
    BOOST_TEST(c.spec.level >= 3);
    BOOST_TEST(c.limit == "link");
    BOOST_TEST(c.predicted_bytes_per_s > 2.5 * mbit100);
    BOOST_TEST(c.reason.find("link 11.2 MB/s") != std::string::npos);
}

// A machine on this kernel (a local test host behind a shaped 1 Gbit/s link)
// takes its decryption, decoding and import from the same 2 cores: every
// prediction drops, the CPU becomes the limit, and the reason says so.
BOOST_AUTO_TEST_CASE(a_machine_on_this_kernel_shares_the_cpu) {
    auto in = measured(117e6);
    auto apart = choose_codec(in);
    in.remote_shares_cpu = true;
    auto shared = choose_codec(in);
    BOOST_TEST(apart.limit == "link");
    BOOST_TEST(shared.limit == "cpu");
    BOOST_TEST(shared.predicted_bytes_per_s < 0.6 * apart.predicted_bytes_per_s);
    // zstd:3: 1.8 cores / (1/208 + 2/(2.66*440) + 1/700 + 1/300 per MB) = 160 MB/s.
    auto zstd3 = predict({{codec_kind::zstd, 3}, 208e6, 2.66}, in);
    BOOST_TEST(zstd3.bytes_per_s / 1e6 == 160.0, boost::test_tools::tolerance(0.01));
    // none pays the cipher twice and the import: 1.8 / (2/440 + 1/300) = 228 MB/s, link-bound at 117.
    auto none = predict({{codec_kind::none, 0}, 0, 1.0}, in);
    BOOST_TEST(none.limit == "link");
    BOOST_TEST(shared.reason.find("2 cores shared with the machine") != std::string::npos, shared.reason);
    BOOST_TEST(shared.reason.find("others: none 117") != std::string::npos, shared.reason);
}

BOOST_AUTO_TEST_CASE(ten_mbit_picks_xz_unless_the_remote_lacks_it) {
    auto in = measured(mbit10);
    BOOST_TEST(to_string(choose_codec(in).spec) == "xz:0");
    in.remote_has_xz = false;
    auto c = choose_codec(in);
    BOOST_TEST((c.spec.kind == codec_kind::zstd));
    BOOST_TEST(c.spec.level >= 6);  // zstd:6 is within 5% of zstd:9 and cheaper
    in.remote_has_zstd = false;
    BOOST_TEST(to_string(choose_codec(in).spec) == "none");
}

BOOST_AUTO_TEST_CASE(slow_remote_decoder_rules_out_xz_on_fast_links) {
    // 200 MB/s link: xz would decode at 50 MB/s on the remote, CPU-bound anyway.
    auto in = measured(200e6);
    in.local_cores = 64;  // plenty of local CPU: only the remote decoder limits xz
    auto c = choose_codec(in);
    BOOST_TEST((c.spec.kind != codec_kind::xz));
    for (const auto& p : c.considered)
        if (p.spec.kind == codec_kind::xz) {
            BOOST_TEST(p.limit == "decode");
            BOOST_TEST(p.bytes_per_s == 50e6);
        }
}

BOOST_AUTO_TEST_CASE(predictions_name_the_limiting_stage) {
    auto in = measured(mbit100);
    auto p = predict({{codec_kind::xz, 0}, 16e6, 3.2}, in);
    BOOST_TEST(p.limit == "cpu");
    BOOST_TEST(p.bytes_per_s < 16e6 * 2);
    p = predict({{codec_kind::none, 0}, 0, 1.0}, in);
    BOOST_TEST(p.limit == "link");
    BOOST_TEST(p.bytes_per_s == mbit100);
}

BOOST_AUTO_TEST_CASE(rejects_unmeasured_inputs) {
    auto in = measured(0);
    BOOST_CHECK_THROW(choose_codec(in), ferry::failure);
    in = measured(mbit100);
    in.candidates.push_back({{codec_kind::auto_select, 0}, 1e6, 2});
    BOOST_CHECK_THROW(choose_codec(in), ferry::failure);
    in = measured(mbit100);
    in.candidates.push_back({{codec_kind::zstd, 19}, 0, 3.3});
    BOOST_CHECK_THROW(choose_codec(in), ferry::failure);
}

BOOST_AUTO_TEST_CASE(level_adjustment_between_frames) {
    BOOST_TEST(adjust_zstd_level(9, 0.95, 0.4) == 7);   // compressor-bound: down by 2
    BOOST_TEST(adjust_zstd_level(3, 0.95, 0.4) == 2);   // low levels: down by 1
    BOOST_TEST(adjust_zstd_level(1, 0.95, 0.4) == 1);   // floor
    BOOST_TEST(adjust_zstd_level(3, 0.3, 0.95) == 4);   // link-bound, CPU idle: up
    BOOST_TEST(adjust_zstd_level(12, 0.3, 0.95) == 12); // ceiling
    BOOST_TEST(adjust_zstd_level(5, 0.7, 0.8) == 5);    // in between: keep
    BOOST_TEST(adjust_zstd_level(5, 0.3, 0.95, 1, 5) == 5);
}

BOOST_AUTO_TEST_SUITE_END()
