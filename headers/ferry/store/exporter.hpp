// Writing export bundles from the local store, pull-based (`nix-store --export`).
//
// bundle_source puts the paths in the order Nix's exportPaths uses (topoSortPaths
// reversed: references first, ties broken as Nix's depth-first walk over the
// StorePath-ordered set), streams each NAR from the file system with bounded
// memory, and refuses a path whose NAR hash no longer matches the database (as
// Nix does: corruption must not spread). Item trailers carry the references
// (sorted), the deriver and signature flag 0, so the bytes equal Nix 2.8's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/store/database.hpp"
#include "ferry/store/nar_dump.hpp"

namespace ferry::store {

class bundle_source {
public:
    bundle_source(store_database& db, const std::vector<std::string>& paths, std::size_t chunk_size = 1 << 20);

    // Next bytes of the bundle; empty when complete. Valid until the next call.
    std::string_view next_chunk();
    const std::vector<std::string>& order() const { return order_; }
    std::uint64_t bytes_produced() const { return produced_; }

private:
    void finish_item();  // hash check, trailer, next path

    store_database& db_;
    std::vector<std::string> order_;
    std::size_t chunk_size_;
    std::size_t index_ = 0;
    std::optional<nar_source> nar_;
    std::string out_;
    bool done_ = false;
    bool trailer_pending_ = false;  // the last chunk ended a NAR handed out directly
    std::uint64_t produced_ = 0;
};

}  // namespace ferry::store
