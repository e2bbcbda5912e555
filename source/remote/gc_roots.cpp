#include "ferry/remote/gc_roots.hpp"

#include <random>

#include <asio/this_coro.hpp>
#include <fmt/core.h>

#include "ferry/io/deadline.hpp"
#include "ferry/ssh/quote.hpp"
#include "ferry/util/error.hpp"

namespace ferry::remote {

namespace {

std::string random_suffix() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
}

std::string sh(const std::string& script) { return "sh -c " + ssh::shell_quote(script); }

asio::awaitable<ssh::command_result> checked(ssh::session& s, std::string command, std::string input,
                                             const char* step) {
    auto r = co_await ssh::run(s, command, std::move(input), 1 << 20);
    if (!r.status.success())
        throw failure(errc::remote_failed, fmt::format("{}: gc roots: {}: `{}` ended with {}: {}", s.host(), step,
                                                       command, r.status.describe(), r.err));
    co_return r;
}

}  // namespace

remote_roots::remote_roots(remote_roots&& other) noexcept
    : session_(other.session_), options_(std::move(other.options_)), directory_(std::move(other.directory_)) {
    other.directory_.clear();
}

remote_roots& remote_roots::operator=(remote_roots&& other) noexcept {
    session_ = other.session_;
    options_ = std::move(other.options_);
    directory_ = std::move(other.directory_);
    other.directory_.clear();
    return *this;
}

asio::awaitable<remote_roots> remote_roots::create(ssh::session& s, nix_remote_options options) {
    remote_roots r;
    r.session_ = &s;
    r.options_ = std::move(options);
    const std::string base = r.options_.state_dir + "/gcroots";
    // Root may write gcroots/ itself; other users get Nix's per-user directory.
    std::string script = fmt::format(
        "set -e; d={0}; if [ ! -w \"$d\" ]; then d=\"$d/per-user/$(id -un)\"; fi; d=\"$d/ferry-{1}\"; "
        "mkdir -p \"$d\"; printf '%s' \"$d\"",
        ssh::shell_quote(base), random_suffix());
    auto out = co_await checked(s, sh(script), {}, "create");
    if (out.out.find("/gcroots/") == std::string::npos || out.out.find("/ferry-") == std::string::npos)
        throw failure(errc::bad_input, fmt::format("{}: gc roots: unexpected directory '{}'", s.host(), out.out));
    r.directory_ = out.out;
    co_return r;
}

asio::awaitable<void> remote_roots::add(const std::vector<std::string>& paths) {
    if (!active()) throw failure(errc::cancelled, "gc roots: add after remove");
    if (paths.empty()) co_return;
    check_store_paths(options_, paths);
    std::string input;
    for (const auto& p : paths) input += p + "\n";
    std::string script = fmt::format(
        "cd {} && while IFS= read -r p; do ln -sfn \"$p\" \"${{p##*/}}\" || exit 1; done",
        ssh::shell_quote(directory_));
    co_await checked(*session_, sh(script), std::move(input), "add");
}

asio::awaitable<void> remote_roots::remove() {
    if (!active()) co_return;
    co_await checked(*session_, "rm -rf " + ssh::shell_quote(directory_), {}, "remove");
    directory_.clear();
}

namespace detail {

asio::awaitable<void> remove_roots_quietly(remote_roots& roots, std::chrono::milliseconds deadline) noexcept {
    try {
        // After a cancellation the coroutine's state is still "cancelled": clean up anyway.
        co_await asio::this_coro::reset_cancellation_state();
        co_await io::with_deadline(roots.remove(), deadline, "gc roots: remove");
    } catch (...) {
    }
}

}  // namespace detail

}  // namespace ferry::remote
