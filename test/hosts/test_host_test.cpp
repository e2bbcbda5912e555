// Test hosts are real sshd build machines: every assertion here goes through
// OpenSSH's client or a real Nix 2.8 store, and could fail.
#include "ferry/hosts/test_host.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>

#include "ferry/util/error.hpp"

extern char** environ;

using namespace ferry::hosts;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Runs a shell command in the test's own (the machine's) mount namespace.
int sh(const std::string& command, std::string* out = nullptr) {
    std::string full = command + " 2>&1";
    FILE* p = ::popen(full.c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        if (out) out->append(buf, n);
    int status = ::pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ssh(const test_host& h, const std::string& remote) {
    return fmt::format("/usr/bin/ssh -F {} -o StrictHostKeyChecking=yes {} '{}'", h.ssh_config().string(), h.name(),
                       remote);
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

// Adds a file with unique content to the host's store over ssh; returns the store path.
std::string add_over_ssh(const test_host& h, const std::string& content) {
    std::string out;
    int status = sh(ssh(h, fmt::format("printf %s {} > /tmp/ferry-add-$$ && nix-store --add /tmp/ferry-add-$$; "
                                       "r=$?; rm -f /tmp/ferry-add-$$; exit $r",
                                       content)),
                    &out);
    BOOST_TEST_REQUIRE(status == 0, "nix-store --add over ssh: " << out);
    out = trimmed(out);
    BOOST_TEST_REQUIRE(out.starts_with("/nix/store/"), out);
    return out;
}

std::string unique(const std::string& tag) {
    return fmt::format("{}-{}-{}", tag, ::getpid(), std::chrono::steady_clock::now().time_since_epoch().count());
}

pid_t spawn(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    // The client's "connection closed" on stderr is expected noise here.
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    BOOST_TEST_REQUIRE(rc == 0);
    return pid;
}

std::string comm_of(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/comm", pid));
    std::string s;
    std::getline(in, s);
    return s;
}

bool alive(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(in, line)) return false;
    auto close = line.rfind(')');
    return close != std::string::npos && line.size() > close + 2 && line[close + 2] != 'Z';
}

// Opens a session running `sleep 1000` and waits until the sleep runs on the host.
pid_t open_sleep_session(const test_host& h) {
    pid_t client = spawn({"/usr/bin/ssh", "-q", "-F", h.ssh_config().string(), h.name(), "sleep 1000"});
    auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
        for (pid_t pid : h.session_pids())
            if (comm_of(pid) == "sleep") return client;
        BOOST_TEST_REQUIRE((std::chrono::steady_clock::now() < deadline), "no sleep session appeared");
        std::this_thread::sleep_for(5ms);
    }
}

int wait_client(pid_t client) {
    int status = 0;
    ::waitpid(client, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

BOOST_AUTO_TEST_CASE(host_accepts_its_client_key_with_strict_host_key_checking) {
    auto host = test_host::start(temporary_directory("ferry-hosts-test"), "alpha");
    BOOST_TEST(host.running());
    BOOST_TEST(host.port() > 0);
    BOOST_TEST(alive(host.sshd_pid()));
    BOOST_TEST(comm_of(host.sshd_pid()) == "sshd");

    std::string out;
    BOOST_TEST(sh(ssh(host, "echo hello from $(hostname)"), &out) == 0, out);
    BOOST_TEST(out.starts_with("hello from"));

    // The pinned key is what makes the login work: a known_hosts with another key fails.
    auto other = fs::path(host.directory()) / "other_known_hosts";
    std::string keygen;
    BOOST_TEST_REQUIRE(sh(fmt::format("ssh-keygen -q -t ed25519 -N '' -C '' -f {}/otherkey", host.directory().string()),
                          &keygen) == 0, keygen);
    std::string other_key;
    std::getline(std::ifstream(host.directory() / "otherkey.pub"), other_key);
    std::ofstream(other) << fmt::format("[127.0.0.1]:{} {}\n", host.port(), other_key);
    out.clear();
    BOOST_TEST(sh(fmt::format("/usr/bin/ssh -F {} -o UserKnownHostsFile={} {} true", host.ssh_config().string(),
                              other.string(), host.name()),
                  &out) == 255);
    BOOST_TEST(out.find("Host key verification failed") != std::string::npos, out);

    // The files a client needs say what the header promises.
    std::string known;
    std::getline(std::ifstream(host.known_hosts()), known);
    BOOST_TEST(known == fmt::format("[127.0.0.1]:{} {}", host.port(), host.host_key_line()));
    BOOST_TEST(host.host_key_line().starts_with("ssh-ed25519 AAAA"));
}

BOOST_AUTO_TEST_CASE(host_has_its_own_store) {
    auto host = test_host::start(temporary_directory("ferry-hosts-test"), "alpha");
    auto local = local_store::create(temporary_directory("ferry-hosts-local"));
    std::string path = add_over_ssh(host, unique("own-store"));
    std::string name = fs::path(path).filename().string();

    std::string out;
    BOOST_TEST(sh(ssh(host, "nix-store --check-validity " + path), &out) == 0, out);
    BOOST_TEST(host.run("/usr/bin/nix-store --check-validity " + path) == 0);
    BOOST_TEST(fs::exists(host.store_root() / "store" / name));
    BOOST_TEST(host.run("test -e " + path) == 0);

    // Not on the machine's /nix, not in a local store.
    BOOST_TEST(!fs::exists(path));
    BOOST_TEST(local.run("/usr/bin/nix-store --check-validity " + path + " 2>/dev/null") != 0);
    BOOST_TEST(local.run("test -e " + path) != 0);

    // The host's Nix configuration is its own: no substituters.
    out.clear();
    BOOST_TEST(sh(ssh(host, "nix show-config --extra-experimental-features nix-command | grep ^substituters"), &out) ==
               0, out);
    BOOST_TEST(trimmed(out) == "substituters =");
}

BOOST_AUTO_TEST_CASE(two_hosts_have_different_stores) {
    auto a = test_host::start(temporary_directory("ferry-hosts-test"), "alpha");
    auto b = test_host::start(temporary_directory("ferry-hosts-test"), "beta");
    BOOST_TEST(a.port() != b.port());
    BOOST_TEST(a.host_key_line() != b.host_key_line());
    std::string on_a = add_over_ssh(a, unique("on-a"));
    std::string on_b = add_over_ssh(b, unique("on-b"));
    std::string out;
    BOOST_TEST(sh(ssh(a, "nix-store --check-validity " + on_a), &out) == 0, out);
    BOOST_TEST(sh(ssh(b, "nix-store --check-validity " + on_b), &out) == 0, out);
    BOOST_TEST(sh(ssh(a, "nix-store --check-validity " + on_b), &out) != 0);
    BOOST_TEST(sh(ssh(b, "nix-store --check-validity " + on_a), &out) != 0);
    // One host's key does not open the other.
    out.clear();
    BOOST_TEST(sh(fmt::format("/usr/bin/ssh -F {} -i {} {} true", b.ssh_config().string(), a.client_key().string(),
                              b.name()),
                  &out) == 0, "IdentitiesOnly keeps b's own key: " << out);
}

BOOST_AUTO_TEST_CASE(stop_kills_listener_and_open_sessions) {
    auto host = test_host::start(temporary_directory("ferry-hosts-test"), "alpha");
    pid_t client = open_sleep_session(host);
    auto sessions = host.session_pids();
    BOOST_TEST(sessions.size() >= 2u);  // the per-connection sshd and the sleep, at least
    pid_t listener = host.sshd_pid();
    int port = host.port();

    auto t0 = std::chrono::steady_clock::now();
    host.stop();
    auto took = std::chrono::steady_clock::now() - t0;
    BOOST_TEST_MESSAGE("stop took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
    BOOST_TEST(!host.running());
    BOOST_TEST(!alive(listener));
    for (pid_t pid : sessions) BOOST_TEST(!alive(pid), "session pid " << pid << " survived stop()");
    BOOST_TEST(wait_client(client) == 255);  // the client saw its connection cut
    std::string out;
    BOOST_TEST(sh(fmt::format("/usr/bin/ssh -F {} -o ConnectTimeout=2 {} true", host.ssh_config().string(),
                              host.name()),
                  &out) != 0, "port " << port << " still answers");
    host.stop();  // idempotent
    BOOST_TEST(fs::exists(host.directory()));  // stop keeps the directory; the destructor removes it
}

BOOST_AUTO_TEST_CASE(kill_sessions_keeps_the_listener) {
    auto host = test_host::start(temporary_directory("ferry-hosts-test"), "alpha");
    pid_t client = open_sleep_session(host);
    auto sessions = host.session_pids();
    host.kill_sessions();
    for (pid_t pid : sessions) BOOST_TEST(!alive(pid));
    BOOST_TEST(host.session_pids().empty());
    BOOST_TEST(wait_client(client) == 255);
    BOOST_TEST(alive(host.sshd_pid()));
    std::string out;
    BOOST_TEST(sh(ssh(host, "true"), &out) == 0, out);
}

BOOST_AUTO_TEST_CASE(stop_also_kills_processes_that_left_the_session) {
    auto host = test_host::start(temporary_directory("ferry-hosts-test"), "alpha");
    // A daemonised process: the session ends, the process stays on the host.
    std::string out;
    BOOST_TEST_REQUIRE(sh(ssh(host, "setsid sleep 1001 </dev/null >/dev/null 2>&1 & echo $!"), &out) == 0, out);
    pid_t daemon = std::stoi(trimmed(out));
    BOOST_TEST_REQUIRE(alive(daemon));
    auto sessions = host.session_pids();
    BOOST_TEST((std::find(sessions.begin(), sessions.end(), daemon) != sessions.end()),
               "an orphan is still one of the host's sessions");
    host.stop();
    BOOST_TEST(!alive(daemon));
}

BOOST_AUTO_TEST_CASE(wipe_store_empties_it) {
    auto host = test_host::start(temporary_directory("ferry-hosts-test"), "alpha");
    std::string path = add_over_ssh(host, unique("wipe"));
    BOOST_TEST(!fs::is_empty(host.store_root() / "store"));
    host.wipe_store();
    BOOST_TEST(fs::is_empty(host.store_root() / "store"));
    BOOST_TEST(fs::is_empty(host.store_root() / "var"));
    std::string out;
    BOOST_TEST(sh(ssh(host, "nix-store --check-validity " + path), &out) != 0);
    // Still a working store afterwards.
    add_over_ssh(host, unique("after-wipe"));
}

BOOST_AUTO_TEST_CASE(nix_machine_line_format) {
    auto host = test_host::start(temporary_directory("ferry-hosts-test"), "alpha");
    std::string line = host.nix_machine_line("x86_64-linux,i686-linux", 3);
    std::smatch m;
    BOOST_TEST_REQUIRE(std::regex_match(line, m, std::regex(R"(ssh://root@127\.0\.0\.1:(\d+) (\S+) (\S+) 3 1 - - (\S+))")),
                       line);
    BOOST_TEST(std::stoi(m[1]) == host.port());
    BOOST_TEST(m[2] == "x86_64-linux,i686-linux");
    BOOST_TEST(m[3] == host.client_key().string());
    BOOST_TEST(m[4] == host.host_key_base64());
    std::string decoded;
    BOOST_TEST(sh(fmt::format("printf %s {} | base64 -d", host.host_key_base64()), &decoded) == 0);
    BOOST_TEST(decoded == host.host_key_line());
    BOOST_TEST(host.nix_machine_line() ==
               fmt::format("ssh://root@127.0.0.1:{} x86_64-linux {} 1 1 - - {}", host.port(),
                           host.client_key().string(), host.host_key_base64()));
}

BOOST_AUTO_TEST_CASE(options_reach_sshd) {
    ferry::hosts::test_host_options options;
    options.name = "gamma";
    options.directory = temporary_directory("ferry-hosts-test");
    options.max_sessions = 3;
    options.extra_nix_conf = "require-sigs = false\n";
    auto host = test_host::start(options);
    std::string out;
    BOOST_TEST(sh(fmt::format("/usr/sbin/sshd -T -f {}/sshd_config | grep -E '^(maxsessions|port|usepam) '",
                              host.directory().string()),
                  &out) == 0, out);
    BOOST_TEST(out.find("maxsessions 3\n") != std::string::npos, out);
    BOOST_TEST(out.find(fmt::format("port {}\n", host.port())) != std::string::npos, out);
    BOOST_TEST(out.find("usepam no\n") != std::string::npos, out);
    out.clear();
    BOOST_TEST(host.run("cat /etc/nix/nix.conf", &out) == 0);
    BOOST_TEST(out.find("require-sigs = false") != std::string::npos, out);
}

BOOST_AUTO_TEST_CASE(destructor_removes_everything) {
    fs::path dir = temporary_directory("ferry-hosts-test");
    pid_t listener;
    {
        auto host = test_host::start(dir, "alpha");
        listener = host.sshd_pid();
        test_host moved = std::move(host);  // the moved-from host must not stop the moved-to one
        BOOST_TEST(alive(listener));
        BOOST_TEST(moved.sshd_pid() == listener);
    }
    BOOST_TEST(!alive(listener));
    BOOST_TEST(!fs::exists(dir));
}

BOOST_AUTO_TEST_CASE(refuses_a_foreign_directory) {
    fs::path dir = temporary_directory("ferry-hosts-test");
    std::ofstream(dir / "precious") << "not ours";
    BOOST_CHECK_THROW(test_host::start(dir, "alpha"), ferry::failure);
    BOOST_CHECK_THROW(local_store::create(dir), ferry::failure);
    BOOST_TEST(fs::exists(dir / "precious"));
    fs::remove_all(dir);
    BOOST_CHECK_THROW(test_host::start(fs::path("relative/dir"), "alpha"), ferry::failure);
}

BOOST_AUTO_TEST_CASE(local_store_is_private) {
    auto local = local_store::create(temporary_directory("ferry-hosts-local"));
    std::string out, err;
    BOOST_TEST_REQUIRE(local.run(fmt::format("printf %s {} > {}/f && /usr/bin/nix-store --add {}/f", unique("local"),
                                             local.directory().string(), local.directory().string()),
                                 &out, &err) == 0, err);
    std::string path = trimmed(out);
    BOOST_TEST(local.run("/usr/bin/nix-store --check-validity " + path) == 0);
    BOOST_TEST(fs::exists(local.store_root() / "store" / fs::path(path).filename()));
    BOOST_TEST(!fs::exists(path));
    auto other = local_store::create(temporary_directory("ferry-hosts-local"));
    BOOST_TEST(other.run("/usr/bin/nix-store --check-validity " + path + " 2>/dev/null") != 0);
}
