// Choosing a machine: slots first, then one concurrent probe, scoring,
// backoff and the probe cache working together (real slot files, fake remote).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // g++ 12 false positive on coroutine frames

#include <boost/test/unit_test.hpp>

#include "ferry/schedule/select.hpp"
#include "schedule/support.hpp"

using namespace ferry::schedule;
using namespace std::chrono_literals;
using schedule_test::fake_remote;
using schedule_test::probe_output;
using schedule_test::temp_dir;

namespace {

machine make(std::string name, double speed = 1.0, unsigned max_jobs = 1) {
    machine m;
    m.name = std::move(name);
    m.speed = speed;
    m.max_jobs = max_jobs;
    return m;
}

struct fixture {
    temp_dir state;
    fake_remote remote;
    std::chrono::system_clock::time_point now = std::chrono::system_clock::time_point(1'700'000'000s);
    select_options options() {
        select_options o;
        o.state_dir = state.path;
        o.probe.deadline = 500ms;
        o.clock = [this] { return now; };
        return o;
    }
    selection choose(std::vector<machine> ms, select_options o) {
        asio::io_context io;
        return schedule_test::run(io, select_machine(std::move(ms), remote.fn(), std::move(o)));
    }
    selection choose(std::vector<machine> ms) { return choose(std::move(ms), options()); }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(selection_suite, fixture)

BOOST_AUTO_TEST_CASE(score_is_speed_over_one_plus_load_per_core) {
    probe_result r;
    r.cores = 4;
    r.load1 = 2.0;
    BOOST_TEST(score(make("a", 3.0), r) == 2.0);
    r.load1 = 0;
    BOOST_TEST(score(make("a", 3.0), r) == 3.0);
}

BOOST_AUTO_TEST_CASE(judge_applies_threshold_and_free_space) {
    probe_result r;
    r.cores = 4;
    r.load1 = 3.0;  // 0.75 per core
    r.free_bytes = 200ull << 20;
    auto m = make("a");
    BOOST_TEST((judge(m, r, 100ull << 20) == machine_status::usable));
    r.load1 = 3.2;  // 0.8: guix skips at load >= threshold
    BOOST_TEST((judge(m, r, 100ull << 20) == machine_status::overloaded));
    r.load1 = 40;  // capped at 1.0, still overloaded
    BOOST_TEST((judge(m, r, 100ull << 20) == machine_status::overloaded));
    m.overload_threshold.reset();  // disabled
    BOOST_TEST((judge(m, r, 100ull << 20) == machine_status::usable));
    r.free_bytes = (100ull << 20) - 1;
    BOOST_TEST((judge(m, r, 100ull << 20) == machine_status::low_disk));
    r.free_bytes.reset();  // unknown does not block
    BOOST_TEST((judge(m, r, 100ull << 20) == machine_status::usable));
}

BOOST_AUTO_TEST_CASE(best_score_wins_others_are_released_and_skips_are_reported) {
    remote.scripts["loaded"] = {10ms, false, {}, probe_output(4, 2.0, 1 << 30)};    // 2/(1.5)=1.33
    remote.scripts["idle"] = {30ms, false, {}, probe_output(4, 0.4, 1 << 30)};      // 1.5/1.1=1.36
    remote.scripts["overload"] = {5ms, false, {}, probe_output(2, 1.9, 1 << 30)};   // 0.95/core
    remote.scripts["full"] = {5ms, false, {}, probe_output(2, 0.0, 50 * 1024)};     // 50 MiB free
    std::vector<machine> ms{make("loaded", 2.0), make("idle", 1.5), make("overload", 9.0), make("full", 9.0)};
    auto sel = choose(ms);
    BOOST_REQUIRE(sel.chosen);
    BOOST_TEST(*sel.chosen == 1u);
    BOOST_TEST(sel.held.held());
    BOOST_TEST((sel.reports[0].status == machine_status::usable));
    BOOST_TEST((sel.reports[1].status == machine_status::chosen));
    BOOST_TEST((sel.reports[2].status == machine_status::overloaded));
    BOOST_TEST((sel.reports[3].status == machine_status::low_disk));
    // The chosen slot is held (max_jobs 1), every other one was released.
    BOOST_TEST(!try_acquire_slot(state.path, ms[1]).has_value());
    for (std::size_t i : {0u, 2u, 3u}) BOOST_TEST(try_acquire_slot(state.path, ms[i]).has_value());
    auto f = facts_for(daemon_kind::nix, 4, sel, false);
    BOOST_TEST((decide(f) == hook_reply::accept));
}

BOOST_AUTO_TEST_CASE(busy_machines_are_not_probed) {
    remote.scripts["a"] = {5ms, false, {}, probe_output(4, 0, 1 << 30)};
    auto m = make("a");
    auto taken = try_acquire_slot(state.path, m);
    BOOST_REQUIRE(taken);
    auto sel = choose({m});
    BOOST_TEST(!sel.chosen.has_value());
    BOOST_TEST((sel.reports[0].status == machine_status::busy));
    BOOST_TEST(remote.calls["a"] == 0);
    BOOST_TEST((decide(facts_for(daemon_kind::nix, 1, sel, true)) == hook_reply::decline));
    BOOST_TEST((decide(facts_for(daemon_kind::nix, 1, sel, false)) == hook_reply::postpone));
    BOOST_TEST((decide(facts_for(daemon_kind::guix, 1, sel, true)) == hook_reply::postpone));
}

BOOST_AUTO_TEST_CASE(stops_as_soon_as_no_pending_machine_can_do_better) {
    // "fast" (speed 4, idle) answers at 20 ms with score 4; "slow" has speed 2 so
    // it can never beat that: no need to wait its 3 s.
    remote.scripts["fast"] = {20ms, false, {}, probe_output(4, 0.0, 1 << 30)};
    remote.scripts["slow"] = {3s, false, {}, probe_output(4, 0.0, 1 << 30)};
    auto o = options();
    o.probe.deadline = 5s;
    auto start = std::chrono::steady_clock::now();
    auto sel = choose({make("slow", 2.0), make("fast", 4.0)}, o);
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(took < 500ms, "took " << took / 1ms << " ms");
    BOOST_REQUIRE(sel.chosen);
    BOOST_TEST(*sel.chosen == 1u);
    BOOST_TEST((sel.reports[0].status == machine_status::not_probed));
    // A cancelled probe is not a failure: no backoff for "slow".
    BOOST_TEST(!backoff_store(state.path, o.clock).read(make("slow")).has_value());
}

BOOST_AUTO_TEST_CASE(waits_when_a_pending_machine_could_still_win) {
    // "fast" is loaded (score 4/2 = 2); "other" (speed 3) could score up to 3: wait for it.
    remote.scripts["fast"] = {10ms, false, {}, probe_output(2, 2.0, 1 << 30)};
    remote.scripts["other"] = {150ms, false, {}, probe_output(2, 0.0, 1 << 30)};
    auto o = options();
    o.probe.deadline = 2s;
    auto a = make("fast", 4.0);
    auto b = make("other", 3.0);
    a.overload_threshold.reset();
    auto sel = choose({a, b}, o);
    BOOST_REQUIRE(sel.chosen);
    BOOST_TEST(*sel.chosen == 1u);
}

BOOST_AUTO_TEST_CASE(unreachable_machines_back_off_and_are_then_skipped_without_connecting) {
    remote.scripts["dead"] = {0ms, true, {}, ""};
    remote.scripts["ok"] = {10ms, false, {}, probe_output(4, 3.9, 1 << 30)};  // overloaded
    auto o = options();
    o.probe.deadline = 300ms;
    o.cache_ttl = 0ms;  // probe every time in this test
    std::vector<machine> ms{make("dead", 5.0), make("ok")};

    auto start = std::chrono::steady_clock::now();
    auto sel = choose(ms, o);
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(took < 600ms);
    BOOST_TEST(!sel.chosen.has_value());
    BOOST_TEST((sel.reports[0].status == machine_status::unreachable));
    BOOST_TEST(sel.reports[0].message.find("deadline") != std::string::npos);
    BOOST_TEST((sel.reports[1].status == machine_status::overloaded));
    BOOST_TEST(remote.calls["dead"] == 1);
    // Nix: one candidate unreachable, one overloaded -> postpone when it cannot build locally.
    BOOST_TEST((decide(facts_for(daemon_kind::nix, 2, sel, false)) == hook_reply::postpone));

    now += 30s;  // within the 60 s backoff: no connection attempt, no deadline spent
    start = std::chrono::steady_clock::now();
    sel = choose(ms, o);
    BOOST_TEST((std::chrono::steady_clock::now() - start) < 200ms);
    BOOST_TEST((sel.reports[0].status == machine_status::backed_off));
    BOOST_TEST(remote.calls["dead"] == 1);

    now += 31s;  // its time has come; it answers now, which resets the backoff
    remote.scripts["dead"] = {10ms, false, {}, probe_output(4, 0.0, 1 << 30)};
    sel = choose(ms, o);
    BOOST_TEST(remote.calls["dead"] == 2);
    BOOST_REQUIRE(sel.chosen);
    BOOST_TEST(*sel.chosen == 0u);
    BOOST_TEST(!backoff_store(state.path, o.clock).read(ms[0]).has_value());
}

BOOST_AUTO_TEST_CASE(every_candidate_down_names_each_host_and_its_error) {
    // Guix, every candidate down: decline when the daemon can build it, else
    // postpone with a message naming each host and why.
    remote.scripts["dead"] = {0ms, true, {}, ""};
    remote.scripts["refused"] = {0ms, false, std::make_error_code(std::errc::connection_refused), ""};
    auto o = options();
    o.probe.deadline = 200ms;
    std::vector<machine> ms{make("dead"), make("refused")};
    auto sel = choose(ms, o);
    BOOST_TEST(!sel.chosen.has_value());
    BOOST_TEST(sel.unreachable() == 2u);
    BOOST_TEST((decide(facts_for(daemon_kind::guix, 2, sel, true)) == hook_reply::decline));
    BOOST_TEST((decide(facts_for(daemon_kind::guix, 2, sel, false)) == hook_reply::postpone));
    auto text = unreachable_summary(sel, {"ssh://dead", "ssh://refused"});
    BOOST_TEST(text.find("ssh://dead: probing dead: no answer within the probe deadline") != std::string::npos, text);
    BOOST_TEST(text.find("ssh://refused: probing refused: connect: ") != std::string::npos, text);

    // Asked again within the backoff: both skipped without a connection, still named.
    now += 10s;
    sel = choose(ms, o);
    BOOST_TEST(remote.calls["dead"] == 1);
    BOOST_TEST((decide(facts_for(daemon_kind::guix, 2, sel, false)) == hook_reply::postpone));
    text = unreachable_summary(sel, {"ssh://dead", "ssh://refused"});
    BOOST_TEST(text.find("ssh://dead: probing dead: no answer") != std::string::npos, text);
    BOOST_TEST(text.find("(backed off)") != std::string::npos, text);
    BOOST_TEST(unreachable_summary(selection{}, {}).empty());
}

BOOST_AUTO_TEST_CASE(cached_results_spare_the_network) {
    remote.scripts["a"] = {10ms, false, {}, probe_output(4, 0.0, 1 << 30)};
    remote.scripts["b"] = {10ms, false, {}, probe_output(4, 1.0, 1 << 30)};
    std::vector<machine> ms{make("a"), make("b")};
    auto sel = choose(ms);
    BOOST_REQUIRE(sel.chosen);
    sel = selection{};  // release
    BOOST_TEST(remote.calls["a"] == 1);
    BOOST_TEST(remote.calls["b"] == 1);

    now += 2s;  // a postponed build asks again: the cache answers
    sel = choose(ms);
    BOOST_REQUIRE(sel.chosen);
    BOOST_TEST(*sel.chosen == 0u);
    BOOST_TEST(sel.reports[0].from_cache);
    BOOST_TEST(remote.calls["a"] == 1);
    BOOST_TEST(remote.calls["b"] == 1);
    sel = selection{};

    now += 5s;  // stale: probe again
    sel = choose(ms);
    BOOST_TEST(remote.calls["a"] == 2);
}

BOOST_AUTO_TEST_CASE(no_candidates) {
    auto sel = choose({});
    BOOST_TEST(!sel.chosen.has_value());
    BOOST_TEST((decide(facts_for(daemon_kind::nix, 3, sel, false)) == hook_reply::decline));
}

BOOST_AUTO_TEST_SUITE_END()
