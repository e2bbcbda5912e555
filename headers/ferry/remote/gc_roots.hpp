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
// (the connection died) stays until someone deletes it; its name starts with
// "ferry-" and it holds only symlinks.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/remote/nix_remote.hpp"
#include "ferry/ssh/session.hpp"

namespace ferry::remote {

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

private:
    ssh::session* session_ = nullptr;
    nix_remote_options options_;
    std::string directory_;
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
