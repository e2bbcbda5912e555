// The bytes of one `nix-store --serve --write` send stream, cut into chunks:
// the hello, then per path the AddToStoreNar header and its NAR, each NAR checked
// against the local database's size as it passes (its hash the machine's import
// checks against the header's). Private to transfer
// (send.cpp runs it on the pool, one call at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ferry/protocol/serve.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/hash.hpp"
#include "ferry/store/nar_dump.hpp"

namespace ferry::transfer::detail {

struct chunk {
    std::string data;
    std::size_t items_done = 0;  // items complete once this chunk is through
    std::uint64_t nar_done = 0;  // NAR bytes through once this chunk is through
};

class frame_source {
public:
    // server_version: what the control connection reported; the write side never
    // waits for the stream's own hello (a compressed channel delivers it only at
    // the end), the reader checks the real one against it.
    frame_source(std::string host, std::vector<store::path_info> infos, std::uint64_t server_version,
                 std::size_t chunk_size);
    // The next chunk of about chunk_size bytes; nullopt at the end. Throws
    // ferry::failure when a path's NAR is no longer the size registered.
    std::optional<chunk> next();

private:
    void begin_item(std::string& out);
    void end_item();

    std::string host_;
    std::vector<store::path_info> infos_;
    std::size_t chunk_size_;
    protocol::serve::serve_client encoder_;
    std::string pending_;
    std::size_t index_ = 0;
    std::uint64_t nar_done_ = 0;
    std::optional<store::nar_source> nar_;
};

}  // namespace ferry::transfer::detail
