// Measuring what the `auto` rule (codec/auto_rule.hpp) needs, for one machine and
// one closure: the link (a short upload into `cat >/dev/null` on the machine), the
// remote decoders present, local cores, and each candidate codec's one-thread speed
// and ratio on a sample of the closure's NARs. About 1-2 s in all.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/codec/auto_rule.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/store/database.hpp"

namespace ferry::transfer {

// Bytes per second into `cat >/dev/null` on the machine: writes 1 MiB pieces
// until `duration` has passed (or max_bytes were sent), then waits for the command
// to have read everything (EOF + exit), so kernel and channel buffers count.
// 64 MiB is many times the kernel's and the channel's buffers, and bounds what a
// fast link costs: on loopback (~800 MB/s) 0.08 s instead of the whole duration
// (measured: 256 MiB cost a 1 GB offload 0.7 s there).
asio::awaitable<double> measure_upload(ssh::session& s, std::chrono::milliseconds duration = std::chrono::milliseconds(800),
                                       std::uint64_t max_bytes = std::uint64_t{64} << 20);

// Up to `bytes` of the paths' NARs, in 64 KiB pieces taken from paths spread over
// the list (so one huge path does not stand for the closure).
std::string sample_nars(const std::vector<std::string>& paths, std::size_t bytes = 4 << 20);

// One-thread compression speed and ratio of each candidate on the sample.
std::vector<codec::codec_measurement> measure_codecs(const std::string& sample,
                                                     const std::vector<codec::codec_spec>& candidates);

// Whether a machine's output holds a line "boot <id>" with this kernel's boot id
// (/proc/sys/kernel/random/boot_id): the machine runs on the same kernel — a
// container, a network namespace, a local test host — and shares the local CPU.
bool same_kernel(std::string_view remote_output);

// The candidates tried: zstd 1, 3, 6, 9 and xz 0; xz 3 too when the link is
// slower than 5 MB/s (then its cost is worth measuring). A slow codec is not even
// measured when `cores` of it could not keep up with the link (its one-thread
// speed here is at most: xz:0 25 MB/s, zstd:9 60 MB/s; library-notes.md has
// 16 and 41): `none` beats it there, and measuring xz:0 alone costs 0.25 s.
std::vector<codec::codec_spec> auto_candidates(double link_bytes_per_s, unsigned cores = 1);

// All of the above on an open session; `paths` is the closure to move. A known
// link speed (bytes/s, measured recently) spares the upload measurement.
struct probed_choice {
    codec::auto_choice choice;
    double link_bytes_per_s = 0;
};
asio::awaitable<probed_choice> probe_and_choose(ssh::session& s, const std::vector<std::string>& paths,
                                                std::optional<double> known_link = std::nullopt);

}  // namespace ferry::transfer
