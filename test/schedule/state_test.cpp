// Backoff and probe cache files, with an injected wall clock.
#include <fstream>

#include <boost/test/unit_test.hpp>

#include "ferry/schedule/state.hpp"
#include "schedule/support.hpp"

using namespace ferry::schedule;
using namespace std::chrono_literals;
using schedule_test::temp_dir;

namespace {

struct fake_clock {
    std::chrono::system_clock::time_point now = std::chrono::system_clock::time_point(1'700'000'000s);
    wall_clock fn() {
        return [this] { return now; };
    }
};

machine named(std::string name) {
    machine m;
    m.name = std::move(name);
    return m;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(backoff)

BOOST_AUTO_TEST_CASE(delays_grow_by_three_and_are_capped) {
    BOOST_TEST(backoff_delay(0).count() == 0);
    BOOST_TEST(backoff_delay(1).count() == 60);
    BOOST_TEST(backoff_delay(2).count() == 180);
    BOOST_TEST(backoff_delay(3).count() == 540);
    BOOST_TEST(backoff_delay(4).count() == 1620);
    BOOST_TEST(backoff_delay(5).count() == 3600);   // 4860 capped
    BOOST_TEST(backoff_delay(1000).count() == 3600);  // no overflow
    backoff_policy p{10s, 2, 35s};
    BOOST_TEST(backoff_delay(3, p).count() == 35);
}

BOOST_AUTO_TEST_CASE(failures_back_off_until_their_time_and_success_resets) {
    temp_dir state;
    fake_clock clock;
    backoff_store store(state.path, clock.fn());
    auto m = named("b1");
    auto other = named("b2");
    BOOST_TEST(!store.backed_off(m));

    auto r = store.record_failure(m, "connect: refused");
    BOOST_TEST(r.failures == 1u);
    BOOST_TEST(store.backed_off(m));
    BOOST_TEST(!store.backed_off(other));
    clock.now += 59s;
    BOOST_TEST(store.backed_off(m));
    clock.now += 1s;
    BOOST_TEST(!store.backed_off(m));  // its time has come: try again

    r = store.record_failure(m, "timed out");  // the retry failed too
    BOOST_TEST(r.failures == 2u);
    clock.now += 179s;
    BOOST_TEST(store.backed_off(m));
    clock.now += 1s;
    BOOST_TEST(!store.backed_off(m));
    BOOST_TEST(store.record_failure(m, "x").failures == 3u);
    BOOST_TEST((store.read(m)->retry_at == clock.now + 540s));
    BOOST_TEST(store.read(m)->last_error == "x");

    // Another process (a new store object on the same directory) sees it.
    backoff_store second(state.path, clock.fn());
    BOOST_TEST(second.backed_off(m));

    store.record_success(m);
    BOOST_TEST(!second.backed_off(m));
    BOOST_TEST(store.record_failure(m, "again").failures == 1u);
}

BOOST_AUTO_TEST_CASE(a_damaged_file_is_no_record) {
    temp_dir state;
    fake_clock clock;
    backoff_store store(state.path, clock.fn());
    auto m = named("b1");
    store.record_failure(m, "x");
    std::ofstream(state.path / "ferry" / "backoff" / "b1:22") << "{not json";
    BOOST_TEST(!store.backed_off(m));
    BOOST_TEST(store.record_failure(m, "y").failures == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(cache)

BOOST_AUTO_TEST_CASE(results_are_fresh_for_the_ttl_only) {
    temp_dir state;
    fake_clock clock;
    probe_cache cache(state.path, clock.fn(), 5s);
    auto m = named("b1");
    BOOST_TEST(!cache.fresh(m).has_value());

    probe_result r;
    r.os = "Darwin";
    r.cores = 8;
    r.load1 = 1.5;
    r.load5 = 1.25;
    r.load15 = 1.0;
    r.free_bytes = 123456789012ull;
    r.has_nix_store = true;
    r.has_xz = true;
    cache.store(m, r);
    BOOST_TEST(std::filesystem::exists(state.path / "ferry" / "probe" / "b1:22"));
    auto got = cache.fresh(m);
    BOOST_REQUIRE(got);
    BOOST_TEST((*got == r));

    clock.now += 4999ms;
    BOOST_TEST(cache.fresh(m).has_value());
    clock.now += 1ms;
    BOOST_TEST(!cache.fresh(m).has_value());

    clock.now -= 1h;  // a record from the future (clock stepped back) is not trusted
    BOOST_TEST(!cache.fresh(m).has_value());

    r.free_bytes.reset();
    cache.store(m, r);
    BOOST_TEST(!cache.fresh(m)->free_bytes.has_value());

    probe_cache off(state.path, clock.fn(), 0ms);
    BOOST_TEST(!off.fresh(m).has_value());
}

BOOST_AUTO_TEST_CASE(link_speeds_are_kept_for_minutes_per_machine) {
    temp_dir state;
    fake_clock clock;
    link_cache links(state.path, clock.fn(), 10min);
    auto a = named("a"), b = named("b");
    BOOST_TEST(!links.fresh(a).has_value());
    links.store(a, 11.7e6);
    BOOST_TEST(std::filesystem::exists(state.path / "ferry" / "link" / "a:22"));
    BOOST_TEST(links.fresh(a).value_or(0) == 11.7e6);
    BOOST_TEST(!links.fresh(b).has_value());  // per machine
    clock.now += 10min - 1ms;
    BOOST_TEST(links.fresh(a).has_value());
    clock.now += 1ms;
    BOOST_TEST(!links.fresh(a).has_value());
    clock.now -= 1h;  // from the future: not trusted
    BOOST_TEST(!links.fresh(a).has_value());
    std::ofstream(state.path / "ferry" / "link" / "a:22") << "{\"time_ms\": 1, \"bytes_per_s\": \"fast\"}";
    BOOST_TEST(!links.fresh(a).has_value());  // damaged: no record
}

BOOST_AUTO_TEST_CASE(a_slot_wait_in_vain_is_remembered_for_the_window) {
    temp_dir state;
    fake_clock clock;
    slot_wait_memory memory(state.path, clock.fn(), 10s);
    BOOST_TEST(!memory.recently_missed());
    memory.record_miss();
    BOOST_TEST(std::filesystem::exists(state.path / "ferry" / "slot-wait-missed"));
    // Another hook process (another object on the same directory) sees it.
    BOOST_TEST(slot_wait_memory(state.path, clock.fn(), 10s).recently_missed());
    clock.now += 10s - 1ms;
    BOOST_TEST(memory.recently_missed());
    clock.now += 1ms;
    BOOST_TEST(!memory.recently_missed());
    clock.now -= 1h;  // from the future: not trusted
    BOOST_TEST(!memory.recently_missed());
    std::ofstream(state.path / "ferry" / "slot-wait-missed") << "{\"time_ms\": \"soon\"}";
    BOOST_TEST(!memory.recently_missed());  // damaged: no record
}

BOOST_AUTO_TEST_SUITE_END()
