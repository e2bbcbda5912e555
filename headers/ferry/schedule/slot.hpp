// Build slots: at most max_jobs concurrent offloads per machine, across every
// hook process on this host.
//
// Layout (shared with guix offload): <state>/offload/<name>:<port>/<n> for n in
// [0, max_jobs). A slot is held by an exclusive lock on the whole file. ferry
// uses open-file-description locks (F_OFD_SETLK): they conflict with the
// classic fcntl F_SETLK locks guix offload takes on the same files, they
// conflict between two descriptors of the same process (so two schedulers in
// one process get distinct slots), and closing some other descriptor of the
// file does not drop them (the classic lock's trap).
// Note: Nix's build-remote uses flock(2) on its own files
// (<nix state>/current-load/<uri>-<n>); flock and fcntl/OFD locks do not
// interact on Linux, so ferry does not share slots with Nix's own hook.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include <asio/awaitable.hpp>

#include "ferry/schedule/machine.hpp"

namespace ferry::schedule {

// A held slot. Move-only; the lock is released when the slot is destroyed or
// release() is called (the descriptor is closed).
class slot {
public:
    slot() = default;
    slot(int fd, unsigned index, std::filesystem::path path) noexcept;
    slot(slot&& other) noexcept;
    slot& operator=(slot&& other) noexcept;
    slot(const slot&) = delete;
    slot& operator=(const slot&) = delete;
    ~slot();

    bool held() const noexcept { return fd_ >= 0; }
    unsigned index() const noexcept { return index_; }
    // The locked descriptor (open read-write), -1 when not held. Writing to it
    // wakes no waiter; closing it (release) does.
    int native_handle() const noexcept { return fd_; }
    const std::filesystem::path& path() const noexcept { return path_; }
    void release() noexcept;

private:
    int fd_ = -1;
    unsigned index_ = 0;
    std::filesystem::path path_;
};

// <state_dir>/offload/<name>:<port>
std::filesystem::path slot_directory(const std::filesystem::path& state_dir, const machine& m);

// Tries slots 0..max_jobs-1 in order (the order guix offload uses, so that
// concurrent hooks race on the same file) without waiting. nullopt when all
// are taken. Throws ferry::failure when the directory or a file cannot be
// created or opened.
std::optional<slot> try_acquire_slot(const std::filesystem::path& state_dir, const machine& m);

struct slot_wait_options {
    // Fallback poll interval, doubled after each empty wake-up up to max_poll.
    // Releases by ferry or guix offload (a close of a descriptor opened for
    // writing) wake the waiter at once through inotify; the poll only covers
    // file systems without inotify and releases that leave the file open.
    std::chrono::milliseconds min_poll{50};
    std::chrono::milliseconds max_poll{1000};
};

// Waits until a slot of `m` is free and takes it. Never blocks the thread:
// waits on inotify (IN_CLOSE_WRITE in the slot directory) or a backoff timer.
// Honours cancellation of the awaiting coroutine. Keeps its candidate
// descriptors open while waiting so its own retries create no inotify events.
asio::awaitable<slot> acquire_slot(const std::filesystem::path& state_dir, const machine& m,
                                   slot_wait_options options = {});

// The mechanism under slots, for any set of lock files: an exclusive OFD lock
// on one of <dir>/0 .. <dir>/<count-1>, taken in that order. `dir` is created.
// The machine's slots are lock_any(slot_directory(state, m), m.max_jobs); the
// upload lock (upload_lock.hpp) is a set of one. Same errors and waiting as above.
std::optional<slot> try_lock_any(const std::filesystem::path& dir, unsigned count);
asio::awaitable<slot> lock_any(const std::filesystem::path& dir, unsigned count, slot_wait_options options = {});

}  // namespace ferry::schedule
