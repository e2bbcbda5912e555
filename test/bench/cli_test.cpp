// g++ 12 -O2 false positive on std::string initializer lists (like the project-wide ones in CMakeLists.txt).
#pragma GCC diagnostic ignored "-Wstringop-overread"

#include <boost/test/unit_test.hpp>

#include "bench/support.hpp"
#include "ferry/cli/bench_command.hpp"

using namespace ferry;
using cli::parse_bench_args;

namespace {

// The usage error's message, or "" when the arguments parsed.
std::string error_of(const std::vector<std::string>& args) {
    auto r = parse_bench_args(args);
    if (auto* e = std::get_if<cli::usage_error>(&r)) return e->message.empty() ? "(empty message)" : e->message;
    return "";
}

bench::bench_options parsed(const std::vector<std::string>& args) {
    auto r = parse_bench_args(args);
    if (auto* e = std::get_if<cli::usage_error>(&r)) BOOST_FAIL("unexpected usage error: " << e->message);
    BOOST_TEST_REQUIRE(std::holds_alternative<bench::bench_options>(r));
    return std::get<bench::bench_options>(r);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bench_cli)

BOOST_AUTO_TEST_CASE(defaults_of_the_contract) {
    auto o = parsed({"--local-host", "--synthetic", "20M:30"});
    BOOST_TEST(o.local_host);
    BOOST_TEST(o.machine.empty());
    BOOST_TEST_REQUIRE(o.synthetic.has_value());
    BOOST_TEST(o.synthetic->bytes == 20000000u);
    BOOST_TEST(o.synthetic->count == 30u);
    BOOST_TEST(o.codecs.size() == 1u);
    BOOST_TEST(o.codecs[0].is_auto());  // default auto
    BOOST_TEST((o.direction == bench::direction::send));
    BOOST_TEST(o.runs == 3);  // default 3
    BOOST_TEST(!o.fresh);
    BOOST_TEST(o.json_file.empty());
    BOOST_TEST(!o.compare_nix_copy_closure);
}

BOOST_AUTO_TEST_CASE(every_option) {
    auto o = parsed({"--machine", "ssh://root@h:2222 x86_64-linux /k 1 1 - - -", "--closure", "/nix/store/a-x",
                     "/nix/store/b-y", "--codec", "none,zstd,zstd:1,xz,xz:0,auto", "--direction", "send", "--runs",
                     "5", "--json", "out.json", "--compare", "nix-copy-closure", "--machines", "/etc/m"});
    BOOST_TEST(o.machine == "ssh://root@h:2222 x86_64-linux /k 1 1 - - -");
    BOOST_TEST(o.closure == (std::vector<std::string>{"/nix/store/a-x", "/nix/store/b-y"}));
    BOOST_TEST(!o.synthetic.has_value());
    BOOST_TEST_REQUIRE(o.codecs.size() == 6u);
    BOOST_TEST(codec::to_string(o.codecs[1]) == "zstd:3");
    BOOST_TEST(codec::to_string(o.codecs[3]) == "xz:6");
    BOOST_TEST(o.codecs[5].is_auto());
    BOOST_TEST(o.runs == 5);
    BOOST_TEST(o.json_file == "out.json");
    BOOST_TEST(o.compare_nix_copy_closure);
    BOOST_TEST(o.machines_file == "/etc/m");

    o = parsed({"--local-host", "--synthetic", "1G:600", "--direction", "both", "--fresh"});
    BOOST_TEST((o.direction == bench::direction::both));
    BOOST_TEST(o.fresh);
    BOOST_TEST(o.synthetic->bytes == 1000000000u);
    // --closure takes paths until the next option.
    o = parsed({"--closure", "/nix/store/a-x", "/nix/store/b-y", "--local-host"});
    BOOST_TEST(o.closure.size() == 2u);
    BOOST_TEST(o.local_host);
}

BOOST_AUTO_TEST_CASE(bad_usage_is_refused_with_a_message) {
    BOOST_TEST(error_of({}).find("--machine") != std::string::npos);
    BOOST_TEST(error_of({"--local-host"}).find("--synthetic") != std::string::npos);
    BOOST_TEST(error_of({"--synthetic", "1M:2"}).find("--local-host") != std::string::npos);
    BOOST_TEST(!error_of({"--local-host", "--machine", "h", "--synthetic", "1M:2"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--closure", "/nix/store/a-x", "--synthetic", "1M:2"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--closure"}).empty());
    BOOST_TEST(error_of({"--local-host", "--synthetic", "1M"}).find("SIZE:COUNT") != std::string::npos);
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1X:2"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "5:10"}).empty());  // SIZE < COUNT
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:0"}).empty());
    BOOST_TEST(error_of({"--local-host", "--synthetic", "1M:2", "--codec", "zstd:20"}).find("--codec") !=
               std::string::npos);
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:2", "--codec", "gzip"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:2", "--codec", "none,,zstd"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:2", "--direction", "up"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:2", "--runs", "0"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:2", "--runs", "x"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:2", "--compare", "rsync"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:2", "--frobnicate"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:2", "extra"}).empty());
    BOOST_TEST(!error_of({"--local-host", "--synthetic", "1M:2", "--runs", "2", "--runs", "3"}).empty());
}

BOOST_AUTO_TEST_CASE(fresh_is_refused_unless_local_host) {
    auto message = error_of({"--machine", "host1", "--synthetic", "1M:2", "--fresh"});
    BOOST_TEST(message.find("--fresh") != std::string::npos);
    BOOST_TEST(message.find("--local-host") != std::string::npos);
    BOOST_TEST(error_of({"--local-host", "--synthetic", "1M:2", "--fresh"}).empty());
}

BOOST_AUTO_TEST_CASE(the_program_exits_2_on_bad_usage) {
    auto r = bench_test::run(bench_test::ferry_binary() + " bench --machine host1 --synthetic 1M:2 --fresh");
    BOOST_TEST(r.status == 2);
    BOOST_TEST(r.output.find("--fresh") != std::string::npos);
    BOOST_TEST(r.output.find("usage: ferry bench") != std::string::npos);
    r = bench_test::run(bench_test::ferry_binary() + " bench --local-host");
    BOOST_TEST(r.status == 2);
    r = bench_test::run(bench_test::ferry_binary() + " bench --local-host --synthetic 1M:2 --codec bogus");
    BOOST_TEST(r.status == 2);
    BOOST_TEST(r.output.find("bogus") != std::string::npos);
    // An unknown machine name is the caller's mistake too.
    r = bench_test::run(bench_test::ferry_binary() +
                        " bench --machine nosuch --machines /dev/null --synthetic 1M:2 --runs 1");
    BOOST_TEST(r.status == 2);
    BOOST_TEST(r.output.find("nosuch") != std::string::npos);
    r = bench_test::run(bench_test::ferry_binary() + " bench --help");
    BOOST_TEST(r.status == 0);
    BOOST_TEST(r.output.find("--synthetic") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
