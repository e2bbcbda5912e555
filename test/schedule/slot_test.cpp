// Slot files: real files, real OFD and classic fcntl locks, a real forked
// process standing in for guix offload.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // g++ 12 false positive on coroutine frames

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include "ferry/schedule/slot.hpp"
#include "ferry/util/error.hpp"
#include "schedule/support.hpp"

using namespace ferry::schedule;
using namespace std::chrono_literals;
using schedule_test::temp_dir;

namespace {

machine make_machine(unsigned max_jobs) {
    machine m;
    m.name = "builder.example";
    m.port = 2222;
    m.max_jobs = max_jobs;
    return m;
}

// A child process holding a classic (process-associated) fcntl write lock on
// `file`, as guix offload's fcntl-flock does, until killed.
struct fcntl_holder {
    pid_t pid = -1;
    explicit fcntl_holder(const std::filesystem::path& file) {
        int ready[2];
        BOOST_REQUIRE(::pipe(ready) == 0);
        pid = ::fork();
        BOOST_REQUIRE(pid >= 0);
        if (pid == 0) {
            int fd = ::open(file.c_str(), O_WRONLY | O_CREAT, 0600);
            struct flock lk {};
            lk.l_type = F_WRLCK;
            lk.l_whence = SEEK_SET;
            char ok = (fd >= 0 && ::fcntl(fd, F_SETLK, &lk) == 0) ? '1' : '0';
            (void)!::write(ready[1], &ok, 1);
            for (;;) ::pause();
        }
        ::close(ready[1]);
        char ok = 0;
        BOOST_REQUIRE(::read(ready[0], &ok, 1) == 1);
        ::close(ready[0]);
        BOOST_REQUIRE(ok == '1');
    }
    ~fcntl_holder() { stop(); }
    void stop() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            pid = -1;
        }
    }
};

