// One build machine, whichever file described it (a Nix machines file or Guix's
// machines.scm). Fields that only one world has are optional or keep that world's
// default, so the scheduler and ssh layers never branch on the origin format.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ferry::machines {

enum class flavour { nix, guix };

// Where a machine (or an error) came from, for messages: "file:line" or "file:line:col".
struct source_position {
    std::string file;  // "<builders>" for the inline Nix setting
    int line = 0;
    int column = 0;    // 0 when not known (Nix lines)

    std::string str() const;
};

struct machine {
    flavour kind = flavour::nix;
    source_position origin;

    std::string host;                       // Nix URI authority host; Guix `name`
    std::optional<std::uint16_t> port;      // unset: ~/.ssh/config or 22 (Guix default 22 is stored)
    std::string user;                       // empty: ~/.ssh/config or the local user
    std::optional<std::string> identity;    // unset ('-' / Guix default): default identities + agent
    std::vector<std::string> systems;
    unsigned max_jobs = 1;                  // Nix max-jobs; Guix parallel-builds
    double speed = 1.0;
    std::set<std::string> supported_features;
    std::set<std::string> mandatory_features;  // always empty for Guix
    std::string host_key;                   // OpenSSH public key line; empty: known_hosts

    // Guix-only (defaults are Guix's; Nix machines keep them and ferry.conf may override).
    std::optional<double> overload_threshold = 0.8;  // nullopt: #f, ignore load
    std::string compression = "zlib@openssh.com,zlib";
    int compression_level = 3;
    std::string daemon_socket = "/var/guix/daemon-socket/socket";

    // Nix store-URI parameters.
    std::string scheme = "ssh";             // "ssh" or "ssh-ng" as written (both handled as ssh)
    std::optional<std::string> remote_program;
    std::optional<std::string> remote_store;

    // Nix's rule (build-remote.cc, Machine::allSupported/mandatoryMet): the system is
    // listed (or is "builtin"), every required feature is supported or mandatory, and
    // every mandatory feature is required. For Guix machines mandatory is empty, which
    // makes it Guix's machine-matches? (system listed, required ⊆ features).
    bool can_build(const std::string& system, const std::set<std::string>& required_features) const;

    // "user@host:port" with the parts that are set, for messages and slot names.
    std::string display_name() const;
};

}  // namespace ferry::machines
