// Scheduling across a farm of real build machines (issue 7, and row 10 of issue
// 10's fault matrix): real sshd test hosts with their own Nix stores, real Nix
// 2.8 nix-build with ferry-build-hook, `--max-jobs 0` (every build goes through
// the hook; hook builds take no local slot, so independent derivations of one
// nix-build are offloaded at once — never -j for ferry), per-run nonces.
//
// Two hosts are started once for the whole executable and shared by every case;
// each case starts with an empty ferry state directory (slots, probe cache,
// backoff, upload locks), so cases do not see each other's machines.
//
// "The host's own record": every builder appends "start ID NS" / "stop ID NS"
// (date +%s%N, one clock for all) to /nix/ferry-farm-NONCE.log. /nix is the
// store root of whoever runs the builder — a test host's DIR/nix, or the local
// store's — so the file says where each build ran and when, and is read back
// by the test from outside.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>

#include "ferry/hosts/test_host.hpp"
#include "ferry/schedule/slot.hpp"
#include "ferry/schedule/state.hpp"
#include "ferry/schedule/upload_lock.hpp"
#include "support/nix_build.hpp"

namespace fs = std::filesystem;
using namespace ferry;
using namespace ferry::test_support;
using namespace std::chrono_literals;

namespace {

// Postponed builds are retried every build-poll-interval seconds (Nix's
// default is 5): 1 keeps the cases short. -v shows ferry's talkative lines
// ("N of M input paths missing on ...", "sent ...").
const std::string offload_only = "--max-jobs 0 --option build-poll-interval 1 -v";
constexpr auto build_limit = std::chrono::seconds(120);

// A Nix machines line for `h`, possibly under another name for the same address
// (the machine's identity for slots and backoff is name:port), or for another
// port (a dead or blackholed "machine" that claims h's host key).
std::string machine_line(const hosts::test_host& h, int max_jobs, const std::string& name = "127.0.0.1",
                         int speed = 1, std::optional<std::uint16_t> port = std::nullopt) {
    return fmt::format("ssh://root@{}:{} x86_64-linux {} {} {} - - {}", name, port.value_or(h.port()),
                       h.client_key().string(), max_jobs, speed, h.host_key_base64());
}

std::string join_lines(const std::vector<std::string>& lines) {
    std::string s;
    for (const auto& l : lines) s += (s.empty() ? "" : ";") + l;
    return s;
}

schedule::machine slot_machine(std::uint16_t port, unsigned max_jobs, const std::string& name = "127.0.0.1") {
    schedule::machine m;
    m.name = name;
    m.port = port;
    m.max_jobs = max_jobs;
    return m;
}

// The start/stop record of one store root.
struct build_record {
    struct event {
        bool start;
        std::string id;
        long long ns;
    };
    std::vector<event> events;

