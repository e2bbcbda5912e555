// ferry as Nix's build hook, end to end: real Nix 2.8 nix-build (root, its own
// store through hosts::local_store) calls build/ferry-build-hook, which offloads to
// a real sshd test host with its own store. One host and one local store shared by
// every case (per-run nonces keep builds uncached).
//
// Needs the ferry binary: build target `ferry` in the same build directory first.
#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>

#include "ferry/hosts/test_host.hpp"
#include "ferry/protocol/nix_log.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/schedule/slot.hpp"

namespace fs = std::filesystem;
using namespace ferry;

namespace {

const std::string hook_path = std::string(FERRY_BINARY_DIR) + "/ferry-build-hook";

std::string nonce() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
}

std::string sh_quote(const std::string& s) {
    std::string r = "'";
    for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return r + "'";
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> v;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
}

struct build_run {
    int status = -1;
    std::string out, err;
    std::vector<std::string> paths() const {
        std::vector<std::string> v;
        for (auto& l : lines_of(out))
            if (l.starts_with("/nix/store/")) v.push_back(l);
        return v;
    }
};

// One test host and one local store for every case.
struct hook_fixture {
    hosts::test_host host;
    hosts::local_store local;

    hook_fixture()
        : host(hosts::test_host::start(hosts::temporary_directory("ferry-hook-host"), "builder1")),
          local(hosts::local_store::create(hosts::temporary_directory("ferry-hook-local"))) {
        // ferry's state (slots, probe cache, backoff) private to this run.
        std::ofstream(local.directory() / "ferry.conf") << "state-dir = " << (local.directory() / "ferry-state").string()
                                                        << "\n";
    }

    static hook_fixture& get() {
        static std::unique_ptr<hook_fixture> f;
        if (!f) {
            BOOST_TEST_REQUIRE(fs::exists(hook_path), hook_path << " is missing: build target `ferry` first");
            f = std::make_unique<hook_fixture>();
        }
        return *f;
    }

    fs::path write_expr(const std::string& name, const std::string& text) {
        auto p = local.directory() / (name + ".nix");
        std::ofstream(p) << text;
        return p;
    }

