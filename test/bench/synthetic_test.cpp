#include <boost/test/unit_test.hpp>

#include <numeric>

#include "ferry/bench/results.hpp"
#include "ferry/bench/synthetic.hpp"
#include "ferry/codec/compressor.hpp"
#include "ferry/util/error.hpp"

#include "bench/support.hpp"

using namespace ferry;
using namespace ferry::bench;

namespace {

double zstd1_ratio(const std::string& data) {
    auto c = codec::make_compressor({codec::codec_kind::zstd, 1}, {.threads = 1,
                                                                   .memory_budget = codec::default_memory_budget,
                                                                   .output_limit = std::size_t{1} << 20});
    std::string out;
    std::uint64_t total = 0;
    auto in = std::as_bytes(std::span(data.data(), data.size()));
    while (!in.empty()) {
        in = in.subspan(c->feed(in, out));
        total += out.size();
        out.clear();
    }
    while (!c->finish(out)) {
        total += out.size();
        out.clear();
    }
    total += out.size();
    return static_cast<double>(data.size()) / total;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bench_synthetic)

BOOST_AUTO_TEST_CASE(sizes_parse_in_decimal_and_binary_units) {
    BOOST_TEST(parse_size("123") == 123u);
    BOOST_TEST(parse_size("20M") == 20000000u);
    BOOST_TEST(parse_size("1G") == 1000000000u);
    BOOST_TEST(parse_size("1GB") == 1000000000u);
    BOOST_TEST(parse_size("512k") == 512000u);
    BOOST_TEST(parse_size("1Mi") == 1048576u);
    BOOST_TEST(parse_size("2GiB") == 2147483648u);
    for (auto bad : {"", "M", "1.5G", "-1", "1X", "1Gx", "10Q", "1Xi"}) BOOST_CHECK_THROW(parse_size(bad), failure);
    auto s = parse_synthetic("1G:600");
    BOOST_TEST(s.bytes == 1000000000u);
    BOOST_TEST(s.count == 600u);
    for (auto bad : {"1G", "1G:", ":5", "1G:0", "1G:x", "3:4", "1G:600:1"}) BOOST_CHECK_THROW(parse_synthetic(bad), failure);
}

BOOST_AUTO_TEST_CASE(plan_is_deterministic_and_adds_up) {
    synthetic_spec spec{1000000000, 600, 1};
    auto a = plan_synthetic(spec, "/nix/store");
    auto b = plan_synthetic(spec, "/nix/store");
    BOOST_TEST_REQUIRE(a.size() == 600u);
    std::uint64_t total = 0, largest = 0, smallest = UINT64_MAX;
    for (std::size_t i = 0; i < a.size(); ++i) {
        BOOST_TEST(a[i].path == b[i].path);
        BOOST_TEST(a[i].bytes == b[i].bytes);
        BOOST_TEST(a[i].references == b[i].references);
        BOOST_TEST(a[i].path.rfind("/nix/store/", 0) == 0u);
        BOOST_TEST(a[i].path.size() > 11 + 33u);
        for (auto r : a[i].references) BOOST_TEST(r < i);  // a DAG: earlier paths only
        total += a[i].bytes;
        largest = std::max(largest, a[i].bytes);
        smallest = std::min(smallest, a[i].bytes);
    }
    BOOST_TEST(total == spec.bytes);
    BOOST_TEST(largest > 100000000u);  // hundreds of MB
    BOOST_TEST(smallest < 10000u);     // down to bytes/KB
    std::size_t with_refs = 0;
    for (const auto& p : a) with_refs += !p.references.empty();
    BOOST_TEST(with_refs > 300u);
    // Another seed: other paths.
    auto c = plan_synthetic({spec.bytes, spec.count, 2}, "/nix/store");
    BOOST_TEST(c[0].path != a[0].path);
}

BOOST_AUTO_TEST_CASE(content_kinds_compress_like_real_files) {
    std::string text = synthetic_content(0, 4 << 20, 7);
    std::string binary = synthetic_content(1, 4 << 20, 7);
    std::string random = synthetic_content(2, 4 << 20, 7);
    BOOST_TEST(text == synthetic_content(0, 4 << 20, 7));  // deterministic
    double t = zstd1_ratio(text), b = zstd1_ratio(binary), r = zstd1_ratio(random);
    BOOST_TEST_MESSAGE("zstd:1 ratios: text " << t << ", binary " << b << ", random " << r);
    BOOST_TEST(t > 2.5);
    BOOST_TEST(b > 1.5);
    BOOST_TEST(b < 4.0);
    BOOST_TEST(r < 1.01);
}

BOOST_AUTO_TEST_CASE(summary_json_and_table) {
    bench_result res;
    res.machine = "m";
    res.closure_paths = 3;
    res.closure_bytes = 3000000;
    row r;
    r.codec = "auto";
    r.chosen = "zstd:1";
    r.auto_reason = "link 400.0 MB/s";
    r.direction = "send";
    for (double s : {3.0, 1.0, 2.0}) {
        run_figures f;
        f.seconds = s;
        f.closure_bytes = 3000000;
        f.wire_bytes = 1000000;
        f.cpu_seconds = s / 2;
        f.stages = {{"read", 3000000, s * 0.1}, {"compress", 1000000, s * 0.9}, {"write", 1000000, s * 0.5}};
        r.runs.push_back(f);
    }
    res.rows.push_back(r);
    res.compare = compare_result{"nix-copy-closure", {4.0, 5.0, 6.0}, "zstd:1", 2.0};
    auto s = summarize(r);
    BOOST_TEST(s.median_seconds == 2.0);
    BOOST_TEST(s.min_seconds == 1.0);
    BOOST_TEST(s.max_seconds == 3.0);
    BOOST_TEST(s.closure_mb_s == 1.5);
    BOOST_TEST(s.wire_mb_s == 0.5);
    BOOST_TEST(s.ratio == 3.0);
    BOOST_TEST(s.cpu_percent == 50.0);
    BOOST_TEST(s.bottleneck == "compress");
    BOOST_TEST(median({1, 2, 3, 4}) == 2.5);
    BOOST_TEST(compare_ratio(*res.compare) == 2.5);

    auto doc = to_json(res, "0.1.0");
    bench_test::check_schema(doc, true);
    BOOST_TEST(doc["results"][0]["codec"] == "auto");
    BOOST_TEST(doc["results"][0]["chosen"] == "zstd:1");
    BOOST_TEST(doc["compare"]["ratio"] == 2.5);
    auto table = format_table(res);
    BOOST_TEST(table.find("auto\u2192zstd:1") != std::string::npos);
    BOOST_TEST(table.find("nix-copy-closure") != std::string::npos);
    BOOST_TEST(table.find("compress") != std::string::npos);
    BOOST_TEST(progress_line("x", 50, 100, 1, 2, 10).find("[#####.....]  50%") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
