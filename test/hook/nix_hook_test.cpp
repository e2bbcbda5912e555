// ferry as Nix's build hook, end to end: real Nix 2.8 nix-build (root, its own
// store through hosts::local_store) calls build/ferry-build-hook, which offloads to
// a real sshd test host with its own store. One host and one local store shared by
// every case (per-run nonces keep builds uncached). Fixture pieces shared with
// test/farm and test/faults: test/support/nix_build.hpp.
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

#include "ferry/hook/offload.hpp"
#include "ferry/hosts/test_host.hpp"
#include "ferry/protocol/nix_log.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/remote/build_machine.hpp"
#include "ferry/schedule/slot.hpp"
#include "support/nix_build.hpp"
#include "support/run_async.hpp"

namespace fs = std::filesystem;
using namespace ferry;
using namespace ferry::test_support;

namespace {

// One test host and one local store for every case.
struct hook_fixture {
    hosts::test_host host;
    nix_build_env env;
    hosts::local_store& local;

    hook_fixture()
        : host(hosts::test_host::start(hosts::temporary_directory("ferry-hook-host"), "builder1")),
          env("ferry-hook-local"),
          local(env.local) {}

    static hook_fixture& get() {
        static std::unique_ptr<hook_fixture> f;
        if (!f) f = std::make_unique<hook_fixture>();
        return *f;
    }

    fs::path write_expr(const std::string& name, const std::string& text) { return env.write_expr(name, text); }

    // nix-build with ferry as the build hook; `builders` defaults to the host.
    build_run nix_build(const fs::path& expr, const std::string& extra = "",
                        std::optional<std::string> builders = std::nullopt) {
        return env.nix_build(expr, builders ? *builders : host.nix_machine_line(), extra);
    }

    // A derivation ferry-KIND-NONCE whose builder writes its pid to pid_file (written
    // aside and renamed, see wait_for_pid_file) and then runs `then`.
    fs::path pid_writing_expr(const std::string& kind, const std::string& n, const fs::path& pid_file,
                              const std::string& then) {
        return write_expr(kind + "-" + n,
                          fmt::format("derivation {{ name = \"ferry-{0}-{1}\"; system = \"x86_64-linux\"; "
                                      "builder = \"/bin/sh\";\n  args = [ \"-c\" \"echo $$ > {2}.tmp; "
                                      "/bin/mv {2}.tmp {2}; {3}\" ]; }}\n",
                                      kind, n, pid_file.string(), then));
    }

    // A successful offload: one output, valid here and on the host (built there).
    std::string require_built_remotely(const build_run& r) {
        BOOST_TEST_MESSAGE(r.err);
        BOOST_TEST_REQUIRE(r.status == 0, r.err);
        auto out = r.paths();
        BOOST_TEST_REQUIRE(out.size() == 1u);
        BOOST_TEST(valid_locally(out[0]));
        BOOST_TEST(valid_on_host(out[0]), "the build ran on the host");
        return out[0];
    }

