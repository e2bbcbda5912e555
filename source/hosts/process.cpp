#include "process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/core.h>

#include "ferry/util/error.hpp"

extern char** environ;

namespace ferry::hosts::detail {
namespace {

// Child side helpers: async-signal-safe only.
void child_fail(const char* what) {
    const char* reason = std::strerror(errno);  // not strictly safe, but glibc's is in practice
    (void)!::write(2, "ferry hosts: ", 13);
    (void)!::write(2, what, std::strlen(what));
    (void)!::write(2, ": ", 2);
    (void)!::write(2, reason, std::strlen(reason));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
}

void reset_signals() {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        ::sigaction(sig, &dfl, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

struct prepared_binds {
    std::vector<const char*> sources, targets;
};

void apply_mount_setup(const mount_setup& setup, const prepared_binds& binds, int ns_fd) {
    if (ns_fd >= 0) {
        if (::setns(ns_fd, CLONE_NEWNS) != 0) child_fail("setns into the host's mount namespace");
        ::close(ns_fd);
        return;
    }
    if (setup.binds.empty()) return;
    if (::unshare(CLONE_NEWNS) != 0) child_fail("unshare(CLONE_NEWNS)");
    // Private propagation: our bind mounts must not leak back into the parent namespace.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) child_fail("mount --make-rprivate /");
    for (std::size_t i = 0; i < binds.sources.size(); ++i) {
        if (::mount(binds.sources[i], binds.targets[i], nullptr, MS_BIND, nullptr) != 0)
            child_fail(binds.targets[i]);
    }
}

std::string stat_field_ppid_line(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    return line;
}

// (pid, ppid, state) of every process, from /proc/*/stat.
struct proc_entry {
    pid_t pid;
    pid_t ppid;
    char state;
};

std::vector<proc_entry> scan_proc() {
    std::vector<proc_entry> all;
    DIR* dir = ::opendir("/proc");
    if (!dir) return all;
    while (dirent* e = ::readdir(dir)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        std::string line = stat_field_ppid_line(static_cast<pid_t>(pid));
        // comm may hold spaces and parentheses: the fields after it follow the last ')'.
        auto close = line.rfind(')');
        if (close == std::string::npos || close + 4 > line.size()) continue;
        std::istringstream rest(line.substr(close + 2));
        char state = 0;
        long ppid = 0;
        if (!(rest >> state >> ppid)) continue;
        all.push_back({static_cast<pid_t>(pid), static_cast<pid_t>(ppid), state});
    }
    ::closedir(dir);
    return all;
}

}  // namespace

int run_process(const std::vector<std::string>& argv, const mount_setup& setup, std::string* out,
                std::string* err) {
    if (argv.empty()) throw failure(errc::bad_input, "run_process: empty argv");
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    prepared_binds binds;
    for (const auto& [source, target] : setup.binds) {
        binds.sources.push_back(source.c_str());
        binds.targets.push_back(target.c_str());
    }
    int ns_fd = -1;
    if (setup.join_namespace_of > 0) {
        std::string ns = fmt::format("/proc/{}/ns/mnt", setup.join_namespace_of);
        ns_fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
        if (ns_fd < 0)
            throw failure(std::error_code(errno, std::system_category()),
                          fmt::format("open {}: the host's process is gone", ns));
    }

    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    auto close_all = [&] {
        for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], ns_fd})
            if (fd >= 0) ::close(fd);
    };
    if ((out && ::pipe2(out_pipe, O_CLOEXEC) != 0) || (err && ::pipe2(err_pipe, O_CLOEXEC) != 0)) {
        int e = errno;
        close_all();
        throw failure(std::error_code(e, std::system_category()), "run_process: pipe");
    }
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);

    pid_t pid = ::fork();
    if (pid < 0) {
        int e = errno;
        close_all();
        ::close(devnull);
        throw failure(std::error_code(e, std::system_category()), "run_process: fork " + argv[0]);
    }
    if (pid == 0) {
        reset_signals();
        ::dup2(devnull, 0);
        ::dup2(out ? out_pipe[1] : devnull, 1);
        if (err) ::dup2(err_pipe[1], 2);
        apply_mount_setup(setup, binds, ns_fd);
        ::close_range(3, ~0U, 0);
        ::execve(args[0], args.data(), environ);
        child_fail(args[0]);
    }
    ::close(devnull);
    if (ns_fd >= 0) ::close(ns_fd);
    if (out) ::close(out_pipe[1]);
    if (err) ::close(err_pipe[1]);

    // Drain both pipes together so that neither can fill up and block the child.
    std::vector<pollfd> fds;
    if (out) fds.push_back({out_pipe[0], POLLIN, 0});
    if (err) fds.push_back({err_pipe[0], POLLIN, 0});
    char buffer[65536];
    while (!fds.empty()) {
        if (::poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (std::size_t i = 0; i < fds.size();) {
            if (fds[i].revents == 0) {
                ++i;
                continue;
            }
            ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n > 0) {
                (out && fds[i].fd == out_pipe[0] ? *out : *err).append(buffer, static_cast<std::size_t>(n));
                fds[i].revents = 0;
                ++i;
                continue;
            }
            ::close(fds[i].fd);
            fds.erase(fds.begin() + static_cast<std::ptrdiff_t>(i));
        }
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return 127;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 127;
}

