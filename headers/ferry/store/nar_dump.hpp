// NAR serialisation of a file system tree, pull-based with bounded memory.
//
// nar_source walks the tree lazily: each next_chunk() returns at most about
// chunk_size bytes (plus one small header) and reads file contents straight into
// that buffer, so a 1 GB file streams through a 1 MiB buffer. Output equals
// `nix-store --dump` byte for byte: entries in byte order, the executable bit taken
// from S_IXUSR, symlink targets verbatim. The SHA-256 of everything produced so
// far is computed on the way (the NAR hash once next_chunk() returned empty).
// A file that changes size while it is read is an error (Nix's "file changed").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ferry/store/hash.hpp"

namespace ferry::store {

class nar_source {
public:
    explicit nar_source(std::string path, std::size_t chunk_size = 1 << 20);
    ~nar_source();
    nar_source(nar_source&&) noexcept;
    nar_source& operator=(nar_source&&) noexcept;

    // The next bytes; empty once the archive is complete. The view is valid until
    // the next call. Throws ferry::failure naming the path on I/O errors.
    std::string_view next_chunk();

    bool finished() const;
    std::uint64_t bytes_produced() const;
    sha256_digest digest() const;  // only once finished()

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Convenience for small trees and tests: the whole NAR in memory.
std::string dump_to_string(const std::string& path);

}  // namespace ferry::store
