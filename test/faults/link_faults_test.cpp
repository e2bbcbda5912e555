// The fault matrix, rows made with real actions on the link and the host
// (issue 10, rows 1-4 and 11): real nix-build -> ferry-build-hook -> a real sshd
// test host, and in the middle of a step the host's sshd is killed or stopped, or
// the hook itself is SIGKILLed the way the daemon gives up on it. Every case then
// checks the exit code the daemon saw, ferry's message (host and step), and the
// invariants of fixture.hpp, after the next run where the fault leaves roots on
// the host that only a later run can sweep.
//
// "Mid-transfer" is observed, not timed: the upload by the input's name appearing
// in the host's store directory (Nix restores an added NAR in place), the
// retrieval by ferry's import temporary appearing in the local store.
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>

#include "faults/fixture.hpp"
#include "ferry/hosts/test_host.hpp"
#include "support/nix_build.hpp"

namespace fs = std::filesystem;
using namespace ferry;
using namespace ferry::test_support;
using faults::fault_fixture;

namespace {

using clock_type = std::chrono::steady_clock;

// Polls `ready` every 5 ms for up to `limit`; true once it held.
template <class F>
bool poll_for(F ready, std::chrono::milliseconds limit) {
    auto end = clock_type::now() + limit;
    while (!ready()) {
        if (clock_type::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

std::string read_small_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string comm_of(pid_t pid) {
    auto s = read_small_file(fmt::format("/proc/{}/comm", pid));
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

// The host's sshd processes only: the listener and each connection's sshd (not
// what those run: nix-store --serve and the builder live on).
std::vector<pid_t> sshd_processes(const hosts::test_host& host) {
    std::vector<pid_t> v{host.sshd_pid()};
    for (pid_t p : host.session_pids())
        if (comm_of(p) == "sshd") v.push_back(p);
    return v;
}

void signal_all(const std::vector<pid_t>& pids, int sig) {
    for (pid_t p : pids) ::kill(p, sig);
}

// The running ferry-build-hook processes of this build directory.
std::vector<pid_t> hook_processes() {
    std::vector<pid_t> v;
    std::error_code ec;
    const auto ferry_exe = fs::canonical(fs::path(FERRY_BINARY_DIR) / "ferry", ec);
    for (auto& e : fs::directory_iterator("/proc", ec)) {
        auto name = e.path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
        std::error_code ec2;
        if (fs::read_symlink(e.path() / "exe", ec2) != ferry_exe) continue;
        auto cmdline = read_small_file(e.path() / "cmdline");
        if (cmdline.find("ferry-build-hook") != std::string::npos) v.push_back(std::stoi(name));
    }
    return v;
}

bool exists_in(const fs::path& dir, const std::string& name_part) {
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir, ec))
        if (e.path().filename().string().find(name_part) != std::string::npos) return true;
    return false;
}

// Whether a process of the host has /nix/store/NAME open: the upload of that path
// is under way (Nix restores an added NAR in place). A leftover of an earlier,
// interrupted upload under the same name does not count.
bool host_writing(const hosts::test_host& host, const std::string& name) {
    const std::string target = "/nix/store/" + name;
    for (pid_t p : host.session_pids()) {
        std::error_code ec;
        for (auto& fd : fs::directory_iterator(fmt::format("/proc/{}/fd", p), ec)) {
            std::error_code ec2;
            auto link = fs::read_symlink(fd.path(), ec2).string();
            if (link == target || link.starts_with(target + "/")) return true;
        }
    }
    return false;
}

// The output path of the derivation nix-build named in its output.
std::string output_of(fault_fixture& f, const build_run& r) {
    for (auto& l : lines_of(r.err)) {
        auto at = l.find("/nix/store/");
        if (at == std::string::npos || !l.ends_with(".drv")) continue;
        std::string out;
        f.env.local.run("/usr/bin/nix-store --query --outputs " + l.substr(at), &out, nullptr);
        auto v = lines_of(out);
        if (v.size() == 1) return v[0];
    }
    return {};
}

// A store path holding `megabytes` MB of zeros, added to the local store once
// (ferry's codec is `none` on loopback, so zeros cost the link what any bytes do).
std::string big_local_input(fault_fixture& f, unsigned megabytes) {
    static std::map<unsigned, std::string> made;
    if (auto it = made.find(megabytes); it != made.end()) return it->second;
    auto file = f.env.local.directory() / fmt::format("zeros-{}M", megabytes);
    std::string out, err;
    auto cmd = fmt::format("/usr/bin/head -c {}M /dev/zero > {} && /usr/bin/nix-store --add {}", megabytes,
                           file.string(), file.string());
    BOOST_TEST_REQUIRE(f.env.local.run(cmd, &out, &err) == 0, err);
    fs::remove(file);
    auto paths = lines_of(out);
    BOOST_TEST_REQUIRE(paths.size() == 1u, out);
    return made[megabytes] = paths[0];
}

// A derivation that takes `input` (a store path) as an input source.
fs::path uses_input_expr(fault_fixture& f, const std::string& tag, const std::string& input) {
    auto n = nonce();
    return f.write_expr(tag + "-" + n, fmt::format(R"(
derivation {{ name = "ferry-{0}-{1}"; system = "x86_64-linux"; builder = "/bin/sh";
  big = builtins.storePath "{2}"; args = [ "-c" "echo $big > $out" ]; }}
)",
                                                   tag, n, input));
}

// A derivation whose output is `megabytes` MB (made on the host, fast).
fs::path big_output_expr(fault_fixture& f, const std::string& tag, unsigned megabytes) {
    auto n = nonce();
    return f.write_expr(tag + "-" + n, fmt::format(R"(
derivation {{ name = "ferry-{0}-{1}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/usr/bin/head -c {2}M /dev/zero > $out" ]; }}
)",
                                                   tag, n, megabytes));
}

