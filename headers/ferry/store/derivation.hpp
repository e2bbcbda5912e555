// Store derivations (.drv files): the ATerm text and the serve protocol's
// BasicDerivation.
//
//   Derive([("out","/nix/store/...-x","",""),...],        outputs: name, path, hashAlgo, hash
//          [("/nix/store/...-y.drv",["out"]),...],         input derivations and their outputs
//          ["/nix/store/...-src",...],                     input sources
//          "x86_64-linux","/bin/sh",["-e","..."],          platform, builder, args
//          [("name","value"),...])                         environment
//
// Strings escape \" \\ \n \r \t (derivations.cc printString); the parser accepts
// any backslash escape as Nix's does. Element order is kept, so parse + print
// reproduces a .drv written by Nix byte for byte (Nix writes every list sorted).
// Errors name the origin and the byte offset with line:column.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::store {

struct derivation_output {
    std::string name;
    std::string path;       // "" for floating content-addressed outputs
    std::string hash_algo;  // "" for input-addressed outputs, e.g. "r:sha256" for fixed outputs
    std::string hash;       // base16
};

struct derivation {
    std::vector<derivation_output> outputs;
    std::vector<std::pair<std::string, std::vector<std::string>>> input_drvs;
    std::vector<std::string> input_srcs;
    std::string platform;
    std::string builder;
    std::vector<std::string> args;
    std::vector<std::pair<std::string, std::string>> env;

    const derivation_output* output(std::string_view name) const;
};

// Throws ferry::failure(bad_input) "<origin>: offset N (line L, column C): expected ...".
// max_size bounds the text (a .drv is read whole; Nix's largest are a few MB).
derivation parse_derivation(std::string_view text, std::string_view origin = "derivation",
                            std::size_t max_size = 64 << 20);
// The .drv file at `path`, read and parsed; failure(bad_input) naming the file when
// it cannot be read.
derivation read_derivation(const std::string& path);
std::string print_derivation(const derivation& drv);

// BasicDerivation as the serve protocol's BuildDerivation sends it (Nix 2.8
// writeDerivation): u64 n {name, path, hashAlgo, hash}*n, string-set inputSrcs
// (sorted as Nix's StorePathSet, duplicates removed), platform, builder, string-list
// args, u64 n {key, value}*n. input_srcs replaces drv.input_srcs: build-remote sends
// the whole input closure there, since a BasicDerivation has no inputDrvs.
void append_basic_derivation(std::string& out, const derivation& drv, std::vector<std::string> input_srcs);
std::string serialize_basic_derivation(const derivation& drv, const std::vector<std::string>& input_srcs);

}  // namespace ferry::store
