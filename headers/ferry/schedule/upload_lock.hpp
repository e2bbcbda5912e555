// One upload at a time per build machine, across every hook process on this host.
//
// Two hooks offloading to the same machine at once often need the same inputs
// (a shared toolchain, a big source tarball). Each asks the machine which
// inputs are missing, and without coordination both would send them. The
// upload lock is held while a hook computes its missing set and sends it,
// never for the build. Nix's build-remote.cc has the same per-machine lock
// around its copyPaths (15 minutes, then "somebody is hogging the upload
// lock"), but takes it before asking, so a hook with nothing to send still
// queues behind a big upload. ferry asks first:
//
//   missing = ask();                       // no lock: usually nothing is missing
//   if (!missing.empty()) {
//       auto turn = co_await acquire_upload_lock(state, m, drv);   // may wait
//       missing = ask();                   // another hook may have sent them
//       send(missing);
//   }                                      // turn released before the build
//
// Layout: <state>/ferry/upload/<name>:<port>/0, an OFD write lock on the whole
// file (the slot mechanism, slot.hpp: lock_any with one file), so a hook that
// dies releases it with its descriptor. The holder writes "pid <pid> <what>"
// into the file, for the waiters' log line only.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

#include <asio/awaitable.hpp>

#include "ferry/schedule/machine.hpp"
#include "ferry/schedule/slot.hpp"

namespace ferry::schedule {

// <state_dir>/ferry/upload/<name>:<port>
std::filesystem::path upload_lock_directory(const std::filesystem::path& state_dir, const machine& m);

// A held upload lock (or, after max_wait ran out, none: see acquired()).
// Move-only; released by release() or destruction.
class upload_lock {
public:
    upload_lock() = default;

    // False when the wait was given up (max_wait) or for a default-constructed one.
    bool acquired() const noexcept { return lock_.held(); }
    void release() noexcept { lock_.release(); }
    // Whether another process (or coroutine) held it when we asked, and how long
    // we waited for it. Zero when it was free.
    bool contended() const noexcept { return contended_; }
    std::chrono::steady_clock::duration waited() const noexcept { return waited_; }
    // After a wait: what the holder we waited for last wrote ("pid 123
    // /nix/store/...drv"); empty when unknown or the lock was free.
    const std::string& holder() const noexcept { return holder_; }

    // For acquire_upload_lock.
    upload_lock(slot lock, bool contended, std::chrono::steady_clock::duration waited, std::string holder)
        : lock_(std::move(lock)), contended_(contended), waited_(waited), holder_(std::move(holder)) {}

private:
    slot lock_;
    bool contended_ = false;
    std::chrono::steady_clock::duration waited_{0};
    std::string holder_;
};

struct upload_lock_options {
    slot_wait_options wait;
    // A holder that hangs must not hang every other hook: after this long the
    // waiter goes on without the lock (at worst it sends paths twice), as Nix's
    // build-remote does after 15 minutes. The holder's own transfer deadlines
    // normally end a stuck upload long before.
    std::chrono::milliseconds max_wait{std::chrono::minutes(15)};
};

// Takes the machine's upload lock, waiting (without blocking the thread: the
// slot layer's inotify + poll wait) while another hook holds it. `what` (the
// derivation, say) is written into the lock file for the waiters' message.
// Honours cancellation. Throws ferry::failure when the lock file cannot be
// created or opened.
asio::awaitable<upload_lock> acquire_upload_lock(const std::filesystem::path& state_dir, const machine& m,
                                                 std::string what, upload_lock_options options = {});

// The log line for a hook that waited, e.g. "ferry: waited 1.42 s for another
// hook's upload to ssh://host (pid 123 /nix/store/...-x.drv) before sending
// to it"; empty when the lock was free.
std::string describe_wait(const upload_lock& lock, std::string_view machine_uri);

}  // namespace ferry::schedule
