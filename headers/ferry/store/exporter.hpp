// Writing export bundles from the local store, pull-based (`nix-store --export`).
//
// bundle_source puts the paths in the order Nix's exportPaths uses (topoSortPaths
// reversed: references first, ties broken as Nix's depth-first walk over the
// StorePath-ordered set), streams each NAR from the file system with bounded
// memory, and refuses a path whose NAR hash no longer matches the database (as
// Nix does: corruption must not spread; the item's trailer is never written).
// Item trailers carry the references (sorted), the deriver and signature flag 0,
// so the bytes equal Nix 2.8's.
//
// Speed: SHA-256 is most of the work, so NARs are hashed on hash_threads worker
// threads (default_hash_threads(); 0 = on the calling thread) while the calling
// thread reads ahead, and different store paths are hashed on different workers
// at the same time; when every worker is busy the calling thread hashes the next
// path itself. Read-ahead is bounded: at most 128 pieces of min(chunk_size,
// 256 KiB) exist at once (32 MiB). Pieces of at least half that size are handed
// out as they are (so chunks may be smaller than chunk_size), smaller ones are
// gathered. Errors keep their place in the stream: a path that cannot be read
// fails next_chunk() only after everything before it was handed out.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/store/database.hpp"

namespace ferry::store {

class bundle_source {
public:
    static constexpr int automatic = -1;
    bundle_source(store_database& db, const std::vector<std::string>& paths, std::size_t chunk_size = 1 << 20,
                  int hash_threads = automatic);
    ~bundle_source();  // stops the workers
    bundle_source(bundle_source&&) noexcept;
    bundle_source& operator=(bundle_source&&) noexcept;

    // Next bytes of the bundle; empty when complete. Valid until the next call.
    std::string_view next_chunk();
    const std::vector<std::string>& order() const;
    std::uint64_t bytes_produced() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace ferry::store