    bool valid_locally(const std::string& path) { return env.valid_locally(path); }
    bool valid_on_host(const std::string& path) { return test_support::valid_on_host(host, path); }
    std::vector<std::string> remote_roots() { return test_support::remote_roots(host); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(nix_hook)

// Every slot taken: the hook waits up to slot-wait for one before postponing
// (Nix retries a postponed build only after build-poll-interval). A slot freed
// during the wait is taken by a fresh selection; a wait in vain makes the hooks
// of the next seconds postpone at once. The machine is port 1 (refused), so a
// fresh selection ends as "unreachable": postpone, as the daemon is unwilling.
BOOST_AUTO_TEST_CASE(busy_slots_are_waited_for_briefly_and_not_again_after_a_miss) {
    using std::chrono::steady_clock;
    auto dir = hosts::temporary_directory("ferry-hook-wait");
    std::ofstream(dir / "ferry.conf") << "state-dir = " << dir.string() << "\nslot-wait = 1.5s\nlog-level = debug\n";
    const std::string env = "FERRY_CONFIG=" + (dir / "ferry.conf").string();
    auto input = settings_preamble({{"builders", "ssh://root@127.0.0.1:1 x86_64-linux /nonexistent/key 1 1 - - -"},
                                    {"system", "x86_64-linux"}}) +
                 try_request(false, "x86_64-linux", "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b.drv", {});
    schedule::machine sm;
    sm.name = "127.0.0.1";
    sm.port = 1;
    const auto missed_file = dir / "ferry/slot-wait-missed";
    auto timed_hook = [&] {
        auto t0 = steady_clock::now();
        auto r = run_hook_directly(input, 0, env);
        BOOST_TEST(r.status == 0);
        return std::pair{r.err, steady_clock::now() - t0};
    };

    // 1. Held throughout: postponed after the whole wait, and the miss is remembered...
    auto held = schedule::try_acquire_slot(dir, sm);
    BOOST_TEST_REQUIRE(held.has_value());
    auto [err, took] = timed_hook();
    BOOST_TEST(err.find("no slot came free within 1.5 s") != std::string::npos, err);
    BOOST_TEST(err.ends_with("# postpone\n"), err);
    BOOST_TEST((took >= std::chrono::milliseconds(1500)));
    BOOST_TEST(fs::exists(missed_file));
    // 2. ... so the next hook postpones at once, without waiting.
    std::tie(err, took) = timed_hook();
    BOOST_TEST(err.find("slot came free") == std::string::npos, err);
    BOOST_TEST(err.ends_with("# postpone\n"), err);
    BOOST_TEST((took < std::chrono::milliseconds(1500)));

    // 3. The memory has expired (file gone) and the slot is released 300 ms into
    // the wait: taken by a fresh selection, whose probe finds every candidate down
    // -> decline.
    fs::remove(missed_file);
    auto release = std::async(std::launch::async, [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        held.reset();
    });
    std::tie(err, took) = timed_hook();
    release.get();
    BOOST_TEST(err.find("a slot came free after") != std::string::npos, err);
    BOOST_TEST(err.find("unreachable") != std::string::npos, err);
    BOOST_TEST(err.ends_with("# decline\n"), err);
    BOOST_TEST((took >= std::chrono::milliseconds(300)));
    BOOST_TEST(!fs::exists(missed_file));
    fs::remove_all(dir);
}

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
    auto out = f.require_built_remotely(r);
    std::string summary;
    BOOST_TEST(f.local.run("/bin/cat " + out + "/summary", &summary) == 0);
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
    auto expr = f.pid_writing_expr("silent", n, pid_file, "echo going-silent-" + n + "; exec /bin/sleep 60");
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
    auto expr = f.pid_writing_expr("lost", n, pid_file, "exec /bin/sleep 30");
    auto run = std::async(std::launch::async, [&] { return f.nix_build(expr, "--max-jobs 0"); });
    BOOST_TEST_REQUIRE(wait_for_pid_file(pid_file) > 0, "the build did not start");
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

// Cases added for issues 6/9 (CA decline, builders-use-substitutes + NIX_SSHOPTS,
// ferry's own watchdog). They reuse the shared host and local store.
BOOST_AUTO_TEST_SUITE(nix_hook_limits)

// A floating content-addressed derivation (a REAL one: Nix 2.8 makes it here with
// --extra-experimental-features ca-derivations and __contentAddressed = true; its
// .drv has output ("out","","r:sha256","")) is declined at try time with a warning
// naming why, and the daemon builds it locally; the host never sees it.
BOOST_AUTO_TEST_CASE(content_addressed_derivation_declined) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto expr = f.write_expr("ca-" + n, fmt::format(R"(
derivation {{ name = "ferry-ca-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256";
  args = [ "-c" "echo ca-{0} > $out" ]; }}
)",
                                                    n));
    auto r = f.nix_build(expr, "--max-jobs 1 --extra-experimental-features ca-derivations");
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    BOOST_TEST(r.err.find("not offloading") != std::string::npos, r.err);
    BOOST_TEST(r.err.find("output 'out' is content-addressed (r:sha256)") != std::string::npos, r.err);
    BOOST_TEST(r.err.find("the daemon builds it itself") != std::string::npos, r.err);
    auto out = r.paths();
    BOOST_TEST_REQUIRE(out.size() == 1u);
    BOOST_TEST(f.valid_locally(out[0]));
    BOOST_TEST(!f.valid_on_host(out[0]), "declined, yet built on the host");
    BOOST_TEST(f.remote_roots().empty());
}

// builders-use-substitutes = true: the host substitutes the input it can get from
// its own binary cache (a file:// cache made with `nix copy`), ferry sends only the
// other one. Also NIX_SSHOPTS: the machine line has no identity ('-'), the key
// comes from NIX_SSHOPTS -i (without it the login fails: the host only accepts
// that key), and the words ferry ignores are named at -v.
BOOST_AUTO_TEST_CASE(builders_use_substitutes_and_nix_sshopts) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto dir = f.local.directory() / ("subst-" + n);
    fs::create_directories(dir);
    std::ofstream(dir / ("ferry-cached-" + n)) << "cached " << n << "\n";
    std::ofstream(dir / ("ferry-sent-" + n)) << "sent " << n << "\n";
    std::string cached, sent;
    BOOST_TEST_REQUIRE(f.local.run("/usr/bin/nix-store --add " + (dir / ("ferry-cached-" + n)).string(), &cached) == 0);
    BOOST_TEST_REQUIRE(f.local.run("/usr/bin/nix-store --add " + (dir / ("ferry-sent-" + n)).string(), &sent) == 0);
    cached = lines_of(cached).at(0);
    sent = lines_of(sent).at(0);
    auto cache = fs::path("/tmp") / ("ferry-hook-cache-" + n);
    BOOST_TEST_REQUIRE(f.local.run("/usr/bin/nix --extra-experimental-features nix-command copy --to file://" +
                                   cache.string() + " " + cached) == 0);
    BOOST_TEST_REQUIRE(!f.valid_on_host(cached));

