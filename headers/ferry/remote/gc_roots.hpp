// Protecting paths on a build machine from its garbage collector for the length
// of one offload: a fresh directory <state>/gcroots/ferry-<random>/ (or, for a user
// who cannot write there, <state>/gcroots/per-user/<user>/ferry-<random>/) with
// one symlink per path (Nix's collector follows symlinks below gcroots/ and keeps
// their store targets). One `sh -c` command creates the directory, one adds any
// number of roots (paths on stdin, so no argv limit), one removes it.
//
// Add the inputs' roots BEFORE asking which paths the machine lacks: a path it
// has when asked must still be there when the build starts. Add the outputs'
// roots after the build, before copying them back.
//
// Removal is asynchronous, so it cannot happen in a destructor: call remove()
// on every path out (with_remote_roots does, also on failure and cancellation,
// under its own short deadline). A root directory that could not be removed
// (the connection died, or the hook was SIGKILLed as the daemon does when it
// gives up) is swept by a later offload from the same client: see below.
//
// Stale roots. The directory's name says which process made it:
//   ferry-<boot id>-<pid namespace>-<pid>-<start time>-<random>
// (boot id: /proc/sys/kernel/random/boot_id without dashes; pid namespace: the
// inode of /proc/self/ns/pid; start time: /proc/<pid>/stat field 22). create()
// lists the directories next to the new one that come from the same pid space
// (same boot id and pid namespace: only there can a pid be checked) and removes
// those whose owner is gone: no such process, a zombie, or another start time (a
// reused pid). Directories of other clients, other pid namespaces or earlier
// boots are never judged (they stay, as before); nor are names in the old
// "ferry-<random>" form.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/remote/nix_remote.hpp"
#include "ferry/ssh/session.hpp"

namespace ferry::remote {

// Who made a root directory (see the name format above).
struct root_owner {
    std::string boot;                 // boot id, 32 lower-case hex digits
    std::uint64_t pid_namespace = 0;  // inode of the owner's /proc/self/ns/pid
    long pid = 0;
    std::uint64_t start_time = 0;     // clock ticks after boot

    // This process; boot empty when /proc does not tell (then nothing is swept).
    static const root_owner& self();
    bool same_pid_space(const root_owner& other) const {
        return !boot.empty() && boot == other.boot && pid_namespace == other.pid_namespace;
    }
    // Whether the owner still runs. Meaningful only for same_pid_space(self()).
    bool alive() const;
};

// "ferry-<boot>-<pidns>-<pid>-<start>-<random_part>"; "ferry-<random_part>" when
// owner.boot is empty.
std::string root_directory_name(const root_owner& owner, std::string_view random_part);
// The owner named by a directory name, nullopt for any other name (the old form,
// foreign files). Strict: only what root_directory_name makes parses.
std::optional<root_owner> parse_root_directory_name(std::string_view name);

class remote_roots {
public:
    // Creates the directory on the machine. Throws ferry::failure naming the host.
    static asio::awaitable<remote_roots> create(ssh::session& s, nix_remote_options options);

    remote_roots() = default;
    remote_roots(remote_roots&& other) noexcept;
    remote_roots& operator=(remote_roots&& other) noexcept;
    ~remote_roots() = default;  // cannot remove (asynchronous): see remove()

    // One symlink per path (idempotent). Paths must be under the store directory.
    asio::awaitable<void> add(const std::vector<std::string>& paths);
    // Deletes the directory and its roots. Idempotent; no-op when nothing was created.
    asio::awaitable<void> remove();

    const std::string& directory() const { return directory_; }
    bool active() const { return !directory_.empty(); }
    // Stale root directories of dead owners that create() removed.
    std::size_t swept() const { return swept_; }

private:
    ssh::session* session_ = nullptr;
    nix_remote_options options_;
    std::string directory_;
    std::size_t swept_ = 0;
};

// Runs body(roots) with a fresh root directory and removes it afterwards, whether
// body returned, threw or was cancelled; the removal gets `cleanup_deadline`.
// A removal failure after a body failure is swallowed (the body's error wins).
template <class T, class F>
asio::awaitable<T> with_remote_roots(ssh::session& s, nix_remote_options options, F body,
                                     std::chrono::milliseconds cleanup_deadline = std::chrono::seconds(30));

namespace detail {
asio::awaitable<void> remove_roots_quietly(remote_roots& roots, std::chrono::milliseconds deadline) noexcept;
}

template <class T, class F>
asio::awaitable<T> with_remote_roots(ssh::session& s, nix_remote_options options, F body,
                                     std::chrono::milliseconds cleanup_deadline) {
    remote_roots roots = co_await remote_roots::create(s, std::move(options));
    std::exception_ptr error;
    if constexpr (std::is_void_v<T>) {
        try {
            co_await body(roots);
        } catch (...) {
            error = std::current_exception();
        }
        if (error) {
            co_await detail::remove_roots_quietly(roots, cleanup_deadline);
            std::rethrow_exception(error);
        }
        co_await roots.remove();
    } else {
        T value{};
        try {
            value = co_await body(roots);
        } catch (...) {
            error = std::current_exception();
        }
        if (error) {
            co_await detail::remove_roots_quietly(roots, cleanup_deadline);
            std::rethrow_exception(error);
        }
        co_await roots.remove();
        co_return value;
    }
}

}  // namespace ferry::remote
