// The Nix 2.x build-hook protocol, seen from the hook (sans-I/O).
//
// What the daemon writes on the hook's stdin (wire.hpp encoding; Nix 2.8
// hook-instance.cc and derivation-goal.cc tryBuildHook):
//   1. settings preamble: (u64 1, string name, string value)* u64 0
//   2. per derivation: string "try", u64 am-willing, string platform,
//      string drv path, string-set required system features;
//      end of input or any other word than "try" = no more requests.
//   3. after the hook answered `# accept` + machine line on stderr:
//      string-set input paths, string-set wanted output names; then EOF.
// The hook answers each request with one line on stderr (encode_nix_reply).
//
// nix_hook_decoder turns those bytes into messages. decode() is given the bytes
// not yet consumed (starting at the next message) and returns either a message
// and how many bytes it used, or "need more" (std::monostate) with consumed == 0:
// a message is decoded all at once or not at all. After a request, the decoder
// waits for reply() before it reads on. Malformed or oversized input throws
// ferry::failure naming the step and the stream offset; no length from the wire
// is used for an allocation before it passed nix_hook_limits.
//
// The settings map may hold secrets (access-tokens, netrc-file...): nothing here
// prints setting values except the typed accessors' own value in their errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ferry/protocol/hook_reply.hpp"

namespace ferry::protocol {

struct nix_hook_limits {
    std::uint64_t max_settings = 4096;        // Nix 2.8 sends ~95
    std::uint64_t max_setting_name = 1024;
    std::uint64_t max_setting_value = 1 << 20;
    std::uint64_t max_word = 4096;            // "try", platform, feature, output name
    std::uint64_t max_features = 1024;
    std::uint64_t max_path_length = 4096;
    std::uint64_t max_paths = 1 << 20;
};

struct nix_build_request {
    bool am_willing = false;  // the daemon has a free local build slot
    std::string platform;     // the derivation's system, e.g. x86_64-linux
    std::string drv_path;
    std::vector<std::string> required_features;  // sorted (a std::set on the daemon's side)

    bool operator==(const nix_build_request&) const = default;
};

// What the daemon sends after `# accept`.
struct nix_accepted_paths {
    std::vector<std::string> inputs;          // outputs of input derivations + input sources, no .drv
    std::vector<std::string> wanted_outputs;  // output NAMES, e.g. "out"

    bool operator==(const nix_accepted_paths&) const = default;
};

// No more requests: the input ended, or the daemon sent another word than "try".
struct nix_hook_end {
    std::string reason;
};

// The daemon's global settings (all values are strings on the wire). Typed
// accessors return Nix's default when a setting is absent and throw
// ferry::failure (bad_input) naming the setting when its value does not parse.
class nix_settings {
public:
    void set(std::string name, std::string value);
    std::optional<std::string_view> get(std::string_view name) const;
    std::size_t size() const { return values_.size(); }

    std::string builders() const;                      // "builders" (machines or @file)
    std::string system() const;                        // "system"
    std::vector<std::string> extra_platforms() const;  // "extra-platforms", whitespace separated
    std::vector<std::string> system_features() const;  // "system-features"
    std::uint64_t max_silent_time() const;             // "max-silent-time", seconds, 0 = none
    std::uint64_t build_timeout() const;               // "timeout", seconds, 0 = none
    std::uint64_t max_log_size() const;                // "max-build-log-size", bytes, 0 = none
    std::uint64_t build_repeat() const;                // "repeat"
    std::uint64_t connect_timeout() const;             // "connect-timeout", seconds, 0 = default
    bool enforce_determinism() const;                  // "enforce-determinism"
    bool keep_failed() const;                          // "keep-failed"
    bool builders_use_substitutes() const;             // "builders-use-substitutes"
    // "store" (default "auto"). Nix 2.8 sends no store-dir setting: the store
    // directory comes from NIX_STORE_DIR or a "?store=" parameter of this URI.
    std::string store() const;

    // Nix's build-remote rule: could the daemon build this itself (then it
    // declines rather than postpones)? am-willing, and the platform is "system",
    // in "extra-platforms" or "builtin", and every required feature is in
    // "system-features".
    bool can_build_locally(const nix_build_request& request) const;

private:
    std::uint64_t unsigned_setting(std::string_view name, std::uint64_t fallback) const;
    bool bool_setting(std::string_view name, bool fallback) const;
    std::vector<std::string> words_setting(std::string_view name) const;

    std::map<std::string, std::string, std::less<>> values_;
};

class nix_hook_decoder {
public:
    enum class state {
        settings,         // reading the preamble
        requests,         // reading "try" requests
        awaiting_reply,   // a request was returned; call reply()
        accepted_paths,   // reading the inputs and wanted outputs after accept
        done,             // nothing more is expected
    };

    using message = std::variant<std::monostate, nix_settings, nix_build_request, nix_accepted_paths, nix_hook_end>;
    struct result {
        message msg;               // std::monostate: need more bytes
        std::size_t consumed = 0;  // bytes of the input used by msg
        bool need_more() const { return std::holds_alternative<std::monostate>(msg); }
    };

    explicit nix_hook_decoder(nix_hook_limits limits = {}) : limits_(limits) {}

    // bytes: the input not yet consumed. Never consumes part of a message.
    result decode(std::string_view bytes);
    // The input ended after bytes: yields nix_hook_end where that is a clean end,
    // else throws (errc::truncated) naming what was cut.
    result decode_eof(std::string_view bytes);
    // What the hook answered to the last request.
    void reply(hook_reply r);

    state current_state() const { return state_; }
    std::uint64_t stream_offset() const { return offset_; }

private:
    result decode_settings(std::string_view bytes);
    result decode_request(std::string_view bytes);
    result decode_paths(std::string_view bytes);
    result finish(message msg, std::size_t consumed);

    nix_hook_limits limits_;
    state state_ = state::settings;
    std::uint64_t offset_ = 0;  // stream offset of the next unconsumed byte
};

// `# accept\n<machine>\n`: the machine line is shown to the user ("building X on
// Y"). Throws ferry::failure (bad_input) if machine holds a newline.
std::string encode_nix_accept(std::string_view machine);
// `# decline\n`, `# postpone\n`, `# decline-permanently\n` (accept needs the machine).
std::string encode_nix_reply(hook_reply r);

}  // namespace ferry::protocol
