// Guix's build machines (/etc/guix/machines.scm) and the per-machine ferry.conf
// options the Guix front end needs.
//
// machines.scm is parsed by the machines layer (machines::parse_guix_machines: the
// data subset, Guix System's append-map form included, errors at file:line:col);
// guix_machine is the Guix front end's view of one record. The ferry.conf reader
// below is a STOPGAP for the keys the Guix front end needs (`guix-program`,
// `remote-state-dir`), which the machines layer's ferry.conf does not know yet
// (docs/guix.md "Left to do").
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::hook {

struct guix_machine {
    std::string name;
    std::uint16_t port = 22;
    std::vector<std::string> systems;
    std::string user;
    std::string private_key;  // "" = default identities and the agent (ssh layer)
    std::string host_key;     // OpenSSH public-key line (required by guix offload)
    std::string compression = "zlib@openssh.com,zlib";
    int compression_level = 3;
    std::string daemon_socket = "/var/guix/daemon-socket/socket";
    std::optional<double> overload_threshold = 0.8;
    unsigned parallel_builds = 1;
    double speed = 1.0;
    std::vector<std::string> features;
    std::string location;  // "file:line:col" of the (build-machine ...) form

    bool operator==(const guix_machine&) const = default;
};

// machines::parse_guix_machines, converted. Throws ferry::failure(bad_input) naming file:line:col.
std::vector<guix_machine> parse_machines_scm(std::string_view text, std::string_view file_name);
std::vector<guix_machine> read_machines_scm(const std::filesystem::path& file);

// offload.scm machine-matches?: the system is among the machine's systems and
// every required feature is among its features.
bool guix_machine_matches(const guix_machine& m, std::string_view system, const std::vector<std::string>& features);

// ferry.conf (FERRY_CONFIG, default /etc/ferry/ferry.conf), as far as the Guix
// front end reads it:
//     # comment
//     key = value                  global settings
//     [machine NAME]               settings for the machine named NAME
//     key = value
// Keys read here: `guix-program` (the remote `guix`; default "guix"),
// `codec` (none | zstd[:N] | xz[:N]; default zstd:3 for the upload and download),
// `remote-state-dir` (the machine's Guix state directory, default /var/guix).
// Unknown keys are left to other layers (ignored here). Missing file = empty.
struct ferry_conf {
    std::map<std::string, std::string> global;
    std::map<std::string, std::map<std::string, std::string>> machines;

    // The machine's value, else the global one, else fallback.
    std::string get(std::string_view machine, std::string_view key, std::string_view fallback) const;
};
ferry_conf parse_ferry_conf(std::string_view text, std::string_view file_name);
ferry_conf read_ferry_conf(const std::filesystem::path& file);

}  // namespace ferry::hook
