// build/ferry as guix-daemon's hook, driven exactly as build.cc drives it
// (daemon_play.hpp): replies, the stdout+stderr pipe, exit codes.
#include <boost/test/unit_test.hpp>

#include <fstream>

#include "ferry/schedule/machine.hpp"
#include "ferry/schedule/slot.hpp"
#include "guix/daemon_play.hpp"

using namespace guix_test;

namespace {

const std::string drv = "/gnu/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.drv";

void write_file(const std::filesystem::path& p, const std::string& text) {
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
}

// The form Guix System writes (gnu/services/base.scm), with one machine.
std::string system_machines(const std::string& systems, int parallel, const std::string& features = "'()") {
    return "((@ (srfi srfi-1) append-map)\n"
           " (lambda (entry)\n"
           "   (if (build-machine? entry)\n"
           "       (list entry)\n"
           "       entry))\n"
           " (list (build-machine\n"
           "        (name \"127.0.0.1\")\n"
           "        (port 1)\n"
           "        (systems (list " + systems + "))\n"
           "        (user \"root\")\n"
           "        (host-key \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLaZ0k1ZcVJ1vNqdl3sZyXl0dUKGn1P3b0ON8c0M4lW\")\n"
           "        (parallel-builds " + std::to_string(parallel) + ")\n"
           "        (features " + features + "))))\n";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(guix_front_end)

BOOST_AUTO_TEST_CASE(declines_when_no_machine_matches_system_or_features) {
    temp_dir t;
    write_file(t.path / "etc/machines.scm", system_machines("\"aarch64-linux\" \"x86_64-linux\"", 1, "(list \"kvm\")"));
    daemon_side d(ferry_binary(), {"offload", "x86_64-linux", "0", "1", "0"}, guix_env(t.path));
    // no machine for i686-linux
    d.write_line("0 i686-linux " + drv + " ");
    BOOST_TEST(d.read_reply().value_or("<eof>") == "decline");
    // the same hook gets the next request: a feature the machine lacks
    d.write_line("1 x86_64-linux " + drv + " kvm,big");
    BOOST_TEST(d.read_reply().value_or("<eof>") == "decline");
    d.close_in();
    BOOST_TEST(d.wait() == 0);
    // Nothing was contacted: no slot directory was made for a declined request.
    BOOST_TEST(!std::filesystem::exists(t.path / "var/offload"));
}

BOOST_AUTO_TEST_CASE(declines_without_machines_file) {
    temp_dir t;
    daemon_side d(ferry_binary(), {"offload", "x86_64-linux", "3600", "false", "0"}, guix_env(t.path));
    d.write_line("0 x86_64-linux " + drv + " ");
    BOOST_TEST(d.read_reply().value_or("<eof>") == "decline");
    d.close_in();
    BOOST_TEST(d.wait() == 0);
}

BOOST_AUTO_TEST_CASE(postpones_when_every_slot_is_taken) {
    temp_dir t;
    write_file(t.path / "etc/machines.scm", system_machines("\"x86_64-linux\"", 2));
    // Another offload (ferry or guix offload) holds both slots of the machine.
    ferry::schedule::machine m;
    m.name = "127.0.0.1";
    m.port = 1;
    m.max_jobs = 2;
    auto s0 = ferry::schedule::try_acquire_slot(t.path / "var", m);
    auto s1 = ferry::schedule::try_acquire_slot(t.path / "var", m);
    BOOST_REQUIRE(s0 && s1);
    BOOST_TEST(std::filesystem::exists(t.path / "var/offload/127.0.0.1:1/1"));  // Guix's layout

    daemon_side d(ferry_binary(), {"offload", "x86_64-linux", "0", "1", "0"}, guix_env(t.path));
    d.write_line("1 x86_64-linux " + drv + " ");
    BOOST_TEST(d.read_reply().value_or("<eof>") == "postpone");
    d.write_line("0 x86_64-linux " + drv + " ");  // the daemon asks again ~5 s later
    BOOST_TEST(d.read_reply().value_or("<eof>") == "postpone");
    d.close_in();
    BOOST_TEST(d.wait() == 0);
}

BOOST_AUTO_TEST_CASE(unreachable_machine_is_postponed_not_declined) {
    temp_dir t;
    // Port 1 on 127.0.0.1: connection refused. offload.scm postpones then.
    write_file(t.path / "etc/machines.scm", system_machines("\"x86_64-linux\"", 1));
    daemon_side d(ferry_binary(), {"offload", "x86_64-linux", "0", "0", "0"}, guix_env(t.path));
    d.write_line("0 x86_64-linux " + drv + " ");
    BOOST_TEST(d.read_reply().value_or("<eof>") == "postpone");
    d.close_in();
    BOOST_TEST(d.wait() == 0);
    BOOST_TEST(d.client.find("127.0.0.1") != std::string::npos, d.client);  // says why, to the client
}

BOOST_AUTO_TEST_CASE(malformed_request_line_is_named_and_exits_1) {
    temp_dir t;
    daemon_side d(ferry_binary(), {"offload", "x86_64-linux", "0", "1", "0"}, guix_env(t.path));
    d.write_line("0 x86_64-linux " + drv + " ");
    BOOST_TEST(d.read_reply().value_or("<eof>") == "decline");
    d.write_line("2 x86_64-linux /gnu/store/bogus ");
    BOOST_TEST(!d.read_reply().has_value());  // no reply: the hook failed
    BOOST_TEST(d.wait() == 1);
    BOOST_TEST(d.client.find("line 2") != std::string::npos, d.client);
    BOOST_TEST(d.client.find("2 x86_64-linux /gnu/store/bogus") != std::string::npos, d.client);
}

BOOST_AUTO_TEST_CASE(malformed_machines_file_fails_naming_the_position) {
    temp_dir t;
    write_file(t.path / "etc/machines.scm", "(define x 1)\n(list x)\n");
    daemon_side d(ferry_binary(), {"offload", "x86_64-linux", "0", "1", "0"}, guix_env(t.path));
    d.write_line("0 x86_64-linux " + drv + " ");
    BOOST_TEST(!d.read_reply().has_value());
    BOOST_TEST(d.wait() == 1);  // offload.scm: leave -> 1
    BOOST_TEST(d.client.find("machines.scm:1:1") != std::string::npos, d.client);
}

BOOST_AUTO_TEST_CASE(bad_operands_exit_1) {
    temp_dir t;
    daemon_side d(ferry_binary(), {"offload", "x86_64-linux", "soon", "1", "0"}, guix_env(t.path));
    d.close_in();
    BOOST_TEST(d.wait() == 1);
    BOOST_TEST(d.drain().find("MAX-SILENT-TIME") != std::string::npos, d.client);
}

BOOST_AUTO_TEST_CASE(pre_2019_form_without_the_word_offload) {
    temp_dir t;
    write_file(t.path / "etc/machines.scm", system_machines("\"aarch64-linux\"", 1));
    // Before 2019 the daemon ran $NIX_BUILD_HOOK SYSTEM MAX-SILENT-TIME PRINT-BUILD-TRACE BUILD-TIMEOUT.
    daemon_side d(ferry_binary(), {"x86_64-linux", "0", "1", "0"}, guix_env(t.path));
    d.write_line("0 x86_64-linux " + drv + " ");
    BOOST_TEST(d.read_reply().value_or("<eof>") == "decline");
    d.close_in();
    BOOST_TEST(d.wait() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
