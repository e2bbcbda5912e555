// Shared by the test folders that drive real Nix 2.8 with ferry as its build hook
// (test/hook, test/farm, test/faults): a fresh local store with ferry's state
// private to the run, nix-build through build/ferry-build-hook, the hook binary
// run directly on scripted daemon bytes, and small helpers.
//
// Needs the ferry binary: build target `ferry` in the same build directory first.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>

#include "ferry/hosts/test_host.hpp"
#include "ferry/protocol/wire.hpp"

namespace ferry::test_support {

namespace fs = std::filesystem;

inline const std::string hook_path = std::string(FERRY_BINARY_DIR) + "/ferry-build-hook";

// A per-run nonce: builds that include it are never cached.
inline std::string nonce() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
}

// For the test's own local shell commands (ferry itself uses ssh::shell_quote).
inline std::string sh_quote(const std::string& s) {
    std::string r = "'";
    for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return r + "'";
}

inline std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> v;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
}

struct build_run {
    int status = -1;
    std::string out, err;
    double seconds = 0;
    std::vector<std::string> paths() const {
        std::vector<std::string> v;
        for (auto& l : lines_of(out))
            if (l.starts_with("/nix/store/")) v.push_back(l);
        return v;
    }
};

// A fresh local Nix store with a ferry.conf whose state directory (slots, probe
// cache, backoff) is private to this run. `extra_conf` lines are appended.
struct nix_build_env {
    hosts::local_store local;
    fs::path conf;

    explicit nix_build_env(const std::string& name, const std::string& extra_conf = "")
        : local(hosts::local_store::create(hosts::temporary_directory(name))), conf(local.directory() / "ferry.conf") {
        BOOST_TEST_REQUIRE(fs::exists(hook_path), hook_path << " is missing: build target `ferry` first");
        write_conf(extra_conf);
    }

    fs::path state_dir() const { return local.directory() / "ferry-state"; }

    void write_conf(const std::string& extra_conf) {
        std::ofstream(conf) << "state-dir = " << state_dir().string() << "\n" << extra_conf;
    }

    fs::path write_expr(const std::string& name, const std::string& text) {
        auto p = local.directory() / (name + ".nix");
        std::ofstream(p) << text;
        return p;
    }

    // The nix-build command line with ferry as the build hook and `builders`.
    std::string nix_build_command(const fs::path& expr, const std::string& builders,
                                  const std::string& extra = "") const {
        return fmt::format(
            "FERRY_CONFIG={} /usr/bin/nix-build {} --no-out-link --option build-hook {} --option substituters '' "
            "--builders {} {}",
            conf.string(), expr.string(), hook_path, sh_quote(builders), extra);
    }

    build_run nix_build(const fs::path& expr, const std::string& builders, const std::string& extra = "") {
        build_run r;
        auto cmd = nix_build_command(expr, builders, extra);
        auto t0 = std::chrono::steady_clock::now();
        r.status = local.run(cmd, &r.out, &r.err);
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        BOOST_TEST_MESSAGE(fmt::format("{} -> {} in {:.2f} s", cmd, r.status, r.seconds));
        return r;
    }

    bool valid_locally(const std::string& path) { return local.run("/usr/bin/nix-store --verify-path " + path) == 0; }

    // nix_build under coreutils' timeout (SIGKILL after `limit`): a build that
    // would be postponed forever fails its case (status 124 or 137) instead of
    // hanging the whole test executable.
    build_run nix_build_within(std::chrono::seconds limit, const fs::path& expr, const std::string& builders,
                               const std::string& extra = "") {
        build_run r;
        auto cmd = fmt::format("/usr/bin/timeout -s KILL {} /bin/sh -c {}", limit.count(),
                               sh_quote(nix_build_command(expr, builders, extra)));
        auto t0 = std::chrono::steady_clock::now();
        r.status = local.run(cmd, &r.out, &r.err);
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        BOOST_TEST_MESSAGE(fmt::format("{} -> {} in {:.2f} s", cmd, r.status, r.seconds));
        return r;
    }
};

