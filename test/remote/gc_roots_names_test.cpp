// Names of remote GC root directories: who made them, whether that owner still
// runs, and the sweep of dead owners' directories by create() (gc_roots.hpp).
// The first cases are pure; the last uses the executable's test host
// (fixture.hpp, global fixture in remote_test.cpp).
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>

#include "fixture.hpp"
#include "ferry/remote/gc_roots.hpp"

using namespace ferry;
using namespace ferry_test;
using remote::root_owner;

namespace {

// A pid that was ours and is gone (forked, exited, reaped).
pid_t dead_pid() {
    pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    BOOST_TEST_REQUIRE(child > 0);
    ::waitpid(child, nullptr, 0);
    return child;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gc_root_names)

BOOST_AUTO_TEST_CASE(own_name_round_trips_and_the_owner_is_alive) {
    const auto& self = root_owner::self();
    BOOST_TEST_REQUIRE(self.boot.size() == 32u, "no boot id from /proc");
    BOOST_TEST(self.pid == ::getpid());
    BOOST_TEST(self.alive());
    auto name = remote::root_directory_name(self, "0123abcd");
    BOOST_TEST(name.starts_with("ferry-" + self.boot + "-"));
    auto back = remote::parse_root_directory_name(name);
    BOOST_TEST_REQUIRE(back.has_value(), name);
    BOOST_TEST(back->boot == self.boot);
    BOOST_TEST(back->pid_namespace == self.pid_namespace);
    BOOST_TEST(back->pid == self.pid);
    BOOST_TEST(back->start_time == self.start_time);
    BOOST_TEST(self.same_pid_space(*back));
}

BOOST_AUTO_TEST_CASE(dead_or_reused_pids_are_not_alive) {
    root_owner dead = root_owner::self();
    dead.pid = dead_pid();  // reaped: no such process now
    BOOST_TEST(!dead.alive());
    root_owner reused = root_owner::self();
    reused.start_time += 1;  // our pid, another start: a reused pid
    BOOST_TEST(!reused.alive());
}

BOOST_AUTO_TEST_CASE(other_names_do_not_parse) {
    const std::string boot(32, 'a');
    BOOST_TEST(remote::parse_root_directory_name("ferry-" + boot + "-4026531836-123-456-0a1b").has_value());
    for (std::string bad : {std::string("ferry-0123456789abcdef"),  // the old form: never judged
                            "ferry-" + boot + "-4026531836-123-456",
                            "ferry-" + boot + "-4026531836-123-456-0a1b-x",
                            "ferry-" + boot + "-40265x1836-123-456-0a1b",
                            "ferry-" + boot + "-4026531836-0-456-0a1b",
                            "ferry-" + boot + "-4026531836--456-0a1b",
                            "ferry-" + std::string(31, 'a') + "-1-2-3-0a",
                            "ferry-" + boot + "-1-2-3-0A",
                            "ferry-" + boot + "-1-99999999999999999999999-3-0a",
                            "nix-" + boot + "-1-2-3-0a",
                            std::string("")})
        BOOST_TEST(!remote::parse_root_directory_name(bad).has_value(), bad);
    // Another boot or pid namespace is never the same pid space.
    auto other = *remote::parse_root_directory_name("ferry-" + boot + "-4026531836-123-456-0a1b");
    BOOST_TEST(!root_owner::self().same_pid_space(other));
    root_owner empty;
    BOOST_TEST(!empty.same_pid_space(empty));
}

// A directory of a dead owner of this pid space goes; a live owner's, another
// boot's and an old-style one stay.
BOOST_AUTO_TEST_CASE(create_sweeps_only_dead_owners_of_this_pid_space) {
    root_owner dead = root_owner::self();
    dead.pid = dead_pid();
    const std::string base = "/nix/var/nix/gcroots/";
    const std::string dead_dir = remote::root_directory_name(dead, "dead0001");
    const std::string live_dir = remote::root_directory_name(root_owner::self(), "live0001");
    const std::string foreign_dir = fmt::format("ferry-{}-1-{}-1-f0f0", std::string(32, 'e'), dead.pid);
    const std::string old_dir = "ferry-00112233aabbccdd";
    for (const auto& d : {dead_dir, live_dir, foreign_dir, old_dir}) host_run(fmt::format("mkdir -p '{}{}'", base, d));
    host_run(fmt::format("ln -s /nix/store/00000000000000000000000000000000-x '{}{}/x'", base, dead_dir));
    std::size_t swept = 0;
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        auto roots = co_await remote::remote_roots::create(s, remote::nix_remote_options());
        swept = roots.swept();
        co_await roots.remove();
    });
    BOOST_TEST(swept == 1u);
    int status = -1;
    host_run(fmt::format("test -e '{}{}'", base, dead_dir), &status);
    BOOST_TEST(status == 1, "the dead owner's roots were not swept");
    for (const auto& d : {live_dir, foreign_dir, old_dir}) {
        host_run(fmt::format("test -d '{}{}'", base, d), &status);
        BOOST_TEST(status == 0, d << " was swept but its owner is not known dead");
        host_run(fmt::format("rm -rf '{}{}'", base, d));
    }
}

BOOST_AUTO_TEST_SUITE_END()
