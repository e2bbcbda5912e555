// `--synthetic SIZE:COUNT`: a generated closure that looks like a real one to the
// codecs and to Nix, added to a local store. Deterministic: the same spec and seed
// give the same store paths and the same bytes.
//
// Shape (docs/bench.md has the measured ratios):
// - path sizes log-uniform between ~100 bytes and SIZE/4, scaled to add up to SIZE,
//   so a 1G:600 closure has many KB-sized paths and a few of hundreds of MB;
// - each path is a directory tree (bin/, lib/, share/) of files of three kinds, by
//   bytes: ~35% text (source/config/docs-like: zstd:1 ratio ~4), ~50% binary-like
//   (instruction templates + low-entropy operands: ratio ~2.5), ~15% random
//   (already-compressed data: ratio 1);
// - path i references up to 3 earlier paths (a DAG); their store paths are written
//   into a text file of the path (nix-support/references), as scripts would hold them;
// - names "<hash>-ferry-synth-<i>-<word>", hash parts from SHA-256(seed, i).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/store/database.hpp"

namespace ferry::bench {

struct synthetic_spec {
    std::uint64_t bytes = 0;  // total file content, about
    std::size_t count = 0;    // store paths
    std::uint64_t seed = 1;
};

// "20M:30", "1G:600", "512K:4", "123:1": SIZE with an optional K/M/G/T suffix (10^3
// steps; Ki/Mi/Gi/Ti for 2^10 steps; an optional trailing B), COUNT >= 1 and
// SIZE >= COUNT. Throws ferry::failure(bad_input) saying what was expected.
synthetic_spec parse_synthetic(std::string_view text);
// SIZE alone (the same syntax).
std::uint64_t parse_size(std::string_view text);

struct planned_path {
    std::string path;                     // /nix/store/<hash>-ferry-synth-<i>-<word>
    std::uint64_t bytes = 0;              // file content bytes
    std::vector<std::size_t> references;  // indices of earlier paths
};

// The plan alone (pure): paths, sizes, references. Sizes add up to spec.bytes.
std::vector<planned_path> plan_synthetic(const synthetic_spec& spec, std::string_view store_dir);

// Writes the planned paths that are not valid yet into db's store directory with
// canonical metadata (0444/0555, mtime 1), and registers them (NAR hash and size
// from store::nar_source). Returns the store paths (all of them, sorted).
// The store must be writable by us; the database must exist (`nix-store --init`).
std::vector<std::string> add_synthetic(store::store_database& db, const synthetic_spec& spec);

// The bytes of one generated file (exposed for tests of the content mix):
// kind 0 = text, 1 = binary-like, 2 = random.
std::string synthetic_content(int kind, std::uint64_t bytes, std::uint64_t seed);

}  // namespace ferry::bench
