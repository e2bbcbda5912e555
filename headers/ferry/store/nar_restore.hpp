// Recreating a file system tree from NAR events (see protocol/nar.hpp).
//
// nar_restorer writes the object at `target`, which must not exist yet; every
// file is created with O_EXCL | O_NOFOLLOW under directories the restorer itself
// made, and names were already checked by the parser, so nothing is written
// outside target. Metadata is canonicalised as Nix's canonicalisePathMetaData
// leaves it: mode 0444 (0555 if executable, and for directories), mtime 1 (also on
// symlinks). On any failure the caller calls abort(), which removes what was
// written; the destructor does the same if neither finish() nor abort() ran.
//
// nar_restore_stream couples parser, restorer and SHA-256 for a standalone NAR
// stream fed in arbitrary chunks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/protocol/nar.hpp"
#include "ferry/store/hash.hpp"

namespace ferry::store {

class nar_restorer {
public:
    explicit nar_restorer(std::string target);
    ~nar_restorer();
    nar_restorer(const nar_restorer&) = delete;
    nar_restorer& operator=(const nar_restorer&) = delete;

    void on_event(const protocol::nar::event& e);
    bool complete() const { return complete_; }
    void abort() noexcept;          // remove everything written
    void release() { released_ = true; }  // keep the tree (after a successful rename/registration)
    const std::string& target() const { return target_; }

private:
    void close_file();
    std::string target_;
    std::vector<std::string> paths_;  // path of the current directory chain
    std::string pending_name_;
    int fd_ = -1;
    std::string file_path_;
    bool file_executable_ = false;
    bool started_ = false, complete_ = false, released_ = false;
};

class nar_restore_stream {
public:
    explicit nar_restore_stream(std::string target, protocol::nar::parser_limits limits = {});
    void feed(std::string_view bytes);
    // Throws failure(truncated) if the archive is incomplete. Returns the NAR hash.
    sha256_digest finish();
    std::uint64_t nar_size() const { return parser_.offset(); }
    nar_restorer& restorer() { return restorer_; }

private:
    protocol::nar::parser parser_;
    nar_restorer restorer_;
    sha256 hash_;
};

// Removes a tree that may contain read-only directories (made writable first).
// Never follows symlinks. Missing path is not an error.
void remove_tree(const std::string& path) noexcept;

}  // namespace ferry::store