fs::path small_expr(fault_fixture& f, const std::string& tag) {
    auto n = nonce();
    return f.write_expr(tag + "-" + n, fmt::format(R"(
derivation {{ name = "ferry-{0}-{1}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo {1} > $out" ]; }}
)",
                                                   tag, n));
}

// What the daemon saw: a transient failure (the hook's exit 1, not 100 or 101),
// and ferry's own line naming the machine and the step.
void check_transient(const build_run& r, std::uint16_t port, const std::string& step) {
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST(r.status != 0);
    bool exit1 = r.err.find("exit code 1\n") != std::string::npos || r.err.find("exit code 1;") != std::string::npos;
    BOOST_TEST(exit1, "the daemon did not see exit code 1: " << r.err);
    BOOST_TEST(r.err.find("exit code 100") == std::string::npos);
    BOOST_TEST(r.err.find("exit code 101") == std::string::npos);
    const std::string host = fmt::format("ssh://root@127.0.0.1:{}", port);
    bool named = false;
    for (auto& l : lines_of(r.err))
        if (l.find("failed") != std::string::npos && l.find(host) != std::string::npos &&
            l.find(step) != std::string::npos)
            named = true;
    BOOST_TEST(named, "no message naming " << host << " and the step '" << step << "': " << r.err);
}

// The run after a fault: a small build succeeds (and sweeps what the fault left).
void next_run_succeeds(fault_fixture& f, const std::string& tag) {
    auto r = f.nix_build(small_expr(f, tag));
    BOOST_TEST(r.status == 0, "the next run failed: " << r.err);
    BOOST_TEST(r.paths().size() == 1u);
}

// ferry.conf for these cases: short link deadlines, no probe cache (the host's
// port changes when it restarts).
void write_link_conf(fault_fixture& f) {
    f.env.write_conf("codec = none\nprobe-cache-seconds = 0\nconnect-timeout = 2s\nkeepalive-interval = 1s\n");
}

// A nix-build running in the background, started by build_until.
struct build_in_flight {
    std::uint16_t port = 0;  // the host's port when it started (it changes on restart)
    std::future<build_run> run;
};

// Starts nix-build of `expr` and returns once `under_way()` holds: the moment for
// the fault. Fails the case when that moment does not come within 30 s.
template <class F>
build_in_flight build_until(fault_fixture& f, const fs::path& expr, F under_way, const std::string& what) {
    build_in_flight b;
    b.port = f.host.port();
    b.run = std::async(std::launch::async, [&f, expr] { return f.nix_build(expr); });
    if (!poll_for(under_way, std::chrono::seconds(30))) {
        b.run.wait();
        BOOST_TEST_REQUIRE(false, what << " never started");
    }
    return b;
}