    // The host's nix.conf gains the cache for this case only (later lines win).
    auto conf_path = f.host.directory() / "etc/nix/nix.conf";
    std::string original;
    {
        std::ifstream in(conf_path);
        original.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream(conf_path, std::ios::app) << "substituters = file://" << cache.string() << "\nrequire-sigs = false\n";
    struct restore {
        fs::path p;
        std::string text;
        ~restore() { std::ofstream(p, std::ios::trunc) << text; }
    } restore_conf{conf_path, original};

    auto expr = f.write_expr("subst-" + n, fmt::format(R"(
derivation {{ name = "ferry-subst-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  cached = builtins.storePath "{1}"; sent = builtins.storePath "{2}";
  args = [ "-c" "/bin/cat $cached $sent > $out" ]; }}
)",
                                                       n, cached, sent));
    const std::string builders = fmt::format("ssh://root@127.0.0.1:{} x86_64-linux - 1 1 - - {}", f.host.port(),
                                             f.host.host_key_base64());
    const std::string sshopts = "-x -i " + f.host.client_key().string() + " -o StrictHostKeyChecking=no -C";
    auto cmd = "NIX_SSHOPTS=" + sh_quote(sshopts) + " " +
               f.env.nix_build_command(expr, builders, "--max-jobs 0 -v --option builders-use-substitutes true");
    build_run r;
    r.status = f.local.run(cmd, &r.out, &r.err);
    f.require_built_remotely(r);
    BOOST_TEST(f.valid_on_host(cached), "substituted on the host");
    BOOST_TEST(f.valid_on_host(sent));
    // Only one of the two inputs was left for ferry to send.
    BOOST_TEST(r.err.find("substituted what it could (builders-use-substitutes); 1 of 2 inputs still missing") !=
                   std::string::npos,
               r.err);
    BOOST_TEST(r.err.find("ferry: sent 1 paths") != std::string::npos, r.err);
    BOOST_TEST(r.err.find("NIX_SSHOPTS: ignored: -o StrictHostKeyChecking=no: ferry always checks host keys") !=
                   std::string::npos,
               r.err);
    BOOST_TEST(r.err.find("-C: ferry compresses with its own codec") != std::string::npos, r.err);
    BOOST_TEST(f.remote_roots().empty());
    fs::remove_all(cache);
    fs::remove_all(dir);
}

