// The machines `ferry test` and `ferry status` work on: FILE (or the default
// machines file) parsed by the machines layer, ferry.conf applied, REGEX applied
// to the names, each machine turned into what the operators' commands need to
// reach it (ssh options, remote store options, the scheduler's key for slots and
// backoff).
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/remote/nix_remote.hpp"
#include "ferry/schedule/machine.hpp"
#include "ferry/ssh/session.hpp"

namespace ferry::cli {

struct ops_target {
    std::string name;                  // as configured: what test/status print
    ssh::session_options ssh;          // pinned key / known_hosts, identity, port, user
    remote::nix_remote_options remote; // remote-program, remote-store, store directory
    schedule::machine slots;           // <name>:<port> key of slot files and backoff records
    codec::codec_spec codec;           // ferry.conf's codec for this machine (auto by default)
    bool from_guix_file = false;       // declared in a machines.scm
};

struct ops_selection {
    std::filesystem::path file;        // the machines file that was read
    std::filesystem::path state_dir;   // ferry's state directory (slots, backoff)
    std::vector<ops_target> targets;   // in file order, REGEX applied
    // Said once on stderr by select_targets_or_report, e.g. the NIX_SSHOPTS words
    // ferry does not honour.
    std::vector<std::string> warnings;
};

// Reads `file` (empty: the default lookup), applies ferry.conf (FERRY_CONFIG or
// /etc/ferry/ferry.conf; a missing file means defaults) and keeps the machines whose
// name matches `regex` (ECMAScript, searched anywhere in the name; empty: all).
// Nix machines are reached as the hook reaches them, NIX_SSHOPTS included
// (ssh/ssh_options.hpp); Guix machines ignore NIX_SSHOPTS, as `guix offload` does.
// Throws ferry::failure: errc::bad_input with file:line for a malformed file or a bad
// REGEX, and for a missing file, naming the path.
ops_selection select_targets(const std::filesystem::path& file, const std::string& regex);
// select_targets for a command's front end: on a bad file, a bad REGEX or no machine
// selected it prints "ferry COMMAND: why" on stderr and returns nullopt (exit 2).
std::optional<ops_selection> select_targets_or_report(std::string_view command, const std::filesystem::path& file,
                                                      const std::string& regex);

}  // namespace ferry::cli
