// Playing guix-daemon's side of the build hook exactly as guix's sources do:
//   nix/libutil/util.cc Agent::Agent + commonChildInit: fork; setsid; stdout AND
//   stderr = one pipe (fromAgent); chdir("/"); stdin = the toAgent pipe; fd 4 = the
//   builderOut pipe; execv(program, [program, args...]) with the daemon's environment.
//   nix/libstore/build.cc tryBuildHook: writeLine("<0|1> <system> <drv> <features>");
//   readLine until a line starts with "# " (other lines go to the client's stderr);
//   after accept: writeLine(inputs + ' ' each), writeLine(outputs + ' ' each), close.
//   Exit: 0 ok, 100 permanent, 101 timeout, else transient.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace guix_test {

struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "ferry-guix-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp");
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

inline std::string ferry_binary() { return (std::filesystem::path(FERRY_BINARY_DIR) / "ferry").string(); }

class daemon_side {
public:
    // program: what settings.guixProgram is; args: argv[1..].
    // env: the whole environment of the hook (the daemon passes its own).
    // nix_root: when set, the hook runs in a private mount namespace where this
    // directory is /nix (the local store of a test: hosts::local_store::store_root()).
    daemon_side(const std::string& program, const std::vector<std::string>& args,
                const std::map<std::string, std::string>& env, const std::filesystem::path& nix_root = {}) {
        int to[2], from[2], log[2];
        if (::pipe2(to, O_CLOEXEC) || ::pipe2(from, O_CLOEXEC) || ::pipe2(log, O_CLOEXEC))
            throw std::runtime_error("pipe");
        std::vector<std::string> envs;
        for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
        std::vector<char*> envp, argv;
        for (auto& e : envs) envp.push_back(e.data());
        envp.push_back(nullptr);
        std::vector<std::string> all{program};
        all.insert(all.end(), args.begin(), args.end());
        for (auto& a : all) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork");
        if (pid_ == 0) {
            if (!nix_root.empty()) {
                if (::unshare(CLONE_NEWNS) != 0) ::_exit(125);
                if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(125);
                if (::mount(nix_root.c_str(), "/nix", nullptr, MS_BIND | MS_REC, nullptr) != 0) ::_exit(125);
            }
            // commonChildInit(fromAgent)
            ::setsid();
            ::dup2(from[1], STDERR_FILENO);
            ::dup2(STDERR_FILENO, STDOUT_FILENO);
            if (::chdir("/") != 0) ::_exit(126);
            ::dup2(to[0], STDIN_FILENO);
            ::dup2(log[1], 4);
            ::execve(program.c_str(), argv.data(), envp.data());
            ::_exit(127);
        }
        ::close(to[0]);
        ::close(from[1]);
        ::close(log[1]);
        in_ = to[1];
        out_ = from[0];
        log_ = log[0];
    }
    ~daemon_side() {
        if (in_ >= 0) ::close(in_);
        if (pid_ > 0 && !reaped_) {
            ::kill(-pid_, SIGKILL);  // the daemon kills the hook's process group
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(out_);
        ::close(log_);
    }

    void write_line(const std::string& line) {
        std::string s = line + "\n";
        if (::write(in_, s.data(), s.size()) != static_cast<ssize_t>(s.size())) throw std::runtime_error("write");
    }
    void close_in() {
        ::close(in_);
        in_ = -1;
    }

    // readLine on fromAgent: nullopt at EOF or after the timeout.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
        auto end = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto nl = buf_.find('\n');
            if (nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return line;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
            if (left.count() <= 0) return std::nullopt;
            pollfd p{out_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            char b[4096];
            ssize_t n = ::read(out_, b, sizeof b);
            if (n <= 0) return std::nullopt;
            buf_.append(b, static_cast<std::size_t>(n));
        }
    }

    // tryBuildHook's loop: lines not starting with "# " go to the client (collected).
    std::optional<std::string> read_reply() {
        for (;;) {
            auto line = read_line();
            if (!line) return std::nullopt;
            if (line->rfind("# ", 0) == 0) return line->substr(2);
            client += *line + "\n";
        }
    }

    // Everything left on fromAgent until EOF (goes to the client).
    std::string drain() {
        while (auto line = read_line()) client += *line + "\n";
        client += buf_;
        buf_.clear();
        return client;
    }

    std::string read_log() {
        std::string out;
        int flags = ::fcntl(log_, F_GETFL);
        ::fcntl(log_, F_SETFL, flags | O_NONBLOCK);
        char b[4096];
        ssize_t n;
        while ((n = ::read(log_, b, sizeof b)) > 0) out.append(b, static_cast<std::size_t>(n));
        return out;
    }

    // Exit status as build.cc reads it: the code, or 128 + signal.
    int wait(std::chrono::seconds timeout = std::chrono::seconds(60)) {
        auto end = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            int status = 0;
            pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                reaped_ = true;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            if (std::chrono::steady_clock::now() > end) {
                ::kill(-pid_, SIGKILL);
                ::waitpid(pid_, nullptr, 0);
                reaped_ = true;
                return -1;
            }
            // Keep the pipe drained so the hook never blocks on a full pipe.
            pollfd p{out_, POLLIN, 0};
            if (::poll(&p, 1, 50) > 0) {
                char b[4096];
                ssize_t n = ::read(out_, b, sizeof b);
                if (n > 0) buf_.append(b, static_cast<std::size_t>(n));
            }
        }
    }

    std::string client;  // lines the daemon passed on to the client

private:
    pid_t pid_ = -1;
    bool reaped_ = false;
    int in_ = -1, out_ = -1, log_ = -1;
    std::string buf_;
};

// The environment guix-daemon would pass, pointed at a test directory.
inline std::map<std::string, std::string> guix_env(const std::filesystem::path& root) {
    std::map<std::string, std::string> env;
    env["PATH"] = "/usr/bin:/bin";
    env["HOME"] = "/root";
    env["NIX_STORE_DIR"] = "/gnu/store";
    env["GUIX_STATE_DIRECTORY"] = (root / "var").string();
    env["GUIX_CONFIGURATION_DIRECTORY"] = (root / "etc").string();
    env["FERRY_CONFIG"] = (root / "ferry.conf").string();
    return env;
}

}  // namespace guix_test
