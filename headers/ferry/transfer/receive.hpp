// The receive pipeline: the remote runs `nix-store --export P... | <compressor>`
// (remote/nix_remote.hpp export_command), ferry decompresses in-process, parses
// the export bundle and restores + registers each path into the local store
// (store::bundle_importer).
//
//   receive (I/O executor: ssh channel stdout, beside its stderr)
//     -> stage_channel
//   decompress (thread pool; skipped for codec none)
//     -> stage_channel
//   restore (thread pool: bundle parser, file writes, SHA-256, registration)
//
// Locks: the output paths whose <path>.lock the daemon already holds (the hook's
// caller) go in locked_by_caller and are never locked again (that would deadlock).
// Failure: the item being restored is removed (never a half-written or
// unregistered path); items completed before stay valid. A stream that ends
// early, does not decompress or does not parse is rejected.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/thread_pool.hpp>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/codec/memory_budget.hpp"
#include "ferry/remote/nix_remote.hpp"
#include "ferry/remote/stderr.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/transfer/report.hpp"

namespace ferry::transfer {

struct receive_options {
    codec::codec_spec codec{codec::codec_kind::none, 0};  // what the remote compresses with (not auto)
    unsigned remote_threads = 0;                            // the remote compressor's -T (0 = its cores)
    remote::nix_remote_options remote;
    std::set<std::string> locked_by_caller;  // outputs the daemon has locked
    // The remote's QueryPathInfos for the paths asked for (store::import_options::
    // expected): each received NAR is checked against it before registration.
    std::map<std::string, store::path_info> expected;
    std::size_t chunk_size = std::size_t{1} << 20;
    std::size_t queue_depth = 4;
    std::uint64_t memory_budget = codec::default_memory_budget;
    asio::thread_pool* pool = nullptr;  // nullptr = a private pool of 2 threads
    progress_fn on_progress;            // after each restored chunk (bytes = NAR bytes so far)
    remote::log_sink remote_stderr;
};

// Copies `paths` (valid on the remote) into the local store; paths already valid
// locally are not asked for. Their references must be valid locally or among
// `paths`. Returns the figures; report.paths counts the items the bundle held.
asio::awaitable<transfer_report> receive_paths(ssh::session& s, store::store_database& db, store::temp_roots& roots,
                                               std::vector<std::string> paths, receive_options options);

// The same from a channel that is already running a remote command producing an
// export bundle compressed with options.codec (tests feed corrupt streams here).
// Returns the paths of the bundle's items in `imported`.
asio::awaitable<transfer_report> receive_bundle(ssh::channel& ch, const std::string& host, store::store_database& db,
                                                store::temp_roots& roots, const receive_options& options,
                                                std::vector<std::string>* imported = nullptr);

}  // namespace ferry::transfer
