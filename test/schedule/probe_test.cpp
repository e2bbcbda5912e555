// The probe command, its parser (sample outputs of Linux and macOS, every
// truncation, malformed lines, and the real output of this machine's sh), and
// the concurrent runner with one deadline.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // g++ 12 false positive on coroutine frames

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include "ferry/schedule/probe.hpp"
#include "ferry/util/error.hpp"
#include "schedule/support.hpp"

using namespace ferry::schedule;
using namespace std::chrono_literals;

namespace {

const char* const linux_sample =
    "ferry-probe 1\n"
    "os Linux\n"
    "cores 16\n"
    "uptime  20:01:02 up 12 days,  3:04,  2 users,  load average: 3.52, 2.58, 1.59\n"
    "df /dev/mapper/vg-root 490617784 123456 367000000      26% /\n"
    "tool nix-store\n"
    "tool zstd\n"
    "tool xz\n"
    "end\n";

// macOS 14: `uptime` says "load averages:" without commas; df's file system and
// mount point may contain spaces; getconf works there too.
const char* const macos_sample =
    "ferry-probe 1\n"
    "os Darwin\n"
    "cores 10\n"
    "uptime 20:01  up 3 days, 22:10, 3 users, load averages: 2.17 1.96 1.88\n"
    "df map auto_home 0 0 0 100% /System/Volumes/Data/home\n"
    "end\n";

const char* const macos_sample_real_df =
    "ferry-probe 1\n"
    "os Darwin\n"
    "cores 8\n"
    "uptime 9:12  up 1 day,  1:01, 2 users, load averages: 1.10 1.20 1.30\n"
    "df /dev/disk3s7 971350180 24576000 700000000     4% /nix\n"
    "tool nix-store\n"
    "tool guix\n"
    "end\n";

std::string run_sh(const std::string& command) {
    std::string out;
    FILE* p = ::popen(command.c_str(), "r");
    BOOST_REQUIRE(p);
    char buf[4096];
    std::size_t n;
    while ((n = ::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = ::pclose(p);
    BOOST_REQUIRE(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0);
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(probe_parser)

BOOST_AUTO_TEST_CASE(linux_sample_parses) {
    auto r = parse_probe_output(linux_sample);
    BOOST_TEST(r.os == "Linux");
    BOOST_TEST(r.cores == 16u);
    BOOST_TEST(r.load1 == 3.52);
    BOOST_TEST(r.load5 == 2.58);
    BOOST_TEST(r.load15 == 1.59);
    BOOST_REQUIRE(r.free_bytes);
    BOOST_TEST(*r.free_bytes == 367000000ull * 1024);
    BOOST_TEST(r.has_nix_store);
    BOOST_TEST(r.has_zstd);
    BOOST_TEST(r.has_xz);
    BOOST_TEST(!r.has_guix);
    BOOST_TEST(r.load_per_core() == 3.52 / 16);
}

BOOST_AUTO_TEST_CASE(macos_samples_parse) {
    auto r = parse_probe_output(macos_sample);
    BOOST_TEST(r.os == "Darwin");
    BOOST_TEST(r.cores == 10u);
    BOOST_TEST(r.load1 == 2.17);
    BOOST_TEST(r.load15 == 1.88);
    BOOST_REQUIRE(r.free_bytes);
    BOOST_TEST(*r.free_bytes == 0u);
    BOOST_TEST(!r.has_nix_store);

    auto s = parse_probe_output(macos_sample_real_df);
    BOOST_TEST(s.cores == 8u);
    BOOST_TEST(s.load5 == 1.20);
    BOOST_TEST(*s.free_bytes == 700000000ull * 1024);
    BOOST_TEST(s.has_guix);
}

BOOST_AUTO_TEST_CASE(banner_before_header_crlf_and_unknown_keys_are_tolerated) {
    auto r = parse_probe_output(
        "Welcome to the build farm\r\n"
        "ferry-probe 1\r\nos Linux\r\ncores 2\r\nfuture-key 42\r\n"
        "uptime 10:00:00 up 1 min,  load average: 0,25, 0,10, 0,05\r\n"  // decimal-comma locale
        "df \r\nend\r\n");
    BOOST_TEST(r.cores == 2u);
    BOOST_TEST(r.load1 == 0.25);
    BOOST_TEST(r.load15 == 0.05);
    BOOST_TEST(!r.free_bytes.has_value());  // df printed nothing: unknown
}

BOOST_AUTO_TEST_CASE(every_truncation_is_rejected) {
    std::string full = linux_sample;
    // Any prefix that does not include the final "end" line must fail.
    auto end_line = full.rfind("end\n");
    for (std::size_t len = 0; len < end_line + 3; ++len) {
        BOOST_CHECK_THROW(parse_probe_output(full.substr(0, len)), ferry::failure);
    }
    BOOST_CHECK_NO_THROW(parse_probe_output(full.substr(0, end_line + 3)));  // "end" without newline
    try {
        parse_probe_output(full.substr(0, 40));
        BOOST_FAIL("expected a failure");
    } catch (const ferry::failure& f) {
        BOOST_TEST(f.code() == ferry::errc::truncated);
    }
}

BOOST_AUTO_TEST_CASE(malformed_lines_name_the_line) {
    auto expect_line = [](const std::string& text, const std::string& needle) {
        try {
            parse_probe_output(text);
            BOOST_FAIL("expected a failure for: " << text);
        } catch (const ferry::failure& f) {
            BOOST_TEST(f.code() == ferry::errc::bad_input);
            BOOST_TEST(std::string(f.what()).find(needle) != std::string::npos, f.what());
        }
    };
    expect_line("ferry-probe 1\ncores \nuptime load average: 1, 1, 1\nend\n", "line 2");
    expect_line("ferry-probe 1\ncores 0\nuptime load average: 1, 1, 1\nend\n", "line 2");
    expect_line("ferry-probe 1\ncores 4x\nuptime load average: 1, 1, 1\nend\n", "line 2");
    expect_line("ferry-probe 1\ncores 4\nuptime up 3 days\nend\n", "line 3");
    expect_line("ferry-probe 1\ncores 4\nuptime load average: 1, x, 1\nend\n", "line 3");
    expect_line("ferry-probe 1\ncores 4\nuptime load average: 1, 2\nend\n", "line 3");
    expect_line("ferry-probe 1\ncores 4\nuptime load average: 1, 2, 3\ndf /dev/sda1 lots free\nend\n", "line 4");
    expect_line("ferry-probe 1\ncores 4\nuptime load average: 1, 2, 3\nend\nmore\n", "line 5");
    expect_line("ferry-probe 1\nuptime load average: 1, 2, 3\nend\n", "cores");
    expect_line("ferry-probe 1\ncores 4\nend\n", "uptime");
    expect_line("nothing here\n", "ferry-probe 1");
}

BOOST_AUTO_TEST_CASE(shell_quote_survives_sh) {
    std::string nasty = "/gnu/st'ore $(echo no) \"x\"";
    BOOST_TEST(run_sh("printf '%s' " + shell_quote(nasty)) == nasty);
}

BOOST_AUTO_TEST_CASE(real_output_of_this_machine_parses) {
    // The exact command the ssh layer will send, run by this machine's sh.
    auto out = run_sh(probe_command("/nix/store"));
    BOOST_TEST_MESSAGE("probe output:\n" << out);
    auto r = parse_probe_output(out);
    BOOST_TEST(r.os == "Linux");
    BOOST_TEST(r.cores == static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN)));
    double loads[3];
    BOOST_REQUIRE(::getloadavg(loads, 3) == 3);
    BOOST_TEST(std::abs(r.load15 - loads[2]) < 0.5);  // the 15-minute average barely moves
    BOOST_REQUIRE(r.free_bytes);
    BOOST_TEST(*r.free_bytes > 0u);
    BOOST_TEST(r.has_nix_store == (::access("/usr/bin/nix-store", X_OK) == 0));
    BOOST_TEST(r.has_zstd == (::access("/usr/bin/zstd", X_OK) == 0));

    // The remote login shell parses the outer quoting: bash as well as dash.
    if (::access("/bin/bash", X_OK) == 0) {
        auto via_bash = parse_probe_output(run_sh("/bin/bash -c " + shell_quote(probe_command("/nix/store"))));
        BOOST_TEST(via_bash.cores == r.cores);
        BOOST_TEST(via_bash.has_nix_store == r.has_nix_store);
    }

    // A store directory that does not exist: df falls back to an ancestor.
    auto r2 = parse_probe_output(run_sh(probe_command("/no/such/store")));
    BOOST_TEST(r2.free_bytes.has_value());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(probe_runner)

namespace {
machine named(std::string name, double speed = 1.0) {
    machine m;
    m.name = std::move(name);
    m.speed = speed;
    return m;
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_dead_machine_costs_one_deadline_not_one_per_candidate) {
    schedule_test::fake_remote remote;
    remote.scripts["up"] = {20ms, false, {}, schedule_test::probe_output(4, 1.0, 1 << 30)};
    remote.scripts["dead1"] = {0ms, true, {}, ""};
    remote.scripts["dead2"] = {0ms, true, {}, ""};
    remote.scripts["dead3"] = {0ms, true, {}, ""};
    remote.scripts["refused"] = {5ms, false, ferry::errc::connect_failed, ""};
    probe_options opt;
    opt.deadline = 400ms;
    asio::io_context io;
    auto start = std::chrono::steady_clock::now();
    auto outs = schedule_test::run(
        io, probe_machines({named("up"), named("dead1"), named("dead2"), named("dead3"), named("refused")},
                           remote.fn(), opt));
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(took >= 390ms);
    BOOST_TEST(took < 600ms, "took " << took / 1ms << " ms");
    BOOST_REQUIRE(outs.size() == 5u);
    BOOST_TEST((outs[0].state == probe_state::ok));
    BOOST_TEST(outs[0].result->cores == 4u);
    for (int i : {1, 2, 3}) {
        BOOST_TEST((outs[i].state == probe_state::failed));
        BOOST_TEST(outs[i].error == ferry::errc::timed_out);
        BOOST_TEST(outs[i].message.find("dead") != std::string::npos);
    }
    BOOST_TEST((outs[4].state == probe_state::failed));
    BOOST_TEST(outs[4].error == ferry::errc::connect_failed);
    // io.run() returned: the hung probes were really cancelled, not left running.
}

BOOST_AUTO_TEST_CASE(all_answering_returns_without_waiting_for_the_deadline) {
    schedule_test::fake_remote remote;
    remote.scripts["a"] = {30ms, false, {}, schedule_test::probe_output(2, 0.5, 1 << 30)};
    remote.scripts["b"] = {60ms, false, {}, "ferry-probe 1\ncores 2\n"};  // truncated
    probe_options opt;
    opt.deadline = 5s;
    asio::io_context io;
    auto start = std::chrono::steady_clock::now();
    auto outs = schedule_test::run(io, probe_machines({named("a"), named("b")}, remote.fn(), opt));
    BOOST_TEST((std::chrono::steady_clock::now() - start) < 1s);
    BOOST_TEST((outs[0].state == probe_state::ok));
    BOOST_TEST((outs[1].state == probe_state::failed));
    BOOST_TEST(outs[1].error == ferry::errc::truncated);
}

BOOST_AUTO_TEST_CASE(stops_early_when_told_enough) {
    schedule_test::fake_remote remote;
    remote.scripts["fast"] = {20ms, false, {}, schedule_test::probe_output(2, 0.0, 1 << 30)};
    remote.scripts["slow"] = {3s, false, {}, schedule_test::probe_output(2, 0.0, 1 << 30)};
    probe_options opt;
    opt.deadline = 5s;
    asio::io_context io;
    auto start = std::chrono::steady_clock::now();
    auto outs = schedule_test::run(io, probe_machines({named("fast"), named("slow")}, remote.fn(), opt,
                                                      [](const std::vector<probe_outcome>& o) {
                                                          return o[0].state == probe_state::ok;
                                                      }));
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(took < 500ms, "took " << took / 1ms << " ms");
    BOOST_TEST((outs[0].state == probe_state::ok));
    BOOST_TEST((outs[1].state == probe_state::cancelled));
}

BOOST_AUTO_TEST_CASE(no_machines_no_probe) {
    schedule_test::fake_remote remote;
    asio::io_context io;
    auto outs = schedule_test::run(io, probe_machines({}, remote.fn(), {}));
    BOOST_TEST(outs.empty());
}

BOOST_AUTO_TEST_SUITE_END()
