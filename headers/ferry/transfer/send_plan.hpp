// How a send is cut into rounds of concurrent import streams (pure: no I/O;
// send_paths runs the plan). docs/transfer.md has the figures behind the rules.
//
// Paths come in export order (references first). A path's wave is one more than
// the deepest of its references inside the set, so the paths of one wave never
// reference each other: once the waves before it are imported, a wave may go out
// on several streams at once. A wave goes parallel when it is big — at least
// `parallel_threshold` NAR bytes or `parallel_min_paths` paths (the remote's
// import costs per path too) — and there are >= 2 streams and >= 2 paths.
// Consecutive small waves are merged, in order, into one stream: one ordered
// stream is valid whatever the references, and a round trip per small wave would
// cost more than parallelism wins. A big wave is spread over min(streams, paths)
// groups: largest first onto the least loaded group, a path weighing its bytes
// plus `per_path_weight`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ferry/store/database.hpp"

namespace ferry::transfer {

struct send_plan_options {
    unsigned streams = 2;
    std::uint64_t parallel_threshold = std::uint64_t{32} << 20;
    std::size_t parallel_min_paths = 256;
    std::uint64_t per_path_weight = 256 << 10;
};

// One round: its groups are sent at the same time, one stream each; the next
// round starts when every group of this one is imported.
using send_round = std::vector<std::vector<store::path_info>>;

// Every path of `infos` ends up in exactly one group of one round.
std::vector<send_round> plan_send_rounds(std::vector<store::path_info> infos, const send_plan_options& options);

}  // namespace ferry::transfer
