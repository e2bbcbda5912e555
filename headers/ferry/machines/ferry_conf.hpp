// ferry.conf: ferry's own settings (never added to the daemons' machine records).
// Path: $FERRY_CONFIG, else /etc/ferry/ferry.conf; a missing file means all defaults.
// Format (INI-like):
//     # comment            ; comment
//     key = value          global keys, before any section
//     [machine NAME]       keys after it override the global ones for machine NAME
//                          (NAME as in machines file: the host / Guix `name`)
// Values: size = integer with optional K/M/G suffix (×1024); duration = number with
// optional s/m/h suffix (bare = seconds, "1.5s" allowed); "auto" where noted.
// Every key, its type and default is in key_table() (and docs/configuration.md).
// Errors throw ferry::failure(errc::bad_input) "file:line: key 'K': got 'V', expected <type>".
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::machines {

enum class log_level { error, warn, info, debug, trace };

// How the Guix front end drives a machines.scm machine: through the `guix`
// command line, or, for a machine that has Nix and no Guix, through
// `nix-store --serve` as Nix's build-remote does. auto_detect decides from the
// machine's probe (hook/guix_offload.hpp remote_flavour_for).
enum class remote_flavour { auto_detect, guix, nix };

struct settings {
    std::string codec = "auto";                    // "auto" or a codec spec (codec layer parses it)
    unsigned compression_threads = 0;              // 0 = auto
    std::uint64_t memory_budget = 128ull << 20;    // bytes
    std::chrono::milliseconds probe_deadline{5000};
    std::chrono::milliseconds probe_cache{5000};   // key probe-cache-seconds
    std::chrono::milliseconds slot_wait{2000};     // every slot taken: wait this long before postponing
    std::string state_dir;                         // set by load_ferry_conf's default_state_dir
    std::optional<double> overload_threshold;      // nullopt = keep the machine's own (Guix: 0.8); "off" = disable
    bool overload_threshold_off = false;
    std::uint64_t min_free_space = 100ull << 20;   // bytes
    std::chrono::milliseconds connect_timeout{10000};
    std::chrono::milliseconds keepalive_interval{30000};
    log_level level = log_level::info;
    unsigned parallel_import_streams = 0;          // 0 = auto
    std::string guix_program = "guix";             // Guix machines: the remote `guix` command
    // machines.scm machines: state directory (gcroots); "" = the flavour's own
    // (/var/guix for Guix, /nix/var/nix for Nix).
    std::string remote_state_dir;
    remote_flavour flavour = remote_flavour::auto_detect;
};

struct key_info {
    std::string_view name;
    std::string_view type;        // "size", "duration", "count", ...
    std::string_view default_text;
    bool per_machine;             // allowed in [machine NAME] sections
    std::string_view doc;
};

std::span<const key_info> key_table();

class ferry_conf {
public:
    const settings& global() const { return global_; }
    // The global settings with NAME's section applied on top.
    settings for_machine(const std::string& name) const;
    bool has_section(const std::string& name) const { return sections_.count(name) != 0; }
    std::vector<std::string> section_names() const;
    // The file read ("" when defaults only).
    const std::string& path() const { return path_; }

private:
    friend ferry_conf parse_ferry_conf(std::string_view, const std::string&, const std::string&);

    std::string path_;
    settings global_;
    // Per machine: validated key/value pairs, applied over global_ in file order.
    std::map<std::string, std::vector<std::pair<std::string, std::string>>> sections_;
};

// Parse text (already read). An empty text gives the defaults. default_state_dir: /var/lib/ferry, or Guix's state dir when
// ferry runs as `guix offload`.
ferry_conf parse_ferry_conf(std::string_view text, const std::string& file, const std::string& default_state_dir);

// Parse a size ("128M"), duration ("5s", "2m", "1.5h", "10"): nullopt when malformed.
std::optional<std::uint64_t> parse_size(std::string_view s);
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);

}  // namespace ferry::machines