    // nix-build with ferry as the build hook; `builders` defaults to the host.
    build_run nix_build(const fs::path& expr, const std::string& extra = "",
                        std::optional<std::string> builders = std::nullopt) {
        build_run r;
        std::string b = builders ? *builders : host.nix_machine_line();
        auto cmd = fmt::format(
            "FERRY_CONFIG={} /usr/bin/nix-build {} --no-out-link --option build-hook {} --option substituters '' --builders {} {}",
            (local.directory() / "ferry.conf").string(), expr.string(), hook_path, sh_quote(b), extra);
        auto t0 = std::chrono::steady_clock::now();
        r.status = local.run(cmd, &r.out, &r.err);
        BOOST_TEST_MESSAGE(fmt::format("{} -> {} in {:.2f} s", cmd, r.status,
                                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
        return r;
    }

    bool valid_locally(const std::string& path) { return local.run("/usr/bin/nix-store --verify-path " + path) == 0; }
    bool valid_on_host(const std::string& path) {
        return host.run("/usr/bin/nix-store --check-validity " + path + " 2>/dev/null") == 0;
    }
    std::vector<std::string> remote_roots() {
        std::vector<std::string> v;
        std::error_code ec;
        for (auto& e : fs::recursive_directory_iterator(host.store_root() / "var/nix/gcroots", ec))
            if (e.path().filename().string().starts_with("ferry-")) v.push_back(e.path().string());
        return v;
    }
};

// Runs the hook binary directly with `input` on stdin (as the daemon writes it).
struct hook_run {
    int status = -1;
    std::string out, err;
};
hook_run run_hook_directly(const std::string& input, unsigned verbosity, const std::string& env = "") {
    auto dir = hosts::temporary_directory("ferry-hook-proto");
    std::ofstream(dir / "in", std::ios::binary) << input;
    hook_run r;
    auto cmd = fmt::format("cd {0} && {1} {2} {3} <in >out 2>err; echo $? >status", dir.string(), env, hook_path,
                           verbosity);
    BOOST_TEST_REQUIRE(std::system(cmd.c_str()) == 0);
    auto slurp = [&](const char* name) {
        std::ifstream in(dir / name, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    r.status = std::stoi(slurp("status"));
    r.out = slurp("out");
    r.err = slurp("err");
    fs::remove_all(dir);
    return r;
}

std::string settings_preamble(const std::vector<std::pair<std::string, std::string>>& settings) {
    std::string s;
    for (auto& [k, v] : settings) {
        protocol::wire::append_u64(s, 1);
        protocol::wire::append_string(s, k);
        protocol::wire::append_string(s, v);
    }
    protocol::wire::append_u64(s, 0);
    return s;
}

std::string try_request(bool am_willing, const std::string& system, const std::string& drv,
                        const std::vector<std::string>& features) {
    std::string s;
    protocol::wire::append_string(s, "try");
    protocol::wire::append_u64(s, am_willing ? 1 : 0);
    protocol::wire::append_string(s, system);
    protocol::wire::append_string(s, drv);
    protocol::wire::append_strings(s, features);
    return s;
}

bool process_gone(pid_t pid) {
    for (int i = 0; i < 100; ++i) {
        if (::kill(pid, 0) != 0) return true;
        // A zombie waits for the host's reaper: gone as a process all the same.
        std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
        std::string line;
        std::getline(stat, line);
        auto close = line.rfind(')');
        if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z') return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(nix_hook)

// (5) The daemon's bytes, scripted: settings, requests nobody can take, EOF.
BOOST_AUTO_TEST_CASE(protocol_decline_postpone_and_decline_permanently) {
    auto dir = hosts::temporary_directory("ferry-hook-state");
    std::ofstream(dir / "ferry.conf") << "state-dir = " << dir.string() << "\n";
    const std::string env = "FERRY_CONFIG=" + (dir / "ferry.conf").string();
    const std::string line = "ssh://root@127.0.0.1:1 x86_64-linux /nonexistent/key 1 1 big - -";
    auto settings = settings_preamble({{"builders", line}, {"system", "x86_64-linux"}, {"max-silent-time", "0"}});

    // No machine for riscv64 -> decline (without any connection: port 1 is closed).
    // A held slot on the only x86_64 machine, daemon unwilling -> postpone.
    schedule::machine sm;
    sm.name = "127.0.0.1";
    sm.port = 1;
    auto held = schedule::try_acquire_slot(dir, sm);
    BOOST_TEST_REQUIRE(held.has_value());
    std::string input = settings + try_request(false, "riscv64-linux", "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a.drv", {}) +
                        try_request(false, "x86_64-linux", "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b.drv", {}) +
                        try_request(true, "x86_64-linux", "/nix/store/cccccccccccccccccccccccccccccccc-c.drv", {}) +
                        try_request(false, "x86_64-linux", "/nix/store/dddddddddddddddddddddddddddddddd-d.drv", {"kvm"});
    auto r = run_hook_directly(input, 0, env);
    BOOST_TEST(r.status == 0);
    BOOST_TEST(r.out.empty());
    // busy + the daemon can build it -> decline; "kvm" is neither supported nor local -> decline.
    BOOST_TEST(r.err == "# decline\n# postpone\n# decline\n# decline\n", "stderr was: " << r.err);

    // At verbosity 5 the decision log comes too, as valid @nix lines only.
    r = run_hook_directly(input, 5, env);
    BOOST_TEST(r.status == 0);
    std::size_t replies = 0, json = 0;
    for (auto& l : lines_of(r.err)) {
        if (l.starts_with("# ")) {
            ++replies;
            continue;
        }
        BOOST_TEST_REQUIRE(l.starts_with("@nix "), "not a reply nor @nix: " << l);
        BOOST_CHECK_NO_THROW(protocol::validate_nix_log_line(l));
        ++json;
    }
    BOOST_TEST(replies == 4u);
    BOOST_TEST(json >= 4u);
    BOOST_TEST(r.err.find("cannot build riscv64-linux") != std::string::npos, r.err);
    BOOST_TEST(r.err.find("busy") != std::string::npos, r.err);
    // ferry.conf's log-level = debug shows the decision log at verbosity 0 too.
    std::ofstream(dir / "debug.conf") << "state-dir = " << dir.string() << "\nlog-level = debug\n";
    auto dbg = run_hook_directly(input, 0, "FERRY_CONFIG=" + (dir / "debug.conf").string());
    BOOST_TEST(dbg.status == 0);
    BOOST_TEST(dbg.err.find("@nix {\"action\":\"msg\",\"level\":0,\"msg\":\"ferry: ssh://root@127.0.0.1:1: busy") !=
                   std::string::npos,
               dbg.err);
    held.reset();

    // Slot free now: the probe connects, is refused (port 1), the machine is
    // unreachable and the daemon can build it -> decline; not a byte from libssh.
    r = run_hook_directly(settings + try_request(true, "x86_64-linux", "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-e.drv", {}),
                          0, env);
    BOOST_TEST(r.status == 0);
    BOOST_TEST(r.err == "# decline\n", r.err);

    // No machines at all -> decline-permanently right after the preamble.
    r = run_hook_directly(settings_preamble({{"builders", ""}, {"system", "x86_64-linux"}}) +
                              try_request(false, "x86_64-linux", "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a.drv", {}),
                          0, env);
    BOOST_TEST(r.status == 0);
    BOOST_TEST(r.err == "# decline-permanently\n", r.err);

    // Truncated input -> exit 1 with an @nix error line, nothing else.
    r = run_hook_directly(settings.substr(0, settings.size() - 3), 0, env);
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.err.starts_with("@nix {\"action\":\"msg\",\"level\":0"), r.err);
    fs::remove_all(dir);
}

// (1) An input closure of several paths and an input derivation, offloaded.
BOOST_AUTO_TEST_CASE(offload_with_input_closure) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto in = f.local.directory() / ("inputs-" + n);
    fs::create_directories(in / "dir");
    {
        std::mt19937_64 rng(std::random_device{}());
        for (int i = 0; i < 3; ++i) {
            std::ofstream out(in / "dir" / fmt::format("blob{}", i), std::ios::binary);
            std::string chunk(1 << 20, '\0');
            for (auto& c : chunk) c = static_cast<char>(rng());
            out << n << chunk;
        }
        std::ofstream(in / "single.txt") << "single " << n << "\n";
    }
    auto expr = f.write_expr("closure-" + n, fmt::format(R"(
let
  dir = builtins.path {{ path = {0}/dir; name = "ferry-dir-{1}"; }};
  single = builtins.path {{ path = {0}/single.txt; name = "ferry-single-{1}"; }};
  refs = builtins.toFile "ferry-refs-{1}" "${{dir}} ${{single}}";
  dep = derivation {{
    name = "ferry-dep-{1}"; system = "x86_64-linux"; builder = "/bin/sh";
    args = [ "-c" "echo dep-{1} > $out" ];
  }};
in derivation {{
  name = "ferry-main-{1}"; system = "x86_64-linux"; builder = "/bin/sh";
  inherit dir single refs dep;
  args = [ "-c" "echo ferry-log-line-{1}; /bin/mkdir $out; /bin/cat $refs $dep > $out/summary; /bin/cat $dir/blob0 $dir/blob1 $dir/blob2 | /usr/bin/wc -c >> $out/summary; echo ferry-log-done-{1}" ];
}}
)",
                                                                in.string(), n));
    auto r = f.nix_build(expr, "--max-jobs 0");
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    auto out = r.paths();
    BOOST_TEST_REQUIRE(out.size() == 1u);
    BOOST_TEST(f.valid_locally(out[0]));
    BOOST_TEST(f.valid_on_host(out[0]), "the build ran on the host");
    std::string summary;
    BOOST_TEST(f.local.run("/bin/cat " + out[0] + "/summary", &summary) == 0);
    BOOST_TEST(summary.find("dep-" + n) != std::string::npos, summary);
    BOOST_TEST(summary.find(std::to_string(3 * ((1 << 20) + n.size()))) != std::string::npos, summary);
    BOOST_TEST(r.err.find("ferry-log-line-" + n) != std::string::npos, "log lines reach nix-build: " << r.err);
    BOOST_TEST(r.err.find("building") != std::string::npos);
    BOOST_TEST(f.remote_roots().empty());
    fs::remove_all(in);
}

// (2) The builder fails -> nix-build fails, hook exit 100, remote roots gone.
BOOST_AUTO_TEST_CASE(failing_builder_exits_100) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto expr = f.write_expr("fail-" + n, fmt::format(R"(
derivation {{ name = "ferry-fail-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo ferry-about-to-fail-{0}; exit 3" ]; }}
)",
                                                      n));
    auto r = f.nix_build(expr, "--max-jobs 0");
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST(r.status != 0);
    BOOST_TEST(r.err.find("exit code 100") != std::string::npos, r.err);
    BOOST_TEST(r.err.find("ferry-about-to-fail-" + n) != std::string::npos, r.err);
    BOOST_TEST(f.remote_roots().empty(), "remote GC roots left behind");
}

