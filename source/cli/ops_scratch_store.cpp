// g++ 12 reports a false -Wmismatched-new-delete on every Asio coroutine frame.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "ferry/cli/ops_scratch_store.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/hosts/test_host.hpp"
#include "ferry/io/child_process.hpp"
#include "ferry/util/error.hpp"

namespace ferry::cli {

namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

bool write_small_file(const std::string& path, const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    return ok;
}

// Root: a plain mount namespace. Otherwise an unprivileged user namespace in which
// this process is root (mapped to its own uid/gid), which may mount.
void enter_private_mount_namespace() {
    if (::unshare(CLONE_NEWNS) != 0) {
        int first = errno;
        uid_t uid = ::geteuid();
        gid_t gid = ::getegid();
        if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            throw failure(errc::unsupported,
                          fmt::format("a throwaway local store needs a private mount namespace: unshare: {} "
                                      "(run as root, or allow unprivileged user namespaces)",
                                      std::strerror(first)));
        write_small_file("/proc/self/setgroups", "deny");
        if (!write_small_file("/proc/self/uid_map", fmt::format("0 {} 1", uid)) ||
            !write_small_file("/proc/self/gid_map", fmt::format("0 {} 1", gid)))
            throw failure(errc::unsupported, "a throwaway local store: writing the user namespace's id maps failed");
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        throw failure(errc::unsupported, "a throwaway local store: making / private: " + errno_text());
}

void bind_over(const fs::path& from, const fs::path& onto, std::vector<std::string>& mounts) {
    if (!fs::is_directory(onto))
        throw failure(errc::unsupported,
                      fmt::format("a throwaway local store: {} does not exist here (no local store to stand in for)",
                                  onto.string()));
    if (::mount(from.c_str(), onto.c_str(), nullptr, MS_BIND, nullptr) != 0)
        throw failure(errc::unsupported,
                      fmt::format("a throwaway local store: bind mount over {}: {}", onto.string(), errno_text()));
    mounts.push_back(onto.string());
}

// "/nix/store" and "/nix/var/nix" share the root "/nix": one bind covers both.
std::optional<fs::path> common_root(const fs::path& store, const fs::path& state) {
    fs::path root = store.parent_path();
    if (root.empty() || root == "/") return std::nullopt;
    auto rel = state.lexically_relative(root);
    if (rel.empty() || *rel.begin() == "..") return std::nullopt;
    return root;
}

}  // namespace

void remove_tree(const fs::path& path) noexcept {
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(path, ec))) return;
    // Store paths are read-only directories: make them writable so their entries go.
    for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_directory(ec) && !it->is_symlink(ec))
            fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
}

scratch_store scratch_store::create(const store::store_config& real) {
    fs::path store_dir = real.store_dir, state_dir = real.state_dir;
    fs::path dir = hosts::temporary_directory("ferry-test-store");
    scratch_store scratch(store::store_config::make(real.flavour, real.store_dir, real.state_dir), dir);
    try {
        enter_private_mount_namespace();
        if (auto root = common_root(store_dir, state_dir)) {
            fs::path backing = dir / "root";
            fs::create_directories(backing / store_dir.lexically_relative(*root));
            fs::create_directories(backing / state_dir.lexically_relative(*root));
            bind_over(backing, *root, scratch.mounts_);
        } else {
            fs::create_directories(dir / "store");
            fs::create_directories(dir / "state");
            bind_over(dir / "store", store_dir, scratch.mounts_);
            bind_over(dir / "state", state_dir, scratch.mounts_);
        }
        // The store directory's usual mode (sticky, group-writable like /nix/store).
        ::chmod(store_dir.c_str(), 01775);
        fs::create_directories(dir / "src");
    } catch (...) {
        remove_tree(dir);
        scratch.directory_.clear();
        throw;
    }
    // The local tools must open this store directly, never a daemon of the real one.
    ::unsetenv("NIX_REMOTE");
    return scratch;
}

scratch_store::scratch_store(scratch_store&& other) noexcept
    : config_(std::move(other.config_)), directory_(std::move(other.directory_)), mounts_(std::move(other.mounts_)) {
    other.directory_.clear();
    other.mounts_.clear();
}

scratch_store::~scratch_store() {
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
    if (!directory_.empty()) remove_tree(directory_);
}

std::string scratch_store::add_text(const std::string& name, const std::string& content) const {
    fs::path file = directory_ / "src" / name;
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out << content;
        if (!out) throw failure(errc::bad_input, "writing " + file.string());
    }
    asio::io_context io(1);
    auto result = asio::co_spawn(io, io::run_process({"nix-store", "--add", file.string()}), asio::use_future);
    io.run();
    io::process_result r;
    try {
        r = result.get();
    } catch (const failure& f) {
        throw failure(f.code(), fmt::format("local nix-store --add: {}", f.what()));
    }
    if (r.status != 0)
        throw failure(errc::remote_failed, fmt::format("local `nix-store --add {}` failed (status {}): {}", file.string(),
                                                       r.status, r.err));
    while (!r.out.empty() && (r.out.back() == '\n' || r.out.back() == '\r')) r.out.pop_back();
    if (!r.out.starts_with(config_.store_dir + "/"))
        throw failure(errc::bad_input, fmt::format("local nix-store --add printed '{}', not a store path", r.out));
    return r.out;
}

}  // namespace ferry::cli
