#include "ferry/hosts/test_host.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>

#include <fstream>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <fmt/core.h>

#include "ferry/util/error.hpp"
#include "process.hpp"

namespace ferry::hosts {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* marker_name = ".ferry-test-host";
constexpr const char* sshd_binary = "/usr/sbin/sshd";

std::error_code last_error() { return {errno, std::system_category()}; }

std::string nix_conf(const std::string& extra) {
    // No network here: an empty substituter list keeps Nix from retrying a public
    // cache; builds run as root, unsandboxed, like Debian's own configuration.
    return "substituters =\n"
           "sandbox = false\n"
           "build-users-group =\n" +
           extra;
}

// Lays out DIRECTORY/nix/{store,var} and DIRECTORY/etc/nix/nix.conf, and makes
// sure the mount points exist in the machine's namespace.
void make_store_tree(const fs::path& dir, const std::string& extra_conf) {
    fs::create_directories(dir / "nix/store");
    fs::create_directories(dir / "nix/var");
    fs::create_directories(dir / "etc/nix");
    detail::write_file(dir / "etc/nix/nix.conf", nix_conf(extra_conf));
    std::error_code ec;
    fs::create_directories("/nix", ec);
    fs::create_directories("/etc/nix", ec);
}

std::uint16_t free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw failure(last_error(), "test host: socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        auto ec = last_error();
        ::close(fd);
        throw failure(ec, "test host: finding a free port on 127.0.0.1");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

std::string quoted(const fs::path& p) { return "\"" + p.string() + "\""; }

std::string base64(const std::string& text) {
    std::string out(4 * ((text.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string first_two_fields(const std::string& pub) {
    // "ssh-ed25519 AAAA... comment" -> "ssh-ed25519 AAAA..."
    auto a = pub.find(' ');
    auto b = a == std::string::npos ? a : pub.find_first_of(" \n", a + 1);
    return pub.substr(0, b);
}

void child_fail(const char* what) {
    const char* reason = std::strerror(errno);
    (void)!::write(2, "ferry test host: ", 17);
    (void)!::write(2, what, std::strlen(what));
    (void)!::write(2, ": ", 2);
    (void)!::write(2, reason, std::strlen(reason));
    (void)!::write(2, "\n", 1);
    ::_exit(126);
}

}  // namespace

fs::path temporary_directory(const std::string& prefix) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = fmt::format("{}/{}.XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    if (!::mkdtemp(pattern.data())) throw failure(last_error(), "mkdtemp " + pattern);
    return pattern;
}

// --- test_host -------------------------------------------------------------

test_host test_host::start(test_host_options options) {
    if (options.name.empty() || options.name.find_first_of(" \t\n#\"") != std::string::npos)
        throw failure(errc::bad_input, fmt::format("test host: bad name '{}'", options.name));
    detail::prepare_directory(options.directory, marker_name, "test host");
    test_host host(std::move(options));
    const fs::path& dir = host.options_.directory;

    make_store_tree(dir, host.options_.extra_nix_conf);
    std::error_code ec;
    fs::create_directories("/run/sshd", ec);  // sshd's privilege separation directory
    for (const char* key : {"hostkey", "client"})
        detail::run_checked(fmt::format("test host {}: ssh-keygen {}", host.name(), key),
                            {"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "",
                             "-f", (dir / key).string()});
    fs::copy_file(dir / "client.pub", dir / "authorized_keys", fs::copy_options::overwrite_existing);

    // Another process may take the port between our probe and sshd's bind: retry.
    for (int attempt = 1;; ++attempt) {
        host.port_ = free_port();
        try {
            host.launch();
            return host;
        } catch (const failure&) {
            bool port_taken = detail::read_file(host.log_file()).find("Address already in use") !=
                              std::string::npos;
            host.stop();
            if (!port_taken || attempt == 5) throw;
        }
    }
}

test_host test_host::start(fs::path directory, std::string name) {
    test_host_options options;
    options.name = std::move(name);
    options.directory = std::move(directory);
    return start(std::move(options));
}

void test_host::launch() {
    const fs::path& dir = options_.directory;
    std::string key_line = host_key_line();
    detail::write_file(dir / "known_hosts", fmt::format("[127.0.0.1]:{} {}\n", port_, key_line));
    detail::write_file(dir / "sshd_config",
                       fmt::format("# ferry test host {}: OpenSSH defaults apart from these\n"
                                   "Port {}\n"
                                   "ListenAddress 127.0.0.1\n"
                                   "HostKey {}\n"
                                   "AuthorizedKeysFile {}\n"
                                   "PermitRootLogin prohibit-password\n"
                                   "PasswordAuthentication no\n"
                                   "KbdInteractiveAuthentication no\n"
                                   "UsePAM no\n"
                                   "StrictModes no\n"
                                   "PidFile {}\n"
                                   "MaxSessions {}\n",
                                   name(), port_, quoted(dir / "hostkey"), quoted(dir / "authorized_keys"),
                                   quoted(dir / "sshd.pid"), options_.max_sessions));
    detail::write_file(ssh_config(),
                       fmt::format("Host {}\n"
                                   "  HostName 127.0.0.1\n"
                                   "  Port {}\n"
                                   "  User root\n"
                                   "  IdentityFile {}\n"
                                   "  IdentitiesOnly yes\n"
                                   "  UserKnownHostsFile {}\n"
                                   "  GlobalKnownHostsFile /dev/null\n"
                                   "  StrictHostKeyChecking yes\n"
                                   "  UpdateHostKeys no\n"
                                   "  BatchMode yes\n",
                                   name(), port_, quoted(client_key()), quoted(known_hosts())));

    // Everything the children need, built before fork (they may only make syscalls).
    std::string config = (dir / "sshd_config").string(), log = log_file().string();
    std::string nix_source = (dir / "nix").string(), etc_source = (dir / "etc/nix").string();
    // A clean build machine runs no shell start-up files of this developer box: root's
    // ~/.bashrc here runs `pyenv init` on every SSH command (slow, and it blocks for a
    // minute on a stale pyenv lock). An empty file is bound over it inside the host.
    std::string empty_rc = (dir / "empty-shell-rc").string();
    { std::ofstream touch(empty_rc); }
    std::string absent = (dir / "absent-program").string();  // 0644, empty: what hidden programs become
    { std::ofstream touch(absent); }
    std::vector<const char*> hidden;
    for (const auto& p : options_.hidden_programs) hidden.push_back(p.c_str());
    const std::uint64_t tmpfs_bytes = options_.store_tmpfs_bytes;
    std::string tmpfs_options = fmt::format("size={},mode=1775", tmpfs_bytes);
    const char* sshd_argv[] = {sshd_binary, "-D", "-f", config.c_str(), "-E", log.c_str(), nullptr};
    int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    int pid_pipe[2];
    if (log_fd < 0 || devnull < 0 || ::pipe2(pid_pipe, O_CLOEXEC) != 0) {
        auto ec = last_error();
        if (log_fd >= 0) ::close(log_fd);
        if (devnull >= 0) ::close(devnull);
        throw failure(ec, fmt::format("test host {}: opening {}", name(), log));
    }
    bool die_with_parent = options_.die_with_parent;
    pid_t parent = ::getpid();

    pid_t reaper = ::fork();
    if (reaper < 0) {
        auto ec = last_error();
        ::close(log_fd);
        ::close(devnull);
        ::close(pid_pipe[0]);
        ::close(pid_pipe[1]);
        throw failure(ec, fmt::format("test host {}: fork", name()));
    }
    if (reaper == 0) {
        // The reaper: owns the mount namespace, parents sshd, reaps every orphan.
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; ++sig)
            if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        if (die_with_parent) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(126);
        }
        ::setpgid(0, 0);  // a terminal's ^C must reach `ferry hosts up`, which then stops us in order
        ::dup2(devnull, 0);
        ::dup2(devnull, 1);
        ::dup2(log_fd, 2);
        if (::unshare(CLONE_NEWNS) != 0) child_fail("unshare(CLONE_NEWNS)");
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) child_fail("make / rprivate");
        if (::mount(nix_source.c_str(), "/nix", nullptr, MS_BIND, nullptr) != 0) child_fail("bind over /nix");
        if (::mount(etc_source.c_str(), "/etc/nix", nullptr, MS_BIND, nullptr) != 0)
            child_fail("bind over /etc/nix");
        if (tmpfs_bytes && ::mount("tmpfs", "/nix/store", "tmpfs", 0, tmpfs_options.c_str()) != 0)
            child_fail("tmpfs over /nix/store");
        if (::access("/root/.bashrc", F_OK) == 0) ::mount(empty_rc.c_str(), "/root/.bashrc", nullptr, MS_BIND, nullptr);
        for (const char* program : hidden)
            if (::mount(absent.c_str(), program, nullptr, MS_BIND, nullptr) != 0) child_fail("hiding a program");
        ::prctl(PR_SET_CHILD_SUBREAPER, 1);
        int keep = pid_pipe[1];
        ::close_range(3, static_cast<unsigned>(keep - 1), 0);
        ::close_range(static_cast<unsigned>(keep + 1), ~0U, 0);
        pid_t sshd = ::fork();
        if (sshd < 0) child_fail("fork sshd");
        if (sshd == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            ::execv(sshd_binary, const_cast<char* const*>(sshd_argv));
            child_fail("exec /usr/sbin/sshd");
        }
        (void)!::write(keep, &sshd, sizeof sshd);
        ::close(keep);
        int sshd_status = 0;
        for (;;) {
            int status = 0;
            pid_t done = ::waitpid(-1, &status, 0);
            if (done == sshd) sshd_status = status;
            if (done < 0 && errno == ECHILD) break;
        }
        ::_exit(WIFEXITED(sshd_status) ? WEXITSTATUS(sshd_status) : 128 + WTERMSIG(sshd_status));
    }
    ::close(log_fd);
    ::close(devnull);
    ::close(pid_pipe[1]);
    reaper_pid_ = reaper;
    pid_t sshd = -1;
    ssize_t n;
    do n = ::read(pid_pipe[0], &sshd, sizeof sshd);
    while (n < 0 && errno == EINTR);
    ::close(pid_pipe[0]);
    if (n != sizeof sshd) {
        stop();
        throw failure(errc::connect_failed, fmt::format("test host {}: setting up the mount namespace failed; {}: {}",
                                                        name(), log, detail::tail_of(log)));
    }
    sshd_pid_ = sshd;

    // sshd logs this line right after listen(): from then on connections queue.
    const std::string ready = fmt::format("Server listening on 127.0.0.1 port {}.", port_);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    for (auto pause = 1ms;; pause = std::min(pause * 2, 20ms)) {
        if (detail::read_file(log).find(ready) != std::string::npos) break;
        int status = 0;
        if (::waitpid(reaper_pid_, &status, WNOHANG) == reaper_pid_) {
            reaper_pid_ = sshd_pid_ = -1;
            throw failure(errc::connect_failed,
                          fmt::format("test host {}: sshd exited (status {}) before listening on port {}; {}: {}",
                                      name(), WIFEXITED(status) ? WEXITSTATUS(status) : -1, port_, log,
                                      detail::tail_of(log)));
        }
        if (std::chrono::steady_clock::now() > deadline)
            throw failure(errc::timed_out, fmt::format("test host {}: sshd not listening on port {} after 10 s; {}: {}",
                                                       name(), port_, log, detail::tail_of(log)));
        std::this_thread::sleep_for(pause);
    }
    detail::write_file(dir / "pids", fmt::format("reaper {}\nsshd {}\nport {}\n", reaper_pid_, sshd_pid_, port_));
}

test_host::test_host(test_host&& other) noexcept
    : options_(std::move(other.options_)),
      port_(other.port_),
      sshd_pid_(std::exchange(other.sshd_pid_, -1)),
      reaper_pid_(std::exchange(other.reaper_pid_, -1)) {
    other.options_.directory.clear();
}

test_host& test_host::operator=(test_host&& other) noexcept {
    if (this != &other) {
        this->~test_host();
        new (this) test_host(std::move(other));
    }
    return *this;
}

test_host::~test_host() {
    try {
        stop();
        if (!options_.directory.empty() && fs::exists(options_.directory / marker_name)) {
            std::error_code ec;
            fs::remove_all(options_.directory, ec);
        }
    } catch (...) {
        // A destructor must not throw; leftovers are in a temporary directory.
    }
}

fs::path test_host::client_key() const { return options_.directory / "client"; }
fs::path test_host::known_hosts() const { return options_.directory / "known_hosts"; }
fs::path test_host::ssh_config() const { return options_.directory / "ssh_config"; }
fs::path test_host::store_root() const { return options_.directory / "nix"; }
fs::path test_host::log_file() const { return options_.directory / "sshd.log"; }

std::string test_host::host_key_line() const {
    return first_two_fields(detail::read_file(options_.directory / "hostkey.pub"));
}

std::string test_host::host_key_base64() const { return base64(host_key_line()); }

std::string test_host::nix_machine_line(const std::string& systems, int max_jobs) const {
    return fmt::format("ssh://root@127.0.0.1:{} {} {} {} 1 - - {}", port_, systems, client_key().string(), max_jobs,
                       host_key_base64());
}

int test_host::run(const std::string& command, std::string* out, std::string* err) const {
    if (!running()) throw failure(errc::connect_failed, fmt::format("test host {}: not running", name()));
    detail::mount_setup setup;
    setup.join_namespace_of = reaper_pid_;
    return detail::run_process({"/bin/sh", "-c", command}, setup, out, err);
}

void test_host::wipe_store() {
    const fs::path root = store_root();
    if (options_.store_tmpfs_bytes) {
        // The tmpfs is mounted inside the namespace: empty it from there, keep the mount.
        if (run("exec /usr/bin/find /nix/store -mindepth 1 -maxdepth 1 -exec /bin/rm -rf {} +") != 0)
            throw failure(errc::remote_failed, fmt::format("test host {}: emptying its tmpfs /nix/store", name()));
        std::error_code ec;
        fs::remove_all(root / "var", ec);
        if (ec) throw failure(ec, fmt::format("test host {}: wiping {}", name(), (root / "var").string()));
        fs::create_directories(root / "var");
        return;
    }
    // Only the contents: DIR/nix itself is what the namespace has bound over /nix.
    for (const char* sub : {"store", "var"}) {
        std::error_code ec;
        fs::remove_all(root / sub, ec);
        if (ec) throw failure(ec, fmt::format("test host {}: wiping {}", name(), (root / sub).string()));
        fs::create_directories(root / sub);
    }
}

std::vector<pid_t> test_host::session_pids() const {
    if (!running()) return {};
    auto all = detail::descendants(reaper_pid_);
    std::erase(all, sshd_pid_);
    return all;
}

void test_host::kill_sessions() {
    auto killed = detail::freeze_and_kill([this] { return session_pids(); });
    detail::wait_gone(killed, 5s);
}

void test_host::stop() {
    if (reaper_pid_ <= 0) return;
    const pid_t reaper = reaper_pid_;
    const fs::path store = store_root();
    auto killed = detail::freeze_and_kill([&] {
        auto pids = detail::descendants(reaper);
        // Also whatever left the tree but still lives on the host (reparented to init).
        for (pid_t pid : detail::processes_seeing_nix_at(store, reaper))
            if (std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(pid);
        return pids;
    });
    // The reaper collects its children and exits once none is left.
    auto deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
        int status = 0;
        pid_t r = ::waitpid(reaper, &status, WNOHANG);
        if (r == reaper || (r < 0 && errno == ECHILD)) break;
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(reaper, SIGKILL);
            ::waitpid(reaper, &status, 0);
            break;
        }
        std::this_thread::sleep_for(1ms);
    }
    detail::wait_gone(killed, 5s);
    reaper_pid_ = sshd_pid_ = -1;
}

// --- local_store -----------------------------------------------------------

local_store local_store::create(fs::path directory, const std::string& extra_nix_conf) {
    detail::prepare_directory(directory, marker_name, "local store");
    make_store_tree(directory, extra_nix_conf);
    return local_store(std::move(directory));
}

local_store::local_store(local_store&& other) noexcept : directory_(std::move(other.directory_)) {
    other.directory_.clear();
}

local_store& local_store::operator=(local_store&& other) noexcept {
    if (this != &other) {
        this->~local_store();
        new (this) local_store(std::move(other));
    }
    return *this;
}

local_store::~local_store() {
    if (directory_.empty()) return;
    std::error_code ec;
    if (fs::exists(directory_ / marker_name, ec)) fs::remove_all(directory_, ec);
}

int local_store::run(const std::string& command, std::string* out, std::string* err) const {
    detail::mount_setup setup;
    setup.binds = {{store_root().string(), "/nix"}, {(directory_ / "etc/nix").string(), "/etc/nix"}};
    return detail::run_process({"/bin/sh", "-c", command}, setup, out, err);
}

}  // namespace ferry::hosts