// (3) max-silent-time exceeded -> exit 101, the remote builder killed.
BOOST_AUTO_TEST_CASE(silent_build_times_out_with_101) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto pid_file = fs::path("/tmp") / ("ferry-hook-silent-" + n + ".pid");
    auto expr = f.write_expr("silent-" + n, fmt::format(R"(
derivation {{ name = "ferry-silent-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo $$ > {1}; echo going-silent-{0}; exec /bin/sleep 60" ]; }}
)",
                                                        n, pid_file.string()));
    auto t0 = std::chrono::steady_clock::now();
    auto r = f.nix_build(expr, "--max-jobs 0 --option max-silent-time 2");
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST(r.status != 0);
    BOOST_TEST(r.err.find("exit code 101") != std::string::npos, r.err);
    BOOST_TEST(r.err.find("timed out") != std::string::npos, r.err);
    BOOST_TEST(seconds < 30.0);
    std::ifstream pf(pid_file);
    pid_t pid = 0;
    pf >> pid;
    BOOST_TEST_REQUIRE(pid > 0, "the builder did not start");
    BOOST_TEST(process_gone(pid), "the remote builder " << pid << " still runs");
    BOOST_TEST(f.remote_roots().empty());
    fs::remove(pid_file);
}

// (4) Declines: no machine with the feature (the daemon builds locally), and no
// machines at all (decline-permanently).
BOOST_AUTO_TEST_CASE(declines_when_no_machine_fits) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto expr = f.write_expr("local-" + n, fmt::format(R"(
derivation {{ name = "ferry-local-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  requiredSystemFeatures = [ "ferry-local-only" ];
  args = [ "-c" "echo local-{0} > $out" ]; }}
)",
                                                       n));
    auto r = f.nix_build(expr, "--max-jobs 1 --option system-features ferry-local-only -vvvv");
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    BOOST_TEST(r.err.find("hook reply is 'decline'") != std::string::npos, r.err);
    auto out = r.paths();
    BOOST_TEST_REQUIRE(out.size() == 1u);
    BOOST_TEST(f.valid_locally(out[0]));
    BOOST_TEST(!f.valid_on_host(out[0]), "declined, yet built on the host");

    auto expr2 = f.write_expr("none-" + n, fmt::format(R"(
derivation {{ name = "ferry-none-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo none-{0} > $out" ]; }}
)",
                                                       n));
    r = f.nix_build(expr2, "--max-jobs 1 -vvvv", std::string());
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    BOOST_TEST(r.err.find("hook reply is 'decline-permanently'") != std::string::npos, r.err);
    BOOST_TEST(!f.valid_on_host(r.paths().at(0)));
}