    static build_record read(const fs::path& file) {
        build_record r;
        std::ifstream in(file);
        std::string what, id;
        long long ns;
        while (in >> what >> id >> ns) r.events.push_back({what == "start", id, ns});
        return r;
    }
    std::set<std::string> started() const {
        std::set<std::string> s;
        for (auto& e : events)
            if (e.start) s.insert(e.id);
        return s;
    }
    std::size_t starts() const {
        return static_cast<std::size_t>(std::count_if(events.begin(), events.end(), [](auto& e) { return e.start; }));
    }
    // The most builds running at once (a stop and a start at the same
    // nanosecond count as not overlapping).
    int max_concurrent() const {
        auto ev = events;
        std::sort(ev.begin(), ev.end(), [](auto& a, auto& b) { return a.ns != b.ns ? a.ns < b.ns : !a.start; });
        int now = 0, most = 0;
        for (auto& e : ev) {
            now += e.start ? 1 : -1;
            most = std::max(most, now);
        }
        return most;
    }
    bool balanced() const { return starts() * 2 == events.size(); }
};

// ferry's talkative line "ferry: N of M input paths missing on URI (...)", after
// the upload lock: N is what that hook then sent.
struct missing_line {
    unsigned missing;
    std::string uri;
};
std::vector<missing_line> missing_lines(const std::string& log) {
    static const std::regex re(R"(ferry: (\d+) of \d+ input paths missing on (\S+) )");
    std::vector<missing_line> v;
    for (std::sregex_iterator it(log.begin(), log.end(), re), end; it != end; ++it)
        v.push_back({static_cast<unsigned>(std::stoul((*it)[1])), (*it)[2]});
    return v;
}
// "ferry: sent N paths, X MB": NAR megabytes each hook sent.
std::vector<double> sent_megabytes(const std::string& log) {
    static const std::regex re(R"(ferry: sent \d+ paths, ([0-9.]+) MB)");
    std::vector<double> v;
    for (std::sregex_iterator it(log.begin(), log.end(), re), end; it != end; ++it) v.push_back(std::stod((*it)[1]));
    return v;
}
std::size_t count_of(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

// A TCP listener that completes connections (the kernel's backlog) and never
// says a word: an ssh client waits for the banner forever. Connections are
// counted by accepting them afterwards.
class blackhole {
public:
    blackhole() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        BOOST_TEST_REQUIRE(fd_ >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        BOOST_TEST_REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        BOOST_TEST_REQUIRE(::listen(fd_, 64) == 0);
        socklen_t len = sizeof a;
        BOOST_TEST_REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port_ = ntohs(a.sin_port);
        ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    }
    ~blackhole() {
        for (int c : accepted_) ::close(c);
        ::close(fd_);
    }
    std::uint16_t port() const { return port_; }
    // Connections made since the last call.
    int take_connections() {
        int n = 0;
        for (int c; (c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; ++n) accepted_.push_back(c);
        return n;
    }

private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::vector<int> accepted_;
};

// A port where nothing listens (bound, then closed): a machine that is down.
std::uint16_t closed_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

// Two hosts and one local store for every case.
struct farm {
    hosts::test_host host1, host2;
    nix_build_env env;

    farm()
        : host1(hosts::test_host::start(hosts::temporary_directory("ferry-farm-host1"), "farm1")),
          host2(hosts::test_host::start(hosts::temporary_directory("ferry-farm-host2"), "farm2")),
          env("ferry-farm-local") {}

    static farm& get() {
        static std::unique_ptr<farm> f;
        if (!f) f = std::make_unique<farm>();
        return *f;
    }

    // A case starts with no slots, probe cache, backoff or upload locks.
    void fresh_state(const std::string& extra_conf = "") {
        fs::remove_all(env.state_dir());
        env.write_conf(extra_conf);
    }

    fs::path local_record(const std::string& n) const { return env.local.store_root() / ("ferry-farm-" + n + ".log"); }
    static fs::path record(const hosts::test_host& h, const std::string& n) {
        return h.store_root() / ("ferry-farm-" + n + ".log");
    }

    // `count` independent derivations "ID-NONCE" that record start/stop, sleep
    // `sleep` seconds and reference `inputs` (Nix expressions), as a list.
    fs::path independent_builds(const std::string& n, const std::vector<std::string>& ids, int sleep,
                                const std::string& let_inputs = "", const std::string& inherit = "") {
        std::string list;
        for (auto& id : ids) list += fmt::format(" (mk \"{}\")", id);
        return env.write_expr("farm-" + n, fmt::format(R"(
let
  {3}
  mk = i: derivation {{
    name = "ferry-farm-${{i}}-{0}"; system = "x86_64-linux"; builder = "/bin/sh"; {4}
    args = [ "-c" "echo start ${{i}} $(/bin/date +%s%N) >> /nix/ferry-farm-{0}.log; /bin/sleep {1}; echo stop ${{i}} $(/bin/date +%s%N) >> /nix/ferry-farm-{0}.log; echo ${{i}} > $out" ];
  }};
in [{2} ]
)",
                                                       n, sleep, list, let_inputs, inherit));
    }

    fs::path random_file(const std::string& name, std::size_t bytes, const std::string& n) {
        auto p = env.local.directory() / name;
        std::ofstream out(p, std::ios::binary);
        out << n;
        std::mt19937_64 rng(std::random_device{}());
        std::string chunk(1 << 20, '\0');
        for (std::size_t done = 0; done < bytes; done += chunk.size()) {
            for (std::size_t i = 0; i < chunk.size(); i += 8) {
                auto v = rng();
                std::memcpy(chunk.data() + i, &v, 8);
            }
            out.write(chunk.data(), static_cast<std::streamsize>(std::min(chunk.size(), bytes - done)));
        }
        return p;
    }
};

// The hook binary alone on a scripted request (verbosity 5: with the decision
// log): its first reply is the decision, and the run takes little more.
struct decision_run {
    hook_run hook;
    std::chrono::milliseconds took;
};
decision_run decide_once(const nix_build_env& env, const std::string& builders, const std::string& drv) {
    auto input = settings_preamble({{"builders", builders}, {"system", "x86_64-linux"}}) +
                 try_request(false, "x86_64-linux", drv, {});
    auto t0 = std::chrono::steady_clock::now();
    auto h = run_hook_directly(input, 5, "FERRY_CONFIG=" + env.conf.string());
    return {std::move(h), std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)};
}

// Whether someone holds a lock on `file`, without taking it (F_OFD_GETLK).
bool slot_taken(const fs::path& file) {
    int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    struct flock lk {};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    bool taken = ::fcntl(fd, F_OFD_GETLK, &lk) == 0 && lk.l_type != F_UNLCK;
    ::close(fd);
    return taken;
}

// Every slot of `m` free, and its upload lock.
void check_released(const fs::path& state, const schedule::machine& m) {
    std::vector<schedule::slot> held;
    for (unsigned i = 0; i < m.max_jobs; ++i) {
        auto s = schedule::try_acquire_slot(state, m);
        BOOST_TEST(s.has_value(), "slot " << i << " of " << m.name << ":" << m.port << " still held");
        if (s) held.push_back(std::move(*s));
    }
    BOOST_TEST(schedule::try_lock_any(schedule::upload_lock_directory(state, m), 1).has_value(),
               "upload lock of " << m.name << ":" << m.port << " still held");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(farm_scheduling)

// (a) One host with one slot, three independent builds at once: all succeed,
// never two at once on the host, the others waited for or postponed and later accepted.
BOOST_AUTO_TEST_CASE(one_slot_three_builds) {
    auto& f = farm::get();
    f.fresh_state();
    auto n = nonce();
    auto expr = f.independent_builds(n, {"a", "b", "c"}, 1);
    auto r = f.env.nix_build_within(build_limit, expr, machine_line(f.host1, 1), offload_only);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    auto out = r.paths();
    BOOST_TEST_REQUIRE(out.size() == 3u);
    for (auto& p : out) {
        BOOST_TEST(f.env.valid_locally(p));
        BOOST_TEST(valid_on_host(f.host1, p), p << " was not built on the host");
    }
    auto rec = build_record::read(farm::record(f.host1, n));
    BOOST_TEST(rec.starts() == 3u);
    BOOST_TEST(rec.balanced());
    BOOST_TEST(rec.max_concurrent() == 1, "two builds ran at once on a max-jobs 1 machine");
    BOOST_TEST(!fs::exists(f.local_record(n)), "something was built locally");
    // The two builds that found the slot taken either waited for it (ferry.conf
    // slot-wait: "a slot came free") or were postponed (Nix says "waiting for a
    // machine to build" for each).
    BOOST_TEST(count_of(r.err, "a slot came free") + count_of(r.err, "waiting for a machine to build") >= 2u, r.err);
    BOOST_TEST(remote_roots(f.host1).empty());
    check_released(f.env.state_dir(), slot_machine(f.host1.port(), 1));
}

// (b) Two machines, one down (nothing listens on its port): the decision costs
// no probe deadline, the dead one is backed off and then skipped without a
// connection attempt, and the builds go to the live one.
BOOST_AUTO_TEST_CASE(dead_machine_is_backed_off_and_builds_go_to_the_live_one) {
    auto& f = farm::get();
    const auto deadline = 2s;
    f.fresh_state("probe-deadline = 2s\n");
    const auto dead_port = closed_port();
    auto builders = join_lines({machine_line(f.host2, 1, "127.0.0.1", 1, dead_port), machine_line(f.host1, 2)});
    const auto dead = slot_machine(dead_port, 1);

    auto [h, took] = decide_once(f.env, builders, "/nix/store/ffffffffffffffffffffffffffffffff-farm.drv");
    BOOST_TEST_MESSAGE(fmt::format("decision with a dead machine: {} ms (probe deadline {} ms)", took / 1ms,
                                   deadline / 1ms));
    BOOST_TEST(h.err.find(fmt::format("# accept\nssh://root@127.0.0.1:{}\n", f.host1.port())) != std::string::npos,
               h.err);
    BOOST_TEST(took < deadline + 1s, "the dead machine cost " << took / 1ms << " ms");
    BOOST_TEST(h.err.find(fmt::format("127.0.0.1:{}: unreachable", dead_port)) != std::string::npos, h.err);
    schedule::backoff_store backoff(f.env.state_dir());
    auto rec = backoff.read(dead);
    BOOST_TEST_REQUIRE(rec.has_value(), "the dead machine is not backed off");
    BOOST_TEST(rec->failures == 1u);
    BOOST_TEST(backoff.backed_off(dead));

    // nix-build with both: two builds, both on the live machine; the dead one is
    // not contacted again (still one failure on record).
    auto n = nonce();
    auto expr = f.independent_builds(n, {"x", "y"}, 1);
    auto r = f.env.nix_build_within(build_limit, expr, builders, offload_only);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    BOOST_TEST(build_record::read(farm::record(f.host1, n)).starts() == 2u);
    BOOST_TEST(!fs::exists(f.local_record(n)));
    rec = backoff.read(dead);
    BOOST_TEST_REQUIRE(rec.has_value());
    BOOST_TEST(rec->failures == 1u, "the backed-off machine was contacted again");
    check_released(f.env.state_dir(), slot_machine(f.host1.port(), 2));
}

// (c) 8 machines, 3 of them blackholed (connect, then silence), and faster on
// paper (speed 2) so that the probe cannot stop early: the decision still
// comes within one probe deadline, each blackhole is connected to once, and
// the next decision skips them without a connection.
// The 5 live machines are the two test hosts under several names for the same
// address (127.0.0.1, localhost, 127.1): distinct machines to ferry (slots,
// probes and backoff go by name:port), two sshds to keep within the budget.
BOOST_AUTO_TEST_CASE(blackholed_machines_cost_one_probe_deadline) {
    auto& f = farm::get();
    const auto deadline = 2s;
    f.fresh_state("probe-deadline = 2s\n");
    blackhole holes[3];
    std::vector<std::string> lines;
    for (auto& b : holes) lines.push_back(machine_line(f.host1, 1, "127.0.0.1", 2, b.port()));
    for (auto name : {"127.0.0.1", "localhost", "127.1"}) lines.push_back(machine_line(f.host1, 1, name));
    for (auto name : {"127.0.0.1", "localhost"}) lines.push_back(machine_line(f.host2, 1, name));
    std::shuffle(lines.begin(), lines.end(), std::mt19937(std::random_device{}()));
    const std::string drv = "/nix/store/cccccccccccccccccccccccccccccccc-farm.drv";
    auto [h, took] = decide_once(f.env, join_lines(lines), drv);
    BOOST_TEST_MESSAGE(fmt::format("decision with 3 blackholed of 8: {} ms (probe deadline {} ms)", took / 1ms,
                                   deadline / 1ms));
    BOOST_TEST(h.err.find("# accept\n") != std::string::npos, h.err);
    // One deadline for all, not one per silent machine (3 would be 6 s).
    BOOST_TEST(took < deadline + 2s, "took " << took / 1ms << " ms");
    BOOST_TEST(took >= deadline - 100ms, "the probe stopped before hearing from machines that could win");
    for (auto& b : holes) {
        BOOST_TEST(b.take_connections() == 1, "blackhole " << b.port());
        BOOST_TEST(h.err.find(fmt::format("127.0.0.1:{}: unreachable", b.port())) != std::string::npos, h.err);
    }
    BOOST_TEST(count_of(h.err, "within the probe deadline") >= 3u, h.err);

    // Asked again (a postponed build, a new hook): the blackholes are backed
    // off, no connection, no deadline.
    auto [next, again] = decide_once(f.env, join_lines(lines), drv);
    BOOST_TEST_MESSAGE(fmt::format("the next decision: {} ms", again / 1ms));
    BOOST_TEST(next.err.find("# accept\n") != std::string::npos, next.err);
    BOOST_TEST(again < deadline, "took " << again / 1ms << " ms");
    for (auto& b : holes) BOOST_TEST(b.take_connections() == 0, "blackhole " << b.port() << " contacted again");
    BOOST_TEST(count_of(next.err, ": backed off") >= 3u, next.err);
}

// (d) Every machine busy and the daemon can build it itself: decline, the build
// runs locally, nothing on the hosts.
BOOST_AUTO_TEST_CASE(all_busy_and_local_build_possible_declines) {
    auto& f = farm::get();
    f.fresh_state();
    const auto state = f.env.state_dir();
    auto s1 = schedule::try_acquire_slot(state, slot_machine(f.host1.port(), 1));
    auto s2 = schedule::try_acquire_slot(state, slot_machine(f.host2.port(), 1));
    BOOST_TEST_REQUIRE((s1 && s2));
    auto n = nonce();
    auto expr = f.independent_builds(n, {"local"}, 0);
    auto builders = join_lines({machine_line(f.host1, 1), machine_line(f.host2, 1)});
    // --max-jobs 1: the daemon has a free local slot (am-willing).
    auto r = f.env.nix_build_within(build_limit, expr, builders, "--max-jobs 1 --option build-poll-interval 1 -v");
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    auto out = r.paths();
    BOOST_TEST_REQUIRE(out.size() == 1u);
    BOOST_TEST(f.env.valid_locally(out[0]));
    BOOST_TEST(build_record::read(f.local_record(n)).starts() == 1u, "not built locally");
    BOOST_TEST(!fs::exists(farm::record(f.host1, n)));
    BOOST_TEST(!fs::exists(farm::record(f.host2, n)));
    BOOST_TEST(!valid_on_host(f.host1, out[0]));
    BOOST_TEST(!valid_on_host(f.host2, out[0]));
    BOOST_TEST(r.err.find(": busy") != std::string::npos, "the decision log says why: " << r.err);
}

// (e) Two builds sharing a 100 MB input, to the same machine at once: the input
// crosses the link once; the hook that comes second waits for the first one's
// upload, says so, asks again and sends nothing.
// To make "at once" certain rather than likely (on a quiet machine one upload
// takes about as long as the second hook needs to start), the test itself holds
// the machine's upload lock until both hooks have taken their slots and had
// time to reach it, so both queue behind the test and then behind each other.
BOOST_AUTO_TEST_CASE(shared_big_input_crosses_the_link_once) {
    auto& f = farm::get();
    f.fresh_state();
    const auto state = f.env.state_dir();
    const auto target = slot_machine(f.host2.port(), 2);
    auto n = nonce();
    auto big = f.random_file("big-" + n, 100u << 20, n);
    auto expr = f.independent_builds(
        n, {"e1", "e2"}, 1, fmt::format(R"(big = builtins.path {{ path = {}; name = "ferry-big-{}"; }};)", big.string(), n),
        "inherit big;");
    auto barrier = schedule::try_lock_any(schedule::upload_lock_directory(state, target), 1);
    BOOST_TEST_REQUIRE(barrier.has_value());
    auto run = std::async(std::launch::async,
                          [&] { return f.env.nix_build_within(build_limit, expr, machine_line(f.host2, 2), offload_only); });
    bool both = false;
    for (int i = 0; i < 600 && !both; ++i) {
        both = slot_taken(schedule::slot_directory(state, target) / "0") &&
               slot_taken(schedule::slot_directory(state, target) / "1");
        if (!both) std::this_thread::sleep_for(50ms);
    }
    BOOST_TEST(both, "the two builds never held both slots at once");
    std::this_thread::sleep_for(1500ms);  // connect, protect, ask: then they wait for the lock
    barrier.reset();
    auto r = run.get();
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    BOOST_TEST(build_record::read(farm::record(f.host2, n)).starts() == 2u);
    auto missing = missing_lines(r.err);
    BOOST_TEST(missing.size() == 2u, r.err);
    std::size_t senders = 0;
    for (auto& m : missing) senders += m.missing > 0;
    BOOST_TEST(senders == 1u, "the input was sent by " << senders << " hooks");
    auto sent = sent_megabytes(r.err);
    double total = 0;
    for (double mb : sent) total += mb;
    BOOST_TEST_MESSAGE(fmt::format("sent: {} upload(s), {:.1f} MB in all", sent.size(), total));
    BOOST_TEST(sent.size() == 1u);
    BOOST_TEST(total > 100.0);
    BOOST_TEST(total < 110.0);
    // Both waited (for the test's barrier, then one for the other); the second
    // names the first hook's derivation as the holder it waited for.
    const std::string waited = "for another hook's upload to ssh://root@127.0.0.1:" + std::to_string(f.host2.port());
    BOOST_TEST(count_of(r.err, waited) == 2u, r.err);
    static const std::regex other(R"(waited [0-9.]+ s for another hook's upload to \S+ \(pid \d+ /nix/store/\w+-ferry-farm-e[12]-)");
    BOOST_TEST(std::regex_search(r.err, other), "no hook said it waited for the other's upload: " << r.err);
    BOOST_TEST(remote_roots(f.host2).empty());
    check_released(state, target);
    fs::remove(big);
}

// (f) Issue 10 row 10: 8 independent builds at once on 2 machines x 2 slots:
// all succeed, never more than 2 at once on a machine (by the machines' own
// records), the shared input sent once per machine; afterwards the local store
// verifies, no remote GC roots, every slot and upload lock released.
BOOST_AUTO_TEST_CASE(eight_builds_on_two_hosts_with_two_slots) {
    auto& f = farm::get();
    f.fresh_state();
    auto n = nonce();
    auto shared = f.random_file("shared-" + n, 2u << 20, n);
    std::vector<std::string> ids;
    for (int i = 1; i <= 8; ++i) ids.push_back(fmt::format("f{}", i));
    auto expr = f.independent_builds(
        n, ids, 1, fmt::format(R"(shared = builtins.path {{ path = {}; name = "ferry-shared-{}"; }};)", shared.string(), n),
        "inherit shared;");
    auto builders = join_lines({machine_line(f.host1, 2), machine_line(f.host2, 2)});
    auto r = f.env.nix_build_within(build_limit, expr, builders, offload_only);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    auto out = r.paths();
    BOOST_TEST_REQUIRE(out.size() == 8u);
    for (auto& p : out) BOOST_TEST(f.env.valid_locally(p));

    auto rec1 = build_record::read(farm::record(f.host1, n));
    auto rec2 = build_record::read(farm::record(f.host2, n));
    BOOST_TEST_MESSAGE(fmt::format("host1 ran {} (max {} at once), host2 ran {} (max {} at once)", rec1.starts(),
                                   rec1.max_concurrent(), rec2.starts(), rec2.max_concurrent()));
    BOOST_TEST(rec1.starts() + rec2.starts() == 8u);
    BOOST_TEST((rec1.balanced() && rec2.balanced()));
    BOOST_TEST(rec1.max_concurrent() <= 2);
    BOOST_TEST(rec2.max_concurrent() <= 2);
    BOOST_TEST(!fs::exists(f.local_record(n)), "something was built locally");

    // The shared input: per machine that ran builds, exactly one hook sent it.
    std::map<std::string, std::pair<int, int>> per_uri;  // uri -> (hooks, senders)
    for (auto& m : missing_lines(r.err)) {
        ++per_uri[m.uri].first;
        per_uri[m.uri].second += m.missing > 0;
    }
    for (auto* h : {&f.host1, &f.host2}) {
        const auto uri = fmt::format("ssh://root@127.0.0.1:{}", h->port());
        const auto& rec = h == &f.host1 ? rec1 : rec2;
        auto [hooks, senders] = per_uri[uri];
        BOOST_TEST(hooks == static_cast<int>(rec.starts()), uri);
        BOOST_TEST(senders == (rec.starts() > 0 ? 1 : 0), uri << ": the shared input was sent " << senders << " times");
        BOOST_TEST(remote_roots(*h).empty(), uri);
        check_released(f.env.state_dir(), slot_machine(h->port(), 2));
    }
    BOOST_TEST(f.env.local.run("/usr/bin/nix-store --verify --check-contents") == 0);
    fs::remove(shared);
}

BOOST_AUTO_TEST_SUITE_END()
