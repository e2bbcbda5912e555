// The per-machine upload lock: real lock files, two acquirers on one event
// loop, release by destruction, the give-up bound and the waiter's message.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // g++ 12 false positive on coroutine frames

#include <fstream>
#include <iterator>

#include <boost/test/unit_test.hpp>

#include "ferry/schedule/upload_lock.hpp"
#include "schedule/support.hpp"

using namespace ferry::schedule;
using namespace std::chrono_literals;
using schedule_test::temp_dir;

namespace {

machine make_machine() {
    machine m;
    m.name = "builder.example";
    m.port = 2222;
    m.max_jobs = 4;  // the upload lock is one per machine, whatever its slots
    return m;
}

// A state directory, a machine and an event loop per case.
struct lock_fixture {
    temp_dir state;
    machine m = make_machine();
    asio::io_context io;
    upload_lock acquire(std::string what, upload_lock_options o = {}) {
        return schedule_test::run(io, acquire_upload_lock(state.path, m, std::move(what), o));
    }
    bool free_now() { return try_lock_any(upload_lock_directory(state.path, m), 1).has_value(); }
};

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(upload_locks, lock_fixture)

BOOST_AUTO_TEST_CASE(free_lock_is_taken_at_once_and_names_its_holder) {
    auto lock = acquire("/nix/store/x-a.drv");
    BOOST_TEST(lock.acquired());
    BOOST_TEST(!lock.contended());
    BOOST_TEST((lock.waited() == std::chrono::steady_clock::duration::zero()));
    BOOST_TEST(describe_wait(lock, "ssh://b").empty());
    auto file = upload_lock_directory(state.path, m) / "0";
    BOOST_TEST(upload_lock_directory(state.path, m) == state.path / "ferry" / "upload" / "builder.example:2222");
    BOOST_TEST(slurp(file) == fmt::format("pid {} /nix/store/x-a.drv", ::getpid()));
    // Held: nobody else (not even this process, OFD locks) gets it.
    BOOST_TEST(!free_now());
}

BOOST_AUTO_TEST_CASE(second_acquirer_waits_without_blocking_the_loop) {
    auto first = acquire("/nix/store/x-first.drv");
    BOOST_REQUIRE(first.acquired());

    // On the same loop: the holder releases after 300 ms, and a ticker runs every
    // 20 ms. The poll fallback is 10 s, so only the inotify wake-up is prompt.
    asio::steady_timer release_timer(io, 300ms);
    std::chrono::steady_clock::time_point released;
    release_timer.async_wait([&](std::error_code) {
        first.release();
        released = std::chrono::steady_clock::now();
    });
    int ticks = 0;
    bool done = false;
    asio::steady_timer ticker(io);
    std::function<void(std::error_code)> tick = [&](std::error_code) {
        if (done) return;
        ++ticks;
        ticker.expires_after(20ms);
        ticker.async_wait(tick);
    };
    tick({});
    upload_lock_options o;
    o.wait = {10s, 10s};
    auto waiter = [&]() -> asio::awaitable<upload_lock> {
        auto l = co_await acquire_upload_lock(state.path, m, "/nix/store/x-second.drv", o);
        done = true;
        co_return l;
    };
    auto second = schedule_test::run(io, waiter());
    auto got = std::chrono::steady_clock::now();
    BOOST_TEST(second.acquired());
    BOOST_TEST(second.contended());
    BOOST_TEST(second.waited() >= 290ms);
    BOOST_TEST((got - released) < 200ms, "woken " << (got - released) / 1ms << " ms after the release");
    BOOST_TEST(ticks >= 8, "the loop ticked only " << ticks << " times while waiting");
    BOOST_TEST(second.holder().find("x-first.drv") != std::string::npos, second.holder());
    auto text = describe_wait(second, "ssh://root@b:2222");
    BOOST_TEST(text.find("waited 0.") != std::string::npos, text);
    BOOST_TEST(text.find("another hook's upload to ssh://root@b:2222") != std::string::npos, text);
    BOOST_TEST(text.find("x-first.drv") != std::string::npos, text);
    // The new holder's name replaced the old one.
    BOOST_TEST(slurp(upload_lock_directory(state.path, m) / "0").find("x-second.drv") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(destruction_releases_and_other_machines_are_independent) {
    auto other = make_machine();
    other.port = 22;
    {
        auto lock = acquire("a");
        BOOST_REQUIRE(lock.acquired());
        // Another machine's upload lock is free meanwhile.
        auto o = schedule_test::run(io, acquire_upload_lock(state.path, other, "b"));
        BOOST_TEST(o.acquired());
        BOOST_TEST(!o.contended());
        upload_lock moved = std::move(lock);
        BOOST_TEST(moved.acquired());
    }
    auto again = acquire("c");
    BOOST_TEST(again.acquired());
    BOOST_TEST(!again.contended());
}

BOOST_AUTO_TEST_CASE(a_holder_that_never_lets_go_costs_at_most_max_wait) {
    auto holder = acquire("stuck");
    BOOST_REQUIRE(holder.acquired());
    upload_lock_options o;
    o.max_wait = 150ms;
    auto start = std::chrono::steady_clock::now();
    auto waiter = acquire("patient", o);
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(!waiter.acquired());
    BOOST_TEST(waiter.contended());
    BOOST_TEST(took >= 140ms);
    BOOST_TEST(took < 1s, "took " << took / 1ms << " ms");
    BOOST_TEST(describe_wait(waiter, "ssh://b").find("gave up after") != std::string::npos);
    // The holder still has it.
    BOOST_TEST(holder.acquired());
    BOOST_TEST(!free_now());
}

BOOST_AUTO_TEST_SUITE_END()