// (6) Two builds at once (hook builds take no local slot under --max-jobs 0) on a
// host with max-jobs 1: the slot keeps them apart.
BOOST_AUTO_TEST_CASE(two_builds_share_one_slot) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto stamps = fs::path("/tmp") / ("ferry-hook-slots-" + n);
    auto expr = f.write_expr("pair-" + n, fmt::format(R"(
let mk = i: derivation {{ name = "ferry-pair-${{i}}-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo start ${{i}} $(/bin/date +%s%N) >> {1}; /bin/sleep 1; echo end ${{i}} $(/bin/date +%s%N) >> {1}; echo ${{i}} > $out" ]; }};
in [ (mk "a") (mk "b") ]
)",
                                                      n, stamps.string()));
    auto r = f.nix_build(expr, "--max-jobs 0 --cores 1");
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    auto out = r.paths();
    BOOST_TEST_REQUIRE(out.size() == 2u);
    for (auto& p : out) BOOST_TEST(f.valid_locally(p));
    // start/end stamps: the two intervals must not overlap.
    std::ifstream in(stamps);
    std::vector<std::pair<std::string, long long>> ev;
    std::string what, who;
    long long t;
    while (in >> what >> who >> t) ev.emplace_back(what, t);
    BOOST_TEST_REQUIRE(ev.size() == 4u);
    std::sort(ev.begin(), ev.end(), [](auto& a, auto& b) { return a.second < b.second; });
    BOOST_TEST(ev[0].first == "start");
    BOOST_TEST(ev[1].first == "end", "two builds ran at once on a max-jobs 1 machine");
    BOOST_TEST(ev[2].first == "start");
    BOOST_TEST(ev[3].first == "end");
    fs::remove(stamps);
}

// (7) The connection dies during the build -> exit 1 (transient), and the remote
// GC roots are still removed (over a new connection).
BOOST_AUTO_TEST_CASE(lost_connection_exits_1) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto pid_file = fs::path("/tmp") / ("ferry-hook-lost-" + n + ".pid");
    auto expr = f.write_expr("lost-" + n, fmt::format(R"(
derivation {{ name = "ferry-lost-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo $$ > {1}; exec /bin/sleep 30" ]; }}
)",
                                                      n, pid_file.string()));
    auto run = std::async(std::launch::async, [&] { return f.nix_build(expr, "--max-jobs 0"); });
    for (int i = 0; i < 200 && !fs::exists(pid_file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    BOOST_TEST_REQUIRE(fs::exists(pid_file), "the build did not start");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    f.host.kill_sessions();
    auto r = run.get();
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST(r.status != 0);
    bool transient = r.err.find("exit code 1\n") != std::string::npos || r.err.find("exit code 1;") != std::string::npos;
    BOOST_TEST(transient, r.err);
    BOOST_TEST(f.remote_roots().empty(), "remote GC roots left behind");
    fs::remove(pid_file);
}

BOOST_AUTO_TEST_SUITE_END()