// The input upload of a derivation taking a big input, under way.
struct upload_under_way {
    std::string input;
    build_in_flight build;
};
upload_under_way start_upload(fault_fixture& f, const std::string& tag) {
    upload_under_way u;
    u.input = big_local_input(f, 192);
    const auto name = fs::path(u.input).filename().string();
    u.build = build_until(f, uses_input_expr(f, tag, u.input), [&] { return host_writing(f.host, name); }, "the upload");
    return u;
}

// The retrieval of a big output, under way (ferry's import temporary is there).
build_in_flight start_retrieval(fault_fixture& f, const fs::path& expr) {
    const auto store_dir = f.env.local.store_root() / "store";
    return build_until(f, expr, [store_dir] { return exists_in(store_dir, "-ferry-import"); },
                       "the retrieval");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(link_faults)

// Row 1: the host's sshd and every session killed while the inputs go out.
BOOST_AUTO_TEST_CASE(sshd_killed_during_upload_exits_1) {
    auto& f = fault_fixture::get();
    write_link_conf(f);
    auto u = start_upload(f, "upload");
    BOOST_TEST(!valid_on_host(f.host, u.input), "the upload was over before the fault");
    f.host.stop();  // sshd, its sessions and everything they run: SIGKILL
    auto r = u.build.run.get();
    check_transient(r, u.build.port, "sending inputs: ");
    f.restart_host();
    BOOST_TEST(!valid_on_host(f.host, u.input), "a half-sent input is registered on the host");
    next_run_succeeds(f, "after-upload");
    faults::check_invariants(f, "row 1");
}

// Row 2: sshd (listener and the connection's sshd) killed during the remote build:
// transient, and the builder does not outlive the connection.
BOOST_AUTO_TEST_CASE(sshd_killed_during_build_exits_1_and_builder_goes) {
    auto& f = fault_fixture::get();
    write_link_conf(f);
    auto n = nonce();
    auto pid_file = fs::path("/tmp") / ("ferry-faults-build-" + n + ".pid");
    auto expr = f.write_expr("build-" + n, fmt::format(R"(
derivation {{ name = "ferry-build-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo $$ > {1}.tmp; /bin/mv {1}.tmp {1}; exec /bin/sleep 30" ]; }}
)",
                                                       n, pid_file.string()));
    auto b = build_until(f, expr, [&] { return fs::exists(pid_file); }, "the remote build");
    const pid_t builder = std::stoi(read_small_file(pid_file));
    signal_all(sshd_processes(f.host), SIGKILL);
    auto t0 = clock_type::now();
    auto r = b.run.get();
    BOOST_TEST(std::chrono::duration<double>(clock_type::now() - t0).count() < 20.0);
    check_transient(r, b.port, "building: ");
    BOOST_TEST(process_gone(builder), "the remote builder " << builder << " outlived its connection");
    f.restart_host();
    next_run_succeeds(f, "after-build");
    faults::check_invariants(f, "row 2");
    fs::remove(pid_file);
}

// Row 3: sshd and sessions killed while a large output comes back: transient, and
// nothing of it is registered or left in the local store.
BOOST_AUTO_TEST_CASE(sshd_killed_during_retrieval_exits_1_nothing_registered) {
    auto& f = fault_fixture::get();
    write_link_conf(f);
    const auto local_store_dir = f.env.local.store_root() / "store";
    auto b = start_retrieval(f, big_output_expr(f, "retrieve", 192));
    f.host.stop();
    auto r = b.run.get();
    check_transient(r, b.port, "receiving outputs: ");
    auto output = output_of(f, r);
    BOOST_TEST_REQUIRE(!output.empty(), "no output path for the derivation");
    BOOST_TEST(!fs::exists(f.env.local.store_root() / "store" / fs::path(output).filename()),
               "a part of the output is in the local store: " << output);
    BOOST_TEST(f.env.local.run("/usr/bin/nix-store --check-validity " + output + " 2>/dev/null") != 0);
    BOOST_TEST(!exists_in(local_store_dir, "-ferry-import"), "an import temporary is left in the local store");
    f.restart_host();
    next_run_succeeds(f, "after-retrieve");
    faults::check_invariants(f, "row 3");
}