inline bool valid_on_host(hosts::test_host& host, const std::string& path) {
    return host.run("/usr/bin/nix-store --check-validity " + path + " 2>/dev/null") == 0;
}

// ferry's GC roots left on a host (named ferry-*).
inline std::vector<std::string> remote_roots(hosts::test_host& host) {
    std::vector<std::string> v;
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(host.store_root() / "var/nix/gcroots", ec))
        if (e.path().filename().string().starts_with("ferry-")) v.push_back(e.path().string());
    return v;
}

// Runs the hook binary directly with `input` on stdin (as the daemon writes it).
struct hook_run {
    int status = -1;
    std::string out, err;
};
inline hook_run run_hook_directly(const std::string& input, unsigned verbosity, const std::string& env = "") {
    auto dir = hosts::temporary_directory("ferry-hook-proto");
    std::ofstream(dir / "in", std::ios::binary) << input;
    hook_run r;
    auto cmd = fmt::format("cd {0} && {1} {2} {3} <in >out 2>err; echo $? >status", dir.string(), env, hook_path,
                           verbosity);
    BOOST_TEST_REQUIRE(std::system(cmd.c_str()) == 0);
    auto slurp = [&](const char* name) {
        std::ifstream in(dir / name, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    r.status = std::stoi(slurp("status"));
    r.out = slurp("out");
    r.err = slurp("err");
    fs::remove_all(dir);
    return r;
}

// The daemon's settings preamble (Nix 2.8 binary hook protocol).
inline std::string settings_preamble(const std::vector<std::pair<std::string, std::string>>& settings) {
    std::string s;
    for (auto& [k, v] : settings) {
        protocol::wire::append_u64(s, 1);
        protocol::wire::append_string(s, k);
        protocol::wire::append_string(s, v);
    }
    protocol::wire::append_u64(s, 0);
    return s;
}

inline std::string try_request(bool am_willing, const std::string& system, const std::string& drv,
                               const std::vector<std::string>& features) {
    std::string s;
    protocol::wire::append_string(s, "try");
    protocol::wire::append_u64(s, am_willing ? 1 : 0);
    protocol::wire::append_string(s, system);
    protocol::wire::append_string(s, drv);
    protocol::wire::append_strings(s, features);
    return s;
}

// True once `pid` is gone (or a zombie waiting for its reaper), within ~10 s.
inline bool process_gone(pid_t pid) {
    for (int i = 0; i < 100; ++i) {
        if (::kill(pid, 0) != 0) return true;
        std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
        std::string line;
        std::getline(stat, line);
        auto close = line.rfind(')');
        if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z') return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
}

// A process the test started in the background (a nix-daemon, say): SIGTERM
// when the test ends, SIGKILL if it is still there 5 s later.
struct stopped_at_exit {
    pid_t pid;
    explicit stopped_at_exit(pid_t p) : pid(p) {}
    stopped_at_exit(const stopped_at_exit&) = delete;
    ~stopped_at_exit() {
        ::kill(pid, SIGTERM);
        for (int i = 0; i < 50 && ::kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        ::kill(pid, SIGKILL);
    }
};

// Waits (~10 s at most) for a builder to write its pid into `file` (write it to
// file.tmp and rename, so that a half-written number is never read); 0 if it never did.
inline pid_t wait_for_pid_file(const fs::path& file) {
    for (int i = 0; i < 500 && !fs::exists(file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pid_t pid = 0;
    std::ifstream(file) >> pid;
    return pid;
}

// The parent of `pid` (/proc/PID/stat), 0 when unknown.
inline pid_t parent_pid(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size()) return 0;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    pid_t parent = 0;
    rest >> state >> parent;
    return parent;
}

}  // namespace ferry::test_support