// In a forked child, try a classic non-blocking fcntl lock on `file` (what
// guix offload does): true when it got it.
bool child_can_fcntl_lock(const std::filesystem::path& file) {
    pid_t pid = ::fork();
    if (pid == 0) {
        int fd = ::open(file.c_str(), O_WRONLY | O_CREAT, 0600);
        struct flock lk {};
        lk.l_type = F_WRLCK;
        lk.l_whence = SEEK_SET;
        ::_exit(fd >= 0 && ::fcntl(fd, F_SETLK, &lk) == 0 ? 0 : 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(slots)

BOOST_AUTO_TEST_CASE(layout_is_guix_offloads) {
    temp_dir state;
    auto m = make_machine(1);
    BOOST_TEST(slot_directory(state.path, m) == state.path / "offload" / "builder.example:2222");
    auto s = try_acquire_slot(state.path, m);
    BOOST_REQUIRE(s);
    BOOST_TEST(s->path() == state.path / "offload" / "builder.example:2222" / "0");
    BOOST_TEST(std::filesystem::exists(s->path()));
    m.name = "a/b";
    BOOST_TEST(machine_key(m) == "a_b:2222");
}

BOOST_AUTO_TEST_CASE(same_process_holders_get_distinct_slots_and_a_third_waits) {
    temp_dir state;
    auto m = make_machine(2);
    auto first = try_acquire_slot(state.path, m);
    auto second = try_acquire_slot(state.path, m);
    BOOST_REQUIRE(first);
    BOOST_REQUIRE(second);
    BOOST_TEST(first->index() == 0u);
    BOOST_TEST(second->index() == 1u);
    BOOST_TEST(!try_acquire_slot(state.path, m).has_value());

    // The third waits; slot 1 is released 300 ms later by a timer on the same
    // event loop (so the wait must not block the loop). The poll fallback is set
    // to 10 s so only the inotify wake-up can make it prompt.
    asio::io_context io;
    asio::steady_timer release_timer(io, 300ms);
    std::chrono::steady_clock::time_point released;
    release_timer.async_wait([&](std::error_code) {
        second->release();
        released = std::chrono::steady_clock::now();
    });
    auto start = std::chrono::steady_clock::now();
    slot third = schedule_test::run(io, acquire_slot(state.path, m, {std::chrono::seconds(10), std::chrono::seconds(10)}));
    auto got = std::chrono::steady_clock::now();
    BOOST_TEST(third.held());
    BOOST_TEST(third.index() == 1u);
    BOOST_TEST((got - start) >= 290ms);
    BOOST_TEST((got - released) < 200ms, "woken " << (got - released) / 1ms << " ms after the release");

    // RAII: destroying the slot frees it.
    { slot moved = std::move(third); }
    auto again = try_acquire_slot(state.path, m);
    BOOST_REQUIRE(again);
    BOOST_TEST(again->index() == 1u);
}

BOOST_AUTO_TEST_CASE(waiting_falls_back_to_polling_when_nothing_is_closed) {
    // An unlock without a close gives inotify nothing: the poll timer must find it.
    temp_dir state;
    auto m = make_machine(1);
    auto dir = slot_directory(state.path, m);
    std::filesystem::create_directories(dir);
    int fd = ::open((dir / "0").c_str(), O_RDWR | O_CREAT, 0600);
    BOOST_REQUIRE(fd >= 0);
    struct flock lk {};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    BOOST_REQUIRE(::fcntl(fd, F_OFD_SETLK, &lk) == 0);
    asio::io_context io;
    asio::steady_timer t(io, 150ms);
    t.async_wait([&](std::error_code) {
        struct flock un {};
        un.l_type = F_UNLCK;
        un.l_whence = SEEK_SET;
        ::fcntl(fd, F_OFD_SETLK, &un);
    });
    auto start = std::chrono::steady_clock::now();
    slot s = schedule_test::run(io, acquire_slot(state.path, m, {20ms, 100ms}));
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(s.held());
    BOOST_TEST(took >= 140ms);
    BOOST_TEST(took < 700ms, "took " << took / 1ms << " ms");
    ::close(fd);
}

BOOST_AUTO_TEST_CASE(classic_fcntl_lock_of_another_process_is_respected) {
    temp_dir state;
    auto m = make_machine(2);
    auto dir = slot_directory(state.path, m);
    std::filesystem::create_directories(dir);
    fcntl_holder guix(dir / "0");  // "guix offload" holds slot 0

    auto s = try_acquire_slot(state.path, m);
    BOOST_REQUIRE(s);
    BOOST_TEST(s->index() == 1u);
    BOOST_TEST(!try_acquire_slot(state.path, m).has_value());

    // And the other way round: guix offload sees ferry's OFD lock on slot 1.
    BOOST_TEST(!child_can_fcntl_lock(dir / "1"));

    guix.stop();  // its process exits: slot 0 is free again
    auto freed = try_acquire_slot(state.path, m);
    BOOST_REQUIRE(freed);
    BOOST_TEST(freed->index() == 0u);
}

BOOST_AUTO_TEST_CASE(closing_another_descriptor_does_not_drop_the_lock) {
    // The trap of classic fcntl locks: any close() of the file by the process
    // drops them. OFD locks belong to the open file description.
    temp_dir state;
    auto m = make_machine(1);
    auto s = try_acquire_slot(state.path, m);
    BOOST_REQUIRE(s);
    int other = ::open(s->path().c_str(), O_RDWR);
    BOOST_REQUIRE(other >= 0);
    ::close(other);
    BOOST_TEST(!child_can_fcntl_lock(s->path()));
    BOOST_TEST(!try_acquire_slot(state.path, m).has_value());
    s->release();
    BOOST_TEST(child_can_fcntl_lock(s->path()));
}

BOOST_AUTO_TEST_CASE(unwritable_state_directory_is_a_failure_naming_the_path) {
    auto m = make_machine(1);
    try {
        (void)try_acquire_slot("/proc/ferry-no-such-dir", m);
        BOOST_FAIL("expected a failure");
    } catch (const ferry::failure& f) {
        BOOST_TEST(std::string(f.what()).find("/proc/ferry-no-such-dir") != std::string::npos);
    }
    m.max_jobs = 0;
    temp_dir state;
    BOOST_CHECK_THROW((void)try_acquire_slot(state.path, m), ferry::failure);
}

BOOST_AUTO_TEST_SUITE_END()