// Row 4: the link stalls (sshd and all its sessions SIGSTOPped) mid-upload: the
// hook gives up after the configured deadline (keepalive 1 s x 4, then a 2 s
// connect for the roots) instead of hanging.
BOOST_AUTO_TEST_CASE(stalled_link_fails_after_the_deadline) {
    auto& f = fault_fixture::get();
    write_link_conf(f);
    auto u = start_upload(f, "stall");
    auto stopped = sshd_processes(f.host);
    for (pid_t p : f.host.session_pids())
        if (std::find(stopped.begin(), stopped.end(), p) == stopped.end()) stopped.push_back(p);
    signal_all(stopped, SIGSTOP);
    auto t0 = clock_type::now();
    bool ended = u.build.run.wait_for(std::chrono::seconds(40)) == std::future_status::ready;
    const double waited = std::chrono::duration<double>(clock_type::now() - t0).count();
    signal_all(stopped, SIGCONT);
    BOOST_TEST_REQUIRE(ended, "the hook hangs on a stalled link");
    auto r = u.build.run.get();
    BOOST_TEST_MESSAGE(fmt::format("stalled link: the hook gave up after {:.1f} s", waited));
    BOOST_TEST(waited >= 3.0, "gave up before the keepalive deadline: " << waited << " s");
    BOOST_TEST(waited < 25.0, "gave up long after the deadline: " << waited << " s");
    check_transient(r, u.build.port, "sending inputs: ");
    BOOST_TEST(!valid_on_host(f.host, u.input));
    next_run_succeeds(f, "after-stall");
    faults::check_invariants(f, "row 4");
}

// Row 11: the hook SIGKILLed (its whole process group, as the daemon does) while
// an output comes back. Left behind: remote roots, an import temporary in the local
// store. The next run sweeps both, and every lock is free.
BOOST_AUTO_TEST_CASE(killed_hook_is_swept_by_the_next_run) {
    auto& f = fault_fixture::get();
    write_link_conf(f);
    const auto local_store_dir = f.env.local.store_root() / "store";
    auto expr = big_output_expr(f, "killed", 192);
    auto b = start_retrieval(f, expr);
    auto hooks = hook_processes();
    BOOST_TEST_REQUIRE(hooks.size() == 1u, "expected one running hook, found " << hooks.size());
    // The daemon starts the hook in a session of its own (Nix's commonChildInit:
    // setsid) and kills its process group when it gives up.
    BOOST_TEST_REQUIRE(::getpgid(hooks[0]) == hooks[0], "the hook does not lead its own process group");
    ::kill(-hooks[0], SIGKILL);
    auto r = b.run.get();
    BOOST_TEST(r.status != 0);
    BOOST_TEST(process_gone(hooks[0]));
    // What a killed hook leaves here: its import temporary.
    BOOST_TEST(exists_in(local_store_dir, "-ferry-import"), "the killed hook left no temporary: nothing to sweep");
    // On the host, its remote side ends with the connection: then nothing of it
    // holds roots (a Nix machine's are the serve process's temp roots; symlink
    // roots, if any, are swept by the next run and checked by the invariants).
    BOOST_TEST(poll_for([&] { return f.host.session_pids().empty(); }, std::chrono::seconds(10)),
               "the dead hook's remote processes live on");
    // Its slot and upload lock died with it (OFD locks).
    auto m = f.schedule_machine();
    BOOST_TEST(schedule::try_acquire_slot(f.env.state_dir(), m).has_value(), "the dead hook's slot is still held");
    // What a hook killed between writing its probe record and renaming it leaves
    // (the moment is too short to hit): planted, under the dead hook's pid.
    const auto planted = f.env.state_dir() / "ferry" / "probe" /
                         fmt::format("{}.tmp.{}.0", schedule::machine_key(m), hooks[0]);
    fs::create_directories(planted.parent_path());
    std::ofstream(planted) << "{\"half\": ";
    // The next run: the same derivation again, now to the end.
    auto again = f.nix_build(expr);
    BOOST_TEST(again.status == 0, again.err);
    BOOST_TEST_REQUIRE(again.paths().size() == 1u);
    BOOST_TEST(f.env.valid_locally(again.paths()[0]));
    std::vector<std::string> state_temps;
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(f.env.state_dir(), ec))
        if (e.path().filename().string().find(".tmp.") != std::string::npos) state_temps.push_back(e.path().string());
    BOOST_TEST(state_temps.empty(), "temporary files left in ferry's state directory");
    faults::check_invariants(f, "row 11");
}

BOOST_AUTO_TEST_SUITE_END()