// ferry's own watchdog, not the remote's: the remote `nix-store --serve` (the
// builder's parent, which runs the remote's max-silent-time check) is stopped
// with SIGSTOP during a silent build, so only ferry can time it out. Exit 101
// within a bound, no remote GC roots left.
BOOST_AUTO_TEST_CASE(ferry_watchdog_fires_when_remote_is_frozen) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto pid_file = fs::path("/tmp") / ("ferry-hook-frozen-" + n + ".pid");
    auto expr = f.pid_writing_expr("frozen", n, pid_file, "echo frozen-" + n + "; exec /bin/sleep 60");
    auto t0 = std::chrono::steady_clock::now();
    auto run = std::async(std::launch::async,
                          [&] { return f.nix_build(expr, "--max-jobs 0 --option max-silent-time 2"); });
    pid_t builder = wait_for_pid_file(pid_file);
    BOOST_TEST_REQUIRE(builder > 0, "the build did not start");
    // The builder's parent is the remote nix-store --serve (Nix forks builders there).
    pid_t serve = parent_pid(builder);
    std::string comm;
    std::ifstream("/proc/" + std::to_string(serve) + "/comm") >> comm;
    BOOST_TEST_REQUIRE(comm == "nix-store", "the builder's parent " << serve << " is " << comm);
    BOOST_TEST_REQUIRE(::kill(serve, SIGSTOP) == 0);
    auto r = run.get();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::kill(builder, SIGKILL);
    ::kill(serve, SIGKILL);
    ::kill(serve, SIGCONT);
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST(r.status != 0);
    BOOST_TEST(r.err.find("exit code 101") != std::string::npos, r.err);
    BOOST_TEST(r.err.find("timed out after 2 seconds of silence (killed by ferry)") != std::string::npos, r.err);
    BOOST_TEST(seconds < 20.0);
    BOOST_TEST(f.remote_roots().empty(), "remote GC roots left behind");
    BOOST_TEST(process_gone(serve));
    fs::remove(pid_file);
}

// Codec auto's link memory, shared by both front ends: a measurement is stored and
// reused; a send that reused it does not renew it (it would never expire); without
// a state directory nothing is remembered.
BOOST_AUTO_TEST_CASE(remembered_link_reuses_and_renews_only_new_measurements) {
    const auto dir = ferry::hosts::temporary_directory("ferry-link");
    ferry::hook::offload_settings settings;
    settings.state_dir = dir;
    ferry::machines::machine m;
    m.host = "builder.example";
    ferry::hook::remembered_link first(settings, m);
    BOOST_TEST(!first.reusable().has_value());
    first.after_send(5e6);
    ferry::hook::remembered_link second(settings, m);
    BOOST_TEST_REQUIRE(second.reusable().has_value());
    BOOST_TEST(*second.reusable() == 5e6);
    second.after_send(9e6);  // reused: not a new measurement
    BOOST_TEST(*ferry::hook::remembered_link(settings, m).reusable() == 5e6);
    ferry::machines::machine other = m;
    other.host = "other.example";
    BOOST_TEST(!ferry::hook::remembered_link(settings, other).reusable().has_value());
    ferry::hook::offload_settings stateless;
    ferry::hook::remembered_link none(stateless, m);
    none.after_send(7e6);
    BOOST_TEST(!ferry::hook::remembered_link(stateless, m).reusable().has_value());
    std::filesystem::remove_all(dir);
}

