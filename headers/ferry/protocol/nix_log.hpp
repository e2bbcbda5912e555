// Nix's structured log lines ("@nix {json}\n"), which a build hook writes on
// stderr after the machine line; the daemon drops every other line there.
//
// The encoders produce exactly what Nix 2.8's JSONLogger writes (logging.cc):
// keys in nlohmann::json's sorted order, no spaces, invalid UTF-8 replaced by
// U+FFFD, "fields" left out when empty. Field values are strings or unsigned
// integers only: the daemon (handleJSONLogMessage/getFields) fails the build on
// any other JSON type, so the types here cannot express one.
//
// validate_nix_log_line checks a line the way the Nix 2.8 daemon reads it, so
// tests (and a paranoid hook) can prove a line is safe to send.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ferry::protocol {

// Nix's Verbosity: 0 = error ... 7 = vomit.
enum class nix_verbosity : std::uint64_t { error = 0, warn, notice, info, talkative, chatty, debug, vomit };

// Nix's ActivityType (logging.hh).
enum class nix_activity : std::uint64_t {
    unknown = 0,
    copy_path = 100,  // fields: path, from (store URI), to (store URI)
    file_transfer = 101,
    realise = 102,
    copy_paths = 103,
    builds = 104,
    build = 105,  // fields: drv path, machine, round, number of rounds
    optimise_store = 106,
    verify_paths = 107,
    substitute = 108,
    query_path_info = 109,
    post_build_hook = 110,
    build_waiting = 111,
};

// Nix's ResultType (logging.hh).
enum class nix_result : std::uint64_t {
    file_linked = 100,
    build_log_line = 101,  // fields: the line
    untrusted_path = 102,
    corrupted_path = 103,
    set_phase = 104,
    progress = 105,      // fields: done, expected, running, failed
    set_expected = 106,  // fields: activity type, expected
    post_build_log_line = 107,
};

using nix_log_field = std::variant<std::uint64_t, std::string>;

// Each returns one complete line ending in '\n'. parent == 0 is left out (Nix
// 2.8 never writes it and ignores it).
std::string nix_log_start(std::uint64_t id, nix_verbosity level, nix_activity type, std::string_view text,
                          const std::vector<nix_log_field>& fields = {}, std::uint64_t parent = 0);
std::string nix_log_stop(std::uint64_t id);
std::string nix_log_result(std::uint64_t id, nix_result type, const std::vector<nix_log_field>& fields);
std::string nix_log_msg(nix_verbosity level, std::string_view msg);

// Throws ferry::failure (bad_input) saying which key is missing or of the wrong
// type (the Nix 2.8 daemon would fail the build), or that the action is unknown
// (the daemon would ignore the line). The line may end in '\n'.
void validate_nix_log_line(std::string_view line);

}  // namespace ferry::protocol
