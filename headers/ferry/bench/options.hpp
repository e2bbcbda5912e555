// What one `ferry bench` invocation asks for (cli-contract.md):
//   ferry bench (--machine SPEC | --local-host) (--closure PATH... | --synthetic SIZE:COUNT)
//               [--codec LIST] [--direction send|receive|both] [--runs N] [--fresh]
//               [--json FILE] [--compare nix-copy-closure] [--machines FILE]
// The CLI (cli/bench_command) parses argv into this; the bench layer runs it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ferry/bench/synthetic.hpp"
#include "ferry/codec/codec_spec.hpp"

namespace ferry::bench {

enum class direction { send, receive, both };

struct bench_options {
    std::string machine;            // --machine SPEC: a machines-file line (has a space) or a name
    bool local_host = false;        // --local-host: a test host started for the run
    std::vector<std::string> closure;          // --closure PATH...
    std::optional<synthetic_spec> synthetic;   // --synthetic SIZE:COUNT
    std::vector<codec::codec_spec> codecs{codec::codec_spec{}};  // --codec LIST (default auto)
    bench::direction direction = bench::direction::send;
    int runs = 3;
    bool fresh = false;             // wipe the target store before each run (local host only)
    std::filesystem::path json_file;
    bool compare_nix_copy_closure = false;
    std::filesystem::path machines_file;  // for a SPEC that is a name
};

}  // namespace ferry::bench
