// Real runs of `ferry bench` against a local test host (sshd + its own Nix store),
// with the local side in a fresh private store: nothing touches the machine's /nix.
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

#include "bench/support.hpp"
#include "ferry/hosts/test_host.hpp"

namespace fs = std::filesystem;
using bench_test::run;

namespace {

nlohmann::json read_json(const fs::path& file) {
    std::ifstream in(file);
    BOOST_TEST_REQUIRE(in.good());
    return nlohmann::json::parse(in);
}

struct scratch {
    fs::path dir = ferry::hosts::temporary_directory("ferry-bench-test");
    ~scratch() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

// The row of codec `auto` in a bench run inside a private network namespace whose
// loopback is optionally shaped (test-hosts.md: tc tbf on lo, MTU 1500).
nlohmann::json auto_row_in_namespace(const std::string& shaping, const std::string& synthetic, const fs::path& json) {
    std::string script = "ip link set lo mtu 1500 && ip link set lo up && " + shaping + bench_test::ferry_binary() +
                         " bench --local-host --synthetic " + synthetic + " --codec auto --runs 1 --json " +
                         json.string();
    auto r = run("unshare -n sh -c '" + script + "'");
    BOOST_TEST_INFO("output: " << r.output);
    BOOST_TEST_REQUIRE(r.status == 0);
    auto doc = read_json(json);
    bench_test::check_schema(doc, false);
    BOOST_TEST_REQUIRE(doc["results"].size() == 1u);
    BOOST_TEST(doc["results"][0]["codec"] == "auto");
    BOOST_TEST_MESSAGE("auto: " << doc["results"][0].value("auto_reason", std::string("?")));
    return doc["results"][0];
}

// Orders auto's choices by how hard they compress: none < zstd:N (by level) < xz:N.
int codec_strength(const std::string& codec) {
    if (codec == "none") return 0;
    auto colon = codec.find(':');
    int level = colon == std::string::npos ? 0 : std::stoi(codec.substr(colon + 1));
    if (codec.rfind("zstd", 0) == 0) return 1 + level;
    if (codec.rfind("xz", 0) == 0) return 100 + level;
    BOOST_FAIL("auto chose an unknown codec: " << codec);
    return -1;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bench_local_host)

BOOST_AUTO_TEST_CASE(small_run_emits_the_contract_json) {
    scratch s;
    auto json = s.dir / "bench.json";
    auto r = run(bench_test::ferry_binary() +
                 " bench --local-host --synthetic 20M:30 --codec none,zstd:1 --runs 1 --json " + json.string());
    BOOST_TEST_INFO("output: " << r.output);
    BOOST_TEST_REQUIRE(r.status == 0);
    // The table: one row per codec and direction.
    BOOST_TEST(r.output.find("none") != std::string::npos);
    BOOST_TEST(r.output.find("zstd:1") != std::string::npos);
    BOOST_TEST(r.output.find("[#") == std::string::npos);  // no progress bar: stdout is not a terminal

    auto doc = read_json(json);
    bench_test::check_schema(doc, false);
    BOOST_TEST(doc["closure"]["paths"] == 30);
    BOOST_TEST(doc["closure"]["bytes"].get<std::uint64_t>() > 20000000u);  // NAR bytes: content + framing
    BOOST_TEST_REQUIRE(doc["results"].size() == 2u);
    const auto& none = doc["results"][0];
    const auto& zstd = doc["results"][1];
    BOOST_TEST(none["codec"] == "none");
    BOOST_TEST(zstd["codec"] == "zstd:1");
    for (const auto* row : {&none, &zstd}) {
        BOOST_TEST((*row)["direction"] == "send");
        BOOST_TEST((*row)["runs"].size() == 1u);
        BOOST_TEST((*row)["median_seconds"].get<double>() > 0);
        BOOST_TEST((*row)["closure_mb_s"].get<double>() > 0);
    }
    // Uncompressed: the wire carries the NARs plus the serve framing; zstd:1 shrinks it.
    BOOST_TEST(none["ratio"].get<double>() <= 1.0);
    BOOST_TEST(none["ratio"].get<double>() > 0.95);
    BOOST_TEST(zstd["ratio"].get<double>() > 1.5);
    BOOST_TEST(zstd["runs"][0]["wire_bytes"].get<std::uint64_t>() < none["runs"][0]["wire_bytes"].get<std::uint64_t>());
}

BOOST_AUTO_TEST_CASE(both_directions_fresh_with_nix_copy_closure) {
    scratch s;
    auto json = s.dir / "both.json";
    auto r = run(bench_test::ferry_binary() +
                 " bench --local-host --synthetic 5M:10 --codec zstd:1 --direction both --runs 1 --fresh"
                 " --compare nix-copy-closure --json " +
                 json.string());
    BOOST_TEST_INFO("output: " << r.output);
    BOOST_TEST_REQUIRE(r.status == 0);
    BOOST_TEST(r.output.find("nix-copy-closure") != std::string::npos);
    auto doc = read_json(json);
    bench_test::check_schema(doc, true);
    BOOST_TEST_REQUIRE(doc["results"].size() == 2u);
    BOOST_TEST(doc["results"][0]["direction"] == "send");
    BOOST_TEST(doc["results"][1]["direction"] == "receive");
    for (const auto& row : doc["results"]) {
        BOOST_TEST(row["ratio"].get<double>() > 1.5);
        // Both moved the whole closure.
        BOOST_TEST(row["closure_mb_s"].get<double>() * row["median_seconds"].get<double>() * 1e6 >
                   0.9 * doc["closure"]["bytes"].get<double>());
    }
    BOOST_TEST(doc["results"][1]["stages"].contains("decompress"));
    BOOST_TEST(doc["compare"]["median_seconds"].get<double>() > 0);
    BOOST_TEST(doc["compare"]["ratio"].get<double>() > 0);
}

BOOST_AUTO_TEST_CASE(auto_picks_differently_on_a_10_mbit_link) {
    scratch s;
    auto loopback_row = auto_row_in_namespace("", "4M:8", s.dir / "loopback.json");
    // 8 MB: a few seconds on the wire, longer than the ssh window and socket buffers
    // hide, so the link is busy for several of the 500 ms intervals.
    auto shaped_row = auto_row_in_namespace("tc qdisc add dev lo root tbf rate 10mbit burst 32k latency 200ms && ",
                                            "8M:8", s.dir / "shaped.json");
    auto loopback = loopback_row["chosen"].get<std::string>(), shaped = shaped_row["chosen"].get<std::string>();
    BOOST_TEST_MESSAGE("auto on loopback: " << loopback << ", on 10 Mbit/s: " << shaped
                                            << "; level changes: " << shaped_row.value("level_changes", nlohmann::json()).dump());
    // Relative, not absolute: what loopback measures depends on the machine and its
    // load (a busy CI box measured 56 MB/s and fairly chose zstd:3), but a link ~50x
    // slower must always get a stronger codec than loopback did.
    BOOST_TEST(codec_strength(shaped) > codec_strength(loopback));
    BOOST_TEST(shaped != "none");
    // auto -> zstd adjusts while streaming: the link is the bottleneck, the CPU idles,
    // so the level goes up (the loopback row, none or zstd:1 CPU-bound, never rises).
    if (shaped.rfind("zstd:", 0) == 0) {
        BOOST_TEST_REQUIRE(shaped_row.contains("level_changes"));
        BOOST_TEST(shaped_row["level_changes"][0]["to"].get<int>() > shaped_row["level_changes"][0]["from"].get<int>());
    }
}

BOOST_AUTO_TEST_SUITE_END()
