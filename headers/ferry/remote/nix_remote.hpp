// How ferry reaches the Nix tools of one build machine: which program and store
// to use there, and the exact command lines it runs (every path shell-quoted).
//
// The machine's store URI parameters map here: `?remote-program=` replaces
// `nix-store`, `?remote-store=` adds `--store <uri>` (as Nix's legacy-ssh-store
// does). Pipelines (a decompressor in front of the import, a compressor after the
// export) run under `sh -c '...'`, so the remote user's login shell (which may be
// fish or csh) only has to start `sh`.
#pragma once

#include <string>
#include <vector>

#include "ferry/codec/codec_spec.hpp"

namespace ferry::remote {

struct nix_remote_options {
    std::string remote_program = "nix-store";  // ?remote-program=
    std::string remote_store;                  // ?remote-store= ("" = the machine's default store)
    std::string store_dir = "/nix/store";      // the remote's store directory
    std::string state_dir = "/nix/var/nix";    // its state directory (gcroots live below it)
};

// `nix-store --serve --write [--store URI]`.
std::string serve_command(const nix_remote_options& o);

// `sh -c '<decompressor> | nix-store --serve --write'`; the bare serve command for codec none.
std::string compressed_serve_command(const nix_remote_options& o, codec::codec_kind kind);

// `nix-store --export P...` piped into `<compressor>` (codec none: the bare export).
// A failing export is reported on stderr as "ferry: export failed (status N)"
// (the pipeline's own status is the compressor's); the stream then ends without
// the bundle's final 0, which the receiver rejects as truncated.
std::string export_command(const nix_remote_options& o, const std::vector<std::string>& paths,
                           const codec::codec_spec& codec, unsigned threads = 0);

// `nix-store --import` behind the decompressor (the alternative import path that
// docs/transfer.md compares).
std::string import_command(const nix_remote_options& o, codec::codec_kind kind);

// Throws failure(bad_input) unless every path is a store path under o.store_dir.
void check_store_paths(const nix_remote_options& o, const std::vector<std::string>& paths);

}  // namespace ferry::remote
