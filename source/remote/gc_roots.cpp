#include "ferry/remote/gc_roots.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

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

std::string read_proc_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// /proc/<pid>/stat: the state (field 3) and the start time (field 22), counted
// after the command name's closing parenthesis (the name may hold spaces).
struct proc_stat {
    char state = 0;
    std::uint64_t start_time = 0;
};
std::optional<proc_stat> read_proc_stat(long pid) {
    auto text = read_proc_file(fmt::format("/proc/{}/stat", pid));
    auto close = text.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream fields(text.substr(close + 1));
    proc_stat st;
    std::string skip;
    fields >> st.state;
    for (int field = 4; field < 22; ++field) fields >> skip;
    fields >> st.start_time;
    if (!fields) return std::nullopt;
    return st;
}

bool all_of_set(std::string_view s, std::string_view set) {
    return !s.empty() && s.find_first_not_of(set) == std::string_view::npos;
}

template <class T>
bool parse_decimal(std::string_view s, T& out) {
    if (!all_of_set(s, "0123456789") || s.size() > 19) return false;
    return std::from_chars(s.data(), s.data() + s.size(), out).ec == std::errc{};
}

// The first line of create's output is the new directory; the others name the
// directories of the same pid space beside it.
std::vector<std::string> stale_siblings(const std::string& listing, const std::string& own) {
    std::vector<std::string> stale;
    const auto& self = root_owner::self();
    std::istringstream in(listing);
    for (std::string name; std::getline(in, name);) {
        if (name == own) continue;
        auto owner = parse_root_directory_name(name);
        if (owner && self.same_pid_space(*owner) && !owner->alive()) stale.push_back(name);
    }
    return stale;
}

}  // namespace

const root_owner& root_owner::self() {
    static const root_owner me = [] {
        root_owner o;
        std::string boot;
        for (char c : read_proc_file("/proc/sys/kernel/random/boot_id"))
            if (std::isxdigit(static_cast<unsigned char>(c))) boot += static_cast<char>(std::tolower(c));
        struct stat ns {};
        auto st = read_proc_stat(::getpid());
        if (boot.size() != 32 || ::stat("/proc/self/ns/pid", &ns) != 0 || !st) return o;
        o.boot = boot;
        o.pid_namespace = ns.st_ino;
        o.pid = ::getpid();
        o.start_time = st->start_time;
        return o;
    }();
    return me;
}

bool root_owner::alive() const {
    auto st = read_proc_stat(pid);
    return st && st->state != 'Z' && st->state != 'X' && st->start_time == start_time;
}

std::string root_directory_name(const root_owner& owner, std::string_view random_part) {
    if (owner.boot.empty()) return fmt::format("ferry-{}", random_part);
    return fmt::format("ferry-{}-{}-{}-{}-{}", owner.boot, owner.pid_namespace, owner.pid, owner.start_time,
                       random_part);
}

std::optional<root_owner> parse_root_directory_name(std::string_view name) {
    if (!name.starts_with("ferry-")) return std::nullopt;
    name.remove_prefix(6);
    std::vector<std::string_view> parts;
    for (std::size_t start = 0;;) {
        auto dash = name.find('-', start);
        parts.push_back(name.substr(start, dash == std::string_view::npos ? dash : dash - start));
        if (dash == std::string_view::npos || parts.size() > 5) break;
        start = dash + 1;
    }
    constexpr std::string_view hex = "0123456789abcdef";
    if (parts.size() != 5 || parts[0].size() != 32 || !all_of_set(parts[0], hex) || !all_of_set(parts[4], hex))
        return std::nullopt;
    root_owner o;
    o.boot = std::string(parts[0]);
    if (!parse_decimal(parts[1], o.pid_namespace) || !parse_decimal(parts[2], o.pid) ||
        !parse_decimal(parts[3], o.start_time) || o.pid <= 0)
        return std::nullopt;
    return o;
}

remote_roots::remote_roots(remote_roots&& other) noexcept
    : session_(other.session_),
      options_(std::move(other.options_)),
      directory_(std::move(other.directory_)),
      swept_(other.swept_) {
    other.directory_.clear();
}

remote_roots& remote_roots::operator=(remote_roots&& other) noexcept {
    session_ = other.session_;
    options_ = std::move(other.options_);
    directory_ = std::move(other.directory_);
    swept_ = other.swept_;
    other.directory_.clear();
    return *this;
}

asio::awaitable<remote_roots> remote_roots::create(ssh::session& s, nix_remote_options options) {
    remote_roots r;
    r.session_ = &s;
    r.options_ = std::move(options);
    const std::string base = r.options_.state_dir + "/gcroots";
    const auto& self = root_owner::self();
    const std::string name = root_directory_name(self, random_suffix());
    // Names of this pid space's directories: "ferry-<boot>-<pidns>-" (or nothing to list).
    const std::string space = self.boot.empty() ? std::string() : fmt::format("ferry-{}-{}-", self.boot, self.pid_namespace);
    // Root may write gcroots/ itself; other users get Nix's per-user directory.
    std::string script = fmt::format(
        "set -e; d={0}; if [ ! -w \"$d\" ]; then d=\"$d/per-user/$(id -un)\"; fi; "
        "mkdir -p \"$d\"/{1}; printf '%s' \"$d\"/{1}",
        ssh::shell_quote(base), ssh::shell_quote(name));
    if (!space.empty())
        script += fmt::format("; for e in \"$d\"/{}*; do if [ -d \"$e\" ]; then printf '\\n%s' \"${{e##*/}}\"; fi; done",
                              ssh::shell_quote(space));
    auto out = co_await checked(s, sh(script), {}, "create");
    const std::string directory = out.out.substr(0, out.out.find('\n'));
    if (directory.find("/gcroots/") == std::string::npos || !directory.ends_with("/" + name))
        throw failure(errc::bad_input, fmt::format("{}: gc roots: unexpected directory '{}'", s.host(), directory));
    r.directory_ = directory;
    auto stale = stale_siblings(out.out.substr(directory.size()), name);
    if (!stale.empty()) {
        const std::string parent = directory.substr(0, directory.size() - name.size());
        std::string command = "rm -rf --";
        for (const auto& n : stale) command += " " + ssh::shell_quote(parent + n);
        // Best effort: a sweep that fails leaves what was there before.
        std::string no_input;
        auto done = co_await ssh::run(s, command, std::move(no_input), 1 << 16);
        if (done.status.success()) r.swept_ = stale.size();
    }
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
