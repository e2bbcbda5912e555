// A private Nix 2.8 store for tests: NIX_STORE_DIR / NIX_STATE_DIR / NIX_LOG_DIR /
// NIX_CONF_DIR point into a fresh temporary directory, so `nix-store --add`,
// `--export`, `--verify` and `nix-instantiate` run as a local store there without
// touching /nix. ferry's store_config::from_environment() then sees the same store.
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "ferry/store/nar_restore.hpp"

namespace ferry_test {

inline std::string make_temp_dir(const char* tag) {
    std::string tmpl = std::string("/tmp/ferry-") + tag + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    return tmpl;
}

// Runs a shell command; returns its stdout; throws on non-zero exit.
inline std::string run(const std::string& command) {
    FILE* p = ::popen(command.c_str(), "r");
    if (!p) throw std::runtime_error("popen failed: " + command);
    std::string out;
    char buf[65536];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = ::pclose(p);
    if (status != 0) throw std::runtime_error("command failed (" + std::to_string(status) + "): " + command);
    return out;
}

inline std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

struct private_nix_store {
    std::string root = make_temp_dir("nix");
    std::string store_dir = root + "/store";
    std::string state_dir = root + "/var";

    private_nix_store() {
        std::filesystem::create_directories(root + "/etc");
        std::ofstream(root + "/etc/nix.conf") << "build-users-group =\nsandbox = false\nsubstitute = false\n";
        ::setenv("NIX_STORE_DIR", store_dir.c_str(), 1);
        ::setenv("NIX_STATE_DIR", state_dir.c_str(), 1);
        ::setenv("NIX_LOG_DIR", (root + "/log").c_str(), 1);
        ::setenv("NIX_CONF_DIR", (root + "/etc").c_str(), 1);
        ::setenv("NIX_REMOTE", "local", 1);
        // Initialise the store and database.
        run("nix-store --init");
    }
    ~private_nix_store() { ferry::store::remove_tree(root); }
    private_nix_store(const private_nix_store&) = delete;
};

inline void write_file(const std::string& path, const std::string& content, bool executable = false) {
    std::ofstream(path, std::ios::binary) << content;
    std::filesystem::permissions(path, executable ? std::filesystem::perms(0755) : std::filesystem::perms(0644));
}

// A tree with regular files, an executable, symlinks, nested and empty directories,
// names that sort differently bytewise vs. naively (upper case, dots).
inline void make_sample_tree(const std::string& dir) {
    namespace fs = std::filesystem;
    fs::create_directories(dir + "/sub/deeper/empty");
    fs::create_directories(dir + "/Zdir");
    write_file(dir + "/a", "hello\n");
    write_file(dir + "/B", "");
    write_file(dir + "/run.sh", "#!/bin/sh\necho 12345678\n", true);
    write_file(dir + "/sub/eight888", "exactly8");
    write_file(dir + "/sub/deeper/.hidden", std::string(100000, 'x'));
    fs::create_symlink("../a", dir + "/sub/link");
    fs::create_symlink("/nonexistent/target", dir + "/dangling");
    write_file(dir + "/Zdir/a.b", "dots");
}

}  // namespace ferry_test
