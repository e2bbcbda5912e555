#include "ferry/hosts/host_group.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>

#include "ferry/util/error.hpp"

extern char** environ;

using namespace ferry::hosts;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

int sh(const std::string& command, std::string* out = nullptr) {
    FILE* p = ::popen((command + " 2>&1").c_str(), "r");
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        if (out) out->append(buf, n);
    int status = ::pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0 && slurp(fmt::format("/proc/{}/stat", pid)).find(") Z") == std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_CASE(group_writes_client_files_that_reach_every_host) {
    auto group = host_group::start(temporary_directory("ferry-group-test"), 2);
    BOOST_TEST_REQUIRE(group.hosts().size() == 2u);
    std::string machines = slurp(group.machines_file());
    std::string known = slurp(group.known_hosts());
    for (const auto& h : group.hosts()) {
        BOOST_TEST(machines.find(h.nix_machine_line() + "\n") != std::string::npos);
        BOOST_TEST(known.find(fmt::format("[127.0.0.1]:{} {}\n", h.port(), h.host_key_line())) != std::string::npos);
        std::string out;
        BOOST_TEST(sh(fmt::format("/usr/bin/ssh -F {} -o StrictHostKeyChecking=yes {} echo {}", group.ssh_config().string(),
                                  h.name(), h.name()),
                      &out) == 0, out);
        BOOST_TEST(out == h.name() + "\n");
    }
    BOOST_TEST(group.hosts()[0].name() == "host1");
    BOOST_TEST(group.hosts()[1].name() == "host2");
}

BOOST_AUTO_TEST_CASE(stop_recorded_hosts_kills_by_pid_and_removes) {
    fs::path dir = temporary_directory("ferry-group-test");
    auto group = host_group::start(dir, 2);
    std::vector<pid_t> listeners;
    for (const auto& h : group.hosts()) listeners.push_back(h.sshd_pid());
    auto actions = stop_recorded_hosts(dir, 1000);
    for (const auto& a : actions) BOOST_TEST_MESSAGE(a);
    BOOST_TEST(actions.size() == 3u);  // two hosts killed, directory removed
    for (pid_t pid : listeners) BOOST_TEST(!alive(pid));
    BOOST_TEST(!fs::exists(dir));
    BOOST_CHECK_THROW(stop_recorded_hosts(dir), ferry::failure);
}

BOOST_AUTO_TEST_CASE(stop_recorded_hosts_finds_sessions_orphaned_by_a_killed_owner) {
    fs::path dir = temporary_directory("ferry-group-test");
    auto group = host_group::start(dir, 1);
    auto& host = group.hosts()[0];
    std::string config = group.ssh_config().string();
    const char* argv[] = {"/usr/bin/ssh", "-q", "-F", config.c_str(), "host1", "sleep 1002", nullptr};
    pid_t client = -1;
    posix_spawn_file_actions_t quiet;
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);
    int rc = ::posix_spawn(&client, argv[0], &quiet, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&quiet);
    BOOST_TEST_REQUIRE(rc == 0);
    pid_t sleeper = -1;
    for (int i = 0; i < 2000 && sleeper < 0; ++i) {
        for (pid_t pid : host.session_pids())
            if (slurp(fmt::format("/proc/{}/comm", pid)) == "sleep\n") sleeper = pid;
        ::usleep(5000);
    }
    BOOST_TEST_REQUIRE(sleeper > 0);
    // What a SIGKILLed `ferry hosts up` leaves: listener and reaper die (PDEATHSIG),
    // the session lives on, reparented to init.
    std::string pids = slurp(dir / "host1" / "pids");
    int reaper = 0, sshd = 0;
    BOOST_TEST_REQUIRE(std::sscanf(pids.c_str(), "reaper %d\nsshd %d", &reaper, &sshd) == 2);
    ::kill(sshd, SIGKILL);
    ::kill(reaper, SIGKILL);
    ::usleep(50000);
    BOOST_TEST_REQUIRE(alive(sleeper));

    auto actions = stop_recorded_hosts(dir, 1000);
    for (const auto& a : actions) BOOST_TEST_MESSAGE(a);
    BOOST_TEST(!alive(sleeper));
    BOOST_TEST(!fs::exists(dir));
    int status = 0;
    ::waitpid(client, &status, 0);  // the client saw its session cut
}
