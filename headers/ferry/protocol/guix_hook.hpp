// The Guix daemon's text build-hook protocol, seen from the hook (sans-I/O).
//
// The daemon runs `guix offload SYSTEM MAX-SILENT-TIME PRINT-BUILD-TRACE
// BUILD-TIMEOUT` (parse_guix_hook_args takes the four operands) and writes on
// its stdin, per derivation, one request line (guix nix/libstore/build.cc
// tryBuildHook; guix/scripts/offload.scm request-line-rx):
//     <1|0> <system> <drv-path> <feature,feature,...>\n
// matching `([01]) ([a-z0-9_-]+) (/[[:graph:]]+.drv) ([[:graph:]]*)`; with no
// features the line ends in a space. After `# accept` it writes two lines, each
// a space-separated list with a trailing space: all inputs to copy (closure of
// the inputs and of the .drv), then the missing output paths; then EOF.
//
// guix_hook_decoder works like nix_hook_decoder: decode() gets the unconsumed
// bytes and returns a whole message and the bytes it used, or "need more" with
// consumed == 0. Errors (ferry::failure) name the line number and what was
// expected. Lines are bounded by guix_hook_limits::max_line before a newline is
// found, so an endless line is refused, not buffered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ferry/protocol/hook_reply.hpp"

namespace ferry::protocol {

struct guix_hook_limits {
    std::uint64_t max_line = 64 << 20;  // the inputs line lists a whole closure
    std::uint64_t max_paths = 1 << 20;
    std::uint64_t max_path_length = 4096;
    std::uint64_t max_features = 1024;
};

// The four operands after "offload" (or, before 2019, after $NIX_BUILD_HOOK).
struct guix_hook_args {
    std::string system;
    std::uint64_t max_silent_time = 0;  // seconds, 0 = none
    bool print_build_trace = false;     // "1"/"0" (old daemons) or "true"/"false" (since 2025)
    std::uint64_t build_timeout = 0;    // seconds, 0 = none

    bool operator==(const guix_hook_args&) const = default;
};

// Throws ferry::failure (bad_input) naming the operand and what was expected.
guix_hook_args parse_guix_hook_args(std::span<const std::string_view> operands);

struct guix_build_request {
    bool am_willing = false;  // the daemon has a free local build slot
    std::string system;
    std::string drv_path;
    std::vector<std::string> features;  // in the daemon's order, empty items dropped

    bool operator==(const guix_build_request&) const = default;
};

// One request line without its '\n'. line_number (1-based) goes into errors.
guix_build_request parse_guix_request_line(std::string_view line, std::uint64_t line_number);

struct guix_accepted_paths {
    std::vector<std::string> inputs;   // store paths, .drv closure included
    std::vector<std::string> outputs;  // output store paths to copy back

    bool operator==(const guix_accepted_paths&) const = default;
};

struct guix_hook_end {};

class guix_hook_decoder {
public:
    enum class state { requests, awaiting_reply, accepted_paths, done };

    using message = std::variant<std::monostate, guix_build_request, guix_accepted_paths, guix_hook_end>;
    struct result {
        message msg;  // std::monostate: need more bytes
        std::size_t consumed = 0;
        bool need_more() const { return std::holds_alternative<std::monostate>(msg); }
    };

    explicit guix_hook_decoder(guix_hook_limits limits = {}) : limits_(limits) {}

    result decode(std::string_view bytes);
    // The input ended after bytes. A last line without '\n' counts as a line
    // (Guile's read-line does the same); a clean end yields guix_hook_end; EOF
    // before the two lines after accept throws (errc::truncated).
    result decode_eof(std::string_view bytes);
    void reply(hook_reply r);  // decline_permanently is not a Guix reply: treated as decline

    state current_state() const { return state_; }
    std::uint64_t line_number() const { return line_; }  // lines consumed so far

private:
    result decode_request(std::string_view bytes, bool at_eof);
    result decode_paths(std::string_view bytes, bool at_eof);

    guix_hook_limits limits_;
    state state_ = state::requests;
    std::uint64_t line_ = 0;
};

// `# accept\n`, `# decline\n`, `# postpone\n`. Throws ferry::failure (unsupported)
// for decline_permanently, which the Guix daemon rejects ("bad hook reply").
std::string encode_guix_reply(hook_reply r);

// `@ build-remote DRV MACHINE\n`, the trace line for PRINT-BUILD-TRACE (stderr).
std::string guix_build_remote_trace(std::string_view drv_path, std::string_view machine);

}  // namespace ferry::protocol
