// Private to the hosts layer: fork/exec with an optional mount-namespace setup in
// the child, output capture, and /proc walking to find and kill process trees.
//
// Everything the child does between fork and exec is async-signal-safe (the parent
// may be multi-threaded): all strings and argv arrays are built before fork.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace ferry::hosts::detail {

// How the child sees the file system before it execs.
struct mount_setup {
    // New private mount namespace with these (source, target) bind mounts.
    std::vector<std::pair<std::string, std::string>> binds;
    // Or: join the mount namespace of this process (its /proc/PID/ns/mnt).
    pid_t join_namespace_of = -1;
};

// Runs argv[0] (an absolute path) with argv, stdin from /dev/null and the inherited
// environment. stdout goes to *out (discarded when null); stderr to *err (inherited
// when null). Signal dispositions and the signal mask are reset, other fds closed.
// Returns the exit status, 128 + signal when killed, 127 when the setup or exec
// failed (the reason is then on stderr). Throws ferry::failure if fork/pipe fail.
int run_process(const std::vector<std::string>& argv, const mount_setup& setup, std::string* out,
                std::string* err);

// Same, throwing ferry::failure naming `step` and stderr's tail unless status is 0.
std::string run_checked(const std::string& step, const std::vector<std::string>& argv,
                        const mount_setup& setup = {});

// All pids whose parent chain leads to `root` (root excluded), from one /proc scan.
std::vector<pid_t> descendants(pid_t root);

// Every live process (other than `except`) whose /nix is the directory
// `store_root` (compared by device and inode through /proc/PID/root/nix): exactly
// the processes living on that test host, whatever their parent. Unlike a mount
// namespace's inode number, a directory's identity cannot be recycled while it exists.
std::vector<pid_t> processes_seeing_nix_at(const std::filesystem::path& store_root, pid_t except);

// True while pid exists and is not a zombie.
bool is_running(pid_t pid);

// SIGSTOPs the processes `collect()` returns until it returns nothing new (so none
// can fork away), then SIGKILLs them all. Returns the pids killed.
template <class Collect>
std::vector<pid_t> freeze_and_kill(Collect collect);

// Waits until none of `pids` is running (zombies count as gone); false on deadline.
bool wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds deadline);

// Last `lines` lines of a text file ("" if unreadable): for error messages.
std::string tail_of(const std::filesystem::path& file, int lines = 8);

// Makes `dir` (absolute) an empty directory holding the file `marker`: refuses a
// non-empty directory without that marker (we only ever wipe our own), and wipes
// one that has it. Throws ferry::failure naming `what`.
void prepare_directory(const std::filesystem::path& dir, const char* marker, const char* what);

// /proc/PID/cmdline with NULs turned into spaces ("" if gone).
std::string command_line_of(pid_t pid);

std::string read_file(const std::filesystem::path& file);
void write_file(const std::filesystem::path& file, const std::string& content);

}  // namespace ferry::hosts::detail

#include <signal.h>

#include <algorithm>

namespace ferry::hosts::detail {

template <class Collect>
std::vector<pid_t> freeze_and_kill(Collect collect) {
    std::vector<pid_t> seen;
    // Bounded: a fork bomb cannot keep this looping forever.
    for (int round = 0; round < 50; ++round) {
        bool grew = false;
        for (pid_t pid : collect()) {
            if (std::find(seen.begin(), seen.end(), pid) != seen.end()) continue;
            ::kill(pid, SIGSTOP);
            seen.push_back(pid);
            grew = true;
        }
        if (!grew) break;
    }
    for (pid_t pid : seen) ::kill(pid, SIGKILL);
    return seen;
}

}  // namespace ferry::hosts::detail
