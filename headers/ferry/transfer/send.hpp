// The send pipeline: local store -> NAR -> serve AddToStoreNar framing ->
// compressor -> ssh channel whose remote end is `<decompressor> | nix-store --serve
// --write` (remote/nix_remote.hpp compressed_serve_command).
//
//   read (thread pool: file reads, NAR framing, SHA-256 check)
//     -> stage_channel (queue_depth chunks of ~chunk_size)
//   compress (thread pool; skipped for codec none)
//     -> stage_channel
//   write (I/O executor: ssh channel, back-pressure from the remote window)
//   replies (I/O executor: server hello + one u64 1 per path, beside stderr)
//
// The stream is written blind: handshake, every AddToStoreNar, EOF — stock zstd
// and xz read their input in whole buffers, so a compressed channel cannot do
// request/reply; the replies are read as they come (codec none: during the
// transfer) and checked at the end. The AddToStoreNar encoding follows the
// server version learned on the control connection (serve_connection).
//
// Paths are sent references first (Nix's export order); each path's references
// must be valid on the remote or among `paths` (send only what query_missing
// returned, for a closure). Each NAR is hashed on the way and checked against the
// local database (corruption must not spread); the remote checks it again.
// Memory: at most about 2 * queue_depth * chunk_size bytes in flight, plus the
// compressor's (codec memory_budget).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/thread_pool.hpp>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/codec/memory_budget.hpp"
#include "ferry/protocol/serve.hpp"
#include "ferry/remote/nix_remote.hpp"
#include "ferry/remote/stderr.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/store/database.hpp"
#include "ferry/transfer/report.hpp"

namespace ferry::transfer {

struct send_options {
    // none, zstd:N, xz:N, or auto: send_paths then measures the link, the remote's
    // decoders and the codecs on a sample (auto_probe.hpp) and lets codec::choose_codec
    // decide; a zstd choice also gets adjust_level = adaptive_zstd_level() unless set.
    codec::codec_spec codec{codec::codec_kind::none, 0};
    remote::nix_remote_options remote;
    // The remote serve protocol version (serve_connection::server_version()); 0 = assume 0x207.
    std::uint64_t server_version = 0;
    std::size_t chunk_size = std::size_t{1} << 20;
    std::size_t queue_depth = 4;
    unsigned compress_threads = 0;  // 0 = all local cores
    std::uint64_t memory_budget = codec::default_memory_budget;
    asio::thread_pool* pool = nullptr;  // CPU/disk work; nullptr = a private pool of 2 threads
    progress_fn on_progress;           // after each chunk written (items/bytes handed to the channel)
    // Parallel import streams (docs/transfer.md: remote import is the floor, two
    // streams beat one). Paths are cut into topological waves (a wave's paths
    // reference only earlier waves or paths the remote has); a wave of at least
    // parallel_threshold NAR bytes (or parallel_min_paths paths: the remote's
    // per-path import work — lock, restore, register — is what many small paths
    // cost) and two paths goes out on `streams` channels at once, after
    // everything before it was acknowledged; smaller consecutive waves share one
    // stream (one stream is ordered, so that is valid too).
    // Codec auto: a recently measured upload speed (bytes/s) instead of measuring.
    std::optional<double> link_bytes_per_s;
    unsigned streams = 2;
    std::uint64_t parallel_threshold = std::uint64_t{32} << 20;
    std::size_t parallel_min_paths = 256;
    remote::log_sink remote_stderr;    // the remote's stderr as it comes (optional)
    // Every `interval` each stream reports its stage figures to on_interval, and
    // with codec zstd asks adjust_level for the next level, which the compressor
    // applies at its next frame boundary (stock `zstd -dc` decodes the concatenated
    // frames). Both optional; changes land in transfer_report::level_changes.
    std::chrono::milliseconds interval{500};
    interval_fn on_interval;
    level_policy adjust_level;
};

// codec::adjust_zstd_level on an interval's compress and write busy fractions.
level_policy adaptive_zstd_level();

// Sends `paths` (any order; duplicates ignored) from `db`'s store. Returns the
// figures; throws ferry::failure naming the host and path on any error (the
// remote's stderr quoted). Paths already registered on the remote before a
// failure stay there (they are complete and valid).
asio::awaitable<transfer_report> send_paths(ssh::session& s, store::store_database& db,
                                            std::vector<std::string> paths, send_options options);

}  // namespace ferry::transfer
