// A throwaway local store for `ferry test`: fresh, empty directories bound over
// the local store and state directories (e.g. /nix) in a private mount namespace
// of this process, so the import/export checks neither read nor write the real
// local store, and every check starts from nothing. The local Nix tools
// (nix-store) and ferry's store layer both see it, because they see /nix.
//
// Needs CAP_SYS_ADMIN (root), else an unprivileged user namespace; create() fails
// with a message saying so when neither is possible. Call create() while the
// process is still single-threaded: a mount namespace is per thread, and only
// threads started afterwards share it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ferry/store/store_path.hpp"

namespace ferry::cli {

class scratch_store {
public:
    // `real` names the directories to cover (store_dir, state_dir; the database
    // path is derived). Throws ferry::failure naming the step.
    static scratch_store create(const store::store_config& real);

    scratch_store(scratch_store&&) noexcept;
    scratch_store& operator=(scratch_store&&) = delete;
    scratch_store(const scratch_store&) = delete;
    ~scratch_store();  // unmounts and removes the directory

    const store::store_config& config() const { return config_; }
    const std::filesystem::path& directory() const { return directory_; }

    // Adds a fresh regular file named `name` holding `content` with the local
    // `nix-store --add` (into this store) and returns its store path. Throws
    // ferry::failure with nix-store's stderr.
    std::string add_text(const std::string& name, const std::string& content) const;

private:
    scratch_store(store::store_config c, std::filesystem::path d) : config_(std::move(c)), directory_(std::move(d)) {}
    store::store_config config_;
    std::filesystem::path directory_;  // in /tmp, the backing of the binds
    std::vector<std::string> mounts_;  // mount points, for unmounting
};

// Removes a tree that may hold read-only store directories (made writable first).
void remove_tree(const std::filesystem::path& path) noexcept;

}  // namespace ferry::cli