std::string run_checked(const std::string& step, const std::vector<std::string>& argv,
                        const mount_setup& setup) {
    std::string out, err;
    int status = run_process(argv, setup, &out, &err);
    if (status != 0) {
        if (err.size() > 2000) err = err.substr(err.size() - 2000);
        throw failure(errc::remote_failed, fmt::format("{}: {} exited with status {}: {}", step, argv[0],
                                                       status, err));
    }
    return out;
}

std::vector<pid_t> descendants(pid_t root) {
    auto all = scan_proc();
    std::vector<pid_t> found{root};
    // Breadth-first over the parent relation; found grows while we walk it.
    for (std::size_t i = 0; i < found.size(); ++i) {
        for (const auto& e : all)
            if (e.ppid == found[i] && e.pid != root) found.push_back(e.pid);
    }
    found.erase(found.begin());
    return found;
}

std::vector<pid_t> processes_seeing_nix_at(const std::filesystem::path& store_root, pid_t except) {
    std::vector<pid_t> found;
    struct stat want {};
    if (::stat(store_root.c_str(), &want) != 0) return found;
    for (const auto& e : scan_proc()) {
        if (e.pid == except || e.state == 'Z') continue;
        struct stat st {};
        if (::stat(fmt::format("/proc/{}/root/nix", e.pid).c_str(), &st) == 0 && st.st_dev == want.st_dev &&
            st.st_ino == want.st_ino)
            found.push_back(e.pid);
    }
    return found;
}

bool is_running(pid_t pid) {
    if (pid <= 0) return false;
    std::string line = stat_field_ppid_line(pid);
    auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size()) return false;
    char state = line[close + 2];
    return state != 'Z' && state != 'X';
}

bool wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds deadline) {
    auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        bool any = false;
        for (pid_t pid : pids) any = any || is_running(pid);
        if (!any) return true;
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

void prepare_directory(const std::filesystem::path& dir, const char* marker, const char* what) {
    namespace fs = std::filesystem;
    if (dir.empty() || !dir.is_absolute())
        throw failure(errc::bad_input,
                      fmt::format("{}: directory must be an absolute path, got '{}'", what, dir.string()));
    std::error_code ec;
    if (fs::exists(dir / marker)) {
        fs::remove_all(dir, ec);
    } else if (fs::exists(dir) && !fs::is_empty(dir)) {
        throw failure(errc::bad_input, fmt::format("{}: {} exists, is not empty and was not made by ferry's "
                                                   "hosts layer: refusing to use it",
                                                   what, dir.string()));
    }
    fs::create_directories(dir, ec);
    if (ec) throw failure(ec, fmt::format("{}: cannot create {}", what, dir.string()));
    write_file(dir / marker, "made by ferry::hosts; removed when its owner is destroyed\n");
}

std::string command_line_of(pid_t pid) {
    std::string s = read_file(fmt::format("/proc/{}/cmdline", pid));
    for (char& c : s)
        if (c == '\0') c = ' ';
    return s;
}

std::string read_file(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_file(const std::filesystem::path& file, const std::string& content) {
    std::ofstream o(file, std::ios::binary | std::ios::trunc);
    o << content;
    o.close();
    if (!o) throw failure(std::error_code(errno, std::system_category()), "cannot write " + file.string());
}

std::string tail_of(const std::filesystem::path& file, int lines) {
    std::string text = read_file(file);
    while (!text.empty() && text.back() == '\n') text.pop_back();
    std::size_t pos = text.size();
    for (int i = 0; i < lines && pos != std::string::npos && pos > 0; ++i) pos = text.rfind('\n', pos - 1);
    return pos == std::string::npos || pos == 0 ? text : text.substr(pos + 1);
}

}  // namespace ferry::hosts::detail
