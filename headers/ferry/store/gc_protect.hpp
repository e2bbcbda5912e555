// Protection from the garbage collector and from concurrent builders, following
// the protocols of the daemon ferry coexists with.
//
// Lock primitive: Nix 2.8 uses flock(2) everywhere (pathlocks.cc lockFile); Guix's
// daemon (Nix 1.x code) uses fcntl(2) record locks. On Linux they are independent,
// so the store flavour selects the one the daemon uses.
//
// temp_roots: Nix 2.8 (gc.cc addTempRoot): <state>/temproots/<pid> is created
// and exclusively locked for the lifetime of this object — the collector treats
// the file of a live (locked) process as roots — and each path is appended
// NUL-terminated while holding a shared lock on <state>/gc.lock; if the collector
// holds gc.lock, the path is sent to it over <state>/gc-socket/socket instead
// ("path\n", one byte of acknowledgement) before being appended. Guix's daemon
// (Nix 1.x protocol) reads the file under a write lock, so there the file is kept
// read-locked (created under a shared lock on gc.lock) and upgraded to a write
// lock around each append.
//
// path_lock: Nix's PathLocks: an exclusive lock on <path>.lock, re-opened if the
// file turns out stale (unlinked by the previous holder, who writes a byte into
// it first); on release the lock file is deleted the same way.
#pragma once

#include <string>

#include "ferry/store/store_path.hpp"

namespace ferry::store {

class temp_roots {
public:
    explicit temp_roots(store_config config);
    ~temp_roots();
    temp_roots(const temp_roots&) = delete;
    temp_roots& operator=(const temp_roots&) = delete;

    void add(const std::string& path);
    const std::string& file() const { return file_; }

private:
    void open_file();
    store_config config_;
    std::string file_;
    int fd_ = -1;
    int gc_lock_fd_ = -1;
};

class path_lock {
public:
    path_lock() = default;
    path_lock(const std::string& path, store_flavour flavour);
    ~path_lock();
    path_lock(path_lock&& other) noexcept;
    path_lock& operator=(path_lock&& other) noexcept;
    bool held() const { return fd_ >= 0; }
    void release() noexcept;

private:
    std::string lock_file_;
    int fd_ = -1;
};

// A fresh name in the store directory that parses as a store path (so the
// collector consults the temp roots rather than deleting it on sight).
std::string random_store_path(const store_config& config, std::string_view name);

}  // namespace ferry::store
