// The `auto` codec rule: which codec and level moves a closure fastest over one
// link, from measured figures only. Pure (no I/O, no clocks): `ferry bench` and the
// hook measure, this decides. docs/codec-auto.md has the rule and the numbers.
//
// A closure byte goes through four stages that run concurrently (a pipeline), so
// the throughput is that of the slowest, in closure (uncompressed) bytes per second:
//   - the link:              link_bytes_per_s * ratio
//   - the remote decoder:    zstd ~700 MB/s, xz ~50 MB/s of output (remote `-dc`)
//   - the remote import:     sink_bytes_per_s (the same for every codec; 0 = unknown)
//   - the local CPU, shared by the compressor and the cipher:
//       cores * efficiency / (1 / compress_speed + 1 / (ratio * cipher_bytes_per_s))
//     and, when the machine runs on this very kernel (remote_shares_cpu: a
//     container, a network namespace, a test host), by the machine's side too:
//       + 1 / (ratio * cipher_bytes_per_s) + 1 / decode_speed + 1 / import_cpu
// The winner is the candidate with the highest prediction; among those within
// `tolerance` of it the cheapest in CPU wins (none, then the fastest compressor),
// so a link that is not the bottleneck gets `none` or zstd:1.
#pragma once

#include <string>
#include <vector>

#include "ferry/codec/codec_spec.hpp"

namespace ferry::codec {

// One candidate measured on a sample of the data, on ONE thread of this machine.
struct codec_measurement {
    codec_spec spec;
    double compress_bytes_per_s = 0;  // input bytes per second; ignored for none
    double ratio = 1;                 // input bytes / output bytes (>= some epsilon)
};

// Figures from library-notes.md / test-hosts.md, measured on this kind of machine.
inline constexpr double default_zstd_decode_bytes_per_s = 700e6;
inline constexpr double default_xz_decode_bytes_per_s = 50e6;
inline constexpr double default_cipher_bytes_per_s = 440e6;  // libssh, one core
// CPU the remote import costs per closure byte (NAR parse, hash, write): a 1 GB
// `none` send on loopback, where the import is the bottleneck, runs at ~285 MB/s
// (docs/bench.md).
inline constexpr double default_import_cpu_bytes_per_s = 300e6;

struct auto_inputs {
    double link_bytes_per_s = 0;      // measured raw upload (probe); must be > 0
    std::vector<codec_measurement> candidates;  // `none` is always considered
    unsigned local_cores = 1;
    double thread_efficiency = 0.8;   // what a 2nd..Nth compression thread adds
    bool remote_has_zstd = true;
    bool remote_has_xz = true;
    double remote_zstd_decode_bytes_per_s = default_zstd_decode_bytes_per_s;
    double remote_xz_decode_bytes_per_s = default_xz_decode_bytes_per_s;
    double cipher_bytes_per_s = default_cipher_bytes_per_s;
    double sink_bytes_per_s = 0;      // remote import speed if known; 0 = no cap
    // The machine's decoder, cipher and import run on the local cores (same boot id).
    bool remote_shares_cpu = false;
    double import_cpu_bytes_per_s = default_import_cpu_bytes_per_s;
    double tolerance = 0.05;          // "as fast" margin for preferring cheaper CPU
};

// Predicted closure bytes per second for one candidate, and which stage limits it.
struct prediction {
    codec_spec spec;
    double bytes_per_s = 0;
    std::string limit;  // "link", "cpu", "decode", "import"
    bool usable = true; // false: the remote lacks the decoder
};

prediction predict(const codec_measurement& m, const auto_inputs& in);

struct auto_choice {
    codec_spec spec;            // never auto
    double predicted_bytes_per_s = 0;
    std::string limit;          // the limiting stage of the choice
    std::string reason;         // one line for humans: "link 11.2 MB/s, zstd:6 predicted 33 MB/s (link-bound)"
    std::vector<prediction> considered;  // every candidate, in input order (none first)
};

// Throws ferry::failure(bad_input) if link_bytes_per_s <= 0 or a candidate is auto.
auto_choice choose_codec(const auto_inputs& in);

// While streaming (between frames): the next zstd level from how busy the
// compressor and the link were over the last interval (fractions 0..1 of wall
// time). Compressor saturated while the link idles -> lower the level; link
// saturated while the compressor idles -> raise it; else keep it (hysteresis).
// The result stays within [min_level, max_level].
int adjust_zstd_level(int level, double compressor_busy, double link_busy, int min_level = min_zstd_level,
                      int max_level = 12);

}  // namespace ferry::codec