// What offload's protect() gives a Nix machine: temp roots of the remote serve
// process (QueryValidPaths lock = 1), no symlinks. An unrooted path on the host
// survives `nix-store --gc` while protected, and is collected once finish()
// hung up (the serve process exits on the EOF a moment later: the test retries).
BOOST_AUTO_TEST_CASE(inputs_protected_by_serve_temp_roots) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    std::string path;
    BOOST_TEST_REQUIRE(f.host.run("d=$(mktemp -d) && echo " + n + " > $d/ferry-troot-" + n +
                                      " && /usr/bin/nix-store --add $d/ferry-troot-" + n + "; s=$?; rm -rf $d; exit $s",
                                  &path) == 0);
    path = lines_of(path).at(0);
    auto gc = [&] { BOOST_TEST(f.host.run("/usr/bin/nix-store --gc >/dev/null 2>&1") == 0); };
    run_async([&]() -> asio::awaitable<void> {
        auto session = co_await ssh::session::connect(pinned_options(f.host));
        auto m = co_await remote::nix_build_machine::open(session, remote::nix_remote_options());
        std::vector<std::string> paths{path};
        co_await m->protect(paths);
        gc();
        BOOST_TEST(f.valid_on_host(path), "collected while protected");
        BOOST_TEST(f.remote_roots().empty(), "symlink roots made");
        co_await m->finish();
    });
    for (int i = 0; i < 50 && f.valid_on_host(path); ++i) {
        gc();
        if (f.valid_on_host(path)) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    BOOST_TEST(!f.valid_on_host(path), "still protected 5 s after finish()");
}

// (1)+(5) The issue's sizes: an input closure of 201 paths, one of them > 100 MB,
// and an output > 100 MB coming back. The builder prints a line, then waits until
// the test saw that line in nix-build's stderr before it goes on: the log must
// reach nix-build while the build runs, not after it.
BOOST_AUTO_TEST_CASE(large_closure_in_large_output_back_log_while_building) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    auto dir = f.local.directory() / ("large-" + n);
    fs::create_directories(dir);
    const auto big = dir / "big.bin";
    {
        std::mt19937_64 rng(std::random_device{}());
        std::ofstream out(big, std::ios::binary);
        std::vector<std::uint64_t> block(1 << 17);  // 1 MiB
        for (int i = 0; i < 110; ++i) {
            for (auto& w : block) w = rng();
            out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(block.size() * 8));
        }
    }
    const auto go = fs::path("/tmp") / ("ferry-hook-go-" + n);
    auto expr = f.write_expr("large-" + n, fmt::format(R"(
let
  small = builtins.genList (i: builtins.toFile "ferry-small-${{toString i}}-{1}" "small ${{toString i}} {1}\n") 200;
  big = builtins.path {{ path = {0}; name = "ferry-big-{1}"; }};
in derivation {{
  name = "ferry-large-{1}"; system = "x86_64-linux"; builder = "/bin/sh";
  inherit small big;
  args = [ "-c" "echo ferry-early-{1}; i=0; while [ ! -e {2} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 7; /bin/sleep 0.1; done; /bin/mkdir $out; /bin/cat $big $big > $out/twice; for p in $small; do /bin/cat $p; done > $out/small; echo ferry-late-{1}" ];
}}
)",
                                                              big.string(), n, go.string()));
    const auto live_err = dir / "stderr";
    auto cmd = f.env.nix_build_command(expr, f.host.nix_machine_line(), "--max-jobs 0") + " 2>" + live_err.string();
    auto build = std::async(std::launch::async, [&] {
        build_run r;
        r.status = f.local.run(cmd, &r.out);
        return r;
    });
    // The early line, while the builder waits (up to 60 s) for us.
    bool seen = false;
    for (int i = 0; i < 600 && !seen; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        std::ifstream in(live_err);
        seen = std::string(std::istreambuf_iterator<char>(in), {}).find("ferry-early-" + n) != std::string::npos;
    }
    std::ofstream(go) << "go\n";
    auto r = build.get();
    std::ifstream in(live_err);
    r.err.assign(std::istreambuf_iterator<char>(in), {});
    BOOST_TEST(seen, "the builder's first line did not reach nix-build while the build ran: " << r.err);
    auto out = f.require_built_remotely(r);
    const auto late = r.err.find("ferry-late-" + n), early = r.err.find("ferry-early-" + n);
    BOOST_TEST((early != std::string::npos && late != std::string::npos && early < late), r.err);
    // --verify-path above rehashed the 220 MB output; its content is the input twice.
    std::string sizes, small;
    BOOST_TEST(f.local.run("/usr/bin/stat -c %s " + out + "/twice " + big.string(), &sizes) == 0);
    BOOST_TEST(sizes == fmt::format("{0}\n{1}\n", 2 * fs::file_size(big), fs::file_size(big)));
    const auto size = std::to_string(fs::file_size(big));
    BOOST_TEST(f.local.run("/usr/bin/cmp -n " + size + " " + out + "/twice " + big.string() + " && /usr/bin/cmp -i " +
                           size + ":0 " + out + "/twice " + big.string()) == 0);
    BOOST_TEST(f.local.run("/bin/cat " + out + "/small", &small) == 0);
    BOOST_TEST(lines_of(small).size() == 200u);
    BOOST_TEST(small.find("small 199 " + n) != std::string::npos);
    BOOST_TEST(f.remote_roots().empty());
    fs::remove_all(dir);
    fs::remove(go);
}

// (6) The same hook behind a running nix-daemon (NIX_REMOTE=daemon): the daemon
// starts ferry with its own settings and environment, the client only talks to it.
BOOST_AUTO_TEST_CASE(offload_through_a_running_nix_daemon) {
    auto& f = hook_fixture::get();
    auto n = nonce();
    const auto dir = f.local.directory() / ("daemon-" + n);
    fs::create_directories(dir);
    const auto pid_file = dir / "daemon.pid";
    // nix-daemon's own options: the hook, the builders, never build locally.
    BOOST_TEST_REQUIRE(
        f.local.run(fmt::format("FERRY_CONFIG={} /usr/bin/setsid /usr/bin/nix-daemon --option build-hook {} "
                                "--option builders {} --option max-jobs 0 --option substituters '' "
                                "</dev/null >{}/daemon.log 2>&1 & echo $! > {}",
                                f.env.conf.string(), hook_path, sh_quote(f.host.nix_machine_line()), dir.string(),
                                pid_file.string())) == 0);
    pid_t daemon = 0;
    std::ifstream(pid_file) >> daemon;
    BOOST_TEST_REQUIRE(daemon > 0);
    stopped_at_exit stop{daemon};
    auto expr = f.write_expr("daemon-" + n, fmt::format(R"(
derivation {{ name = "ferry-daemon-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo ferry-via-daemon-{0}; echo built-{0} > $out" ]; }}
)",
                                                         n));
    build_run r;
    // The socket appears when the daemon is ready.
    for (int i = 0; i < 100 && f.local.run("/usr/bin/test -S /nix/var/nix/daemon-socket/socket") != 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    r.status = f.local.run("NIX_REMOTE=daemon /usr/bin/nix-build " + expr.string() + " --no-out-link", &r.out, &r.err);
    std::ifstream log(dir / "daemon.log");
    BOOST_TEST_MESSAGE("daemon log: " << std::string(std::istreambuf_iterator<char>(log), {}));
    auto out = f.require_built_remotely(r);
    std::string content;
    BOOST_TEST(f.local.run("/bin/cat " + out, &content) == 0);
    BOOST_TEST(content == "built-" + n + "\n");
    BOOST_TEST(r.err.find("ferry-via-daemon-" + n) != std::string::npos, r.err);  // the log, through the daemon
    BOOST_TEST(f.remote_roots().empty());
    fs::remove_all(dir);
}

BOOST_AUTO_TEST_SUITE_END()
