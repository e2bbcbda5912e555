// Which machines file to read and in which format, with the environment passed in
// (so it is testable): see cli-contract.md "ferry test/status FILE".
#pragma once

#include <ferry/machines/ferry_conf.hpp>
#include <ferry/machines/machine.hpp>
#include <ferry/machines/nix_machines.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::machines {

enum class file_format { nix, guix };

// `.scm` suffix, or the first character that is not blank and not inside a ';' or '#'
// comment is '(' → guix; else nix.
file_format detect_format(const std::string& path, std::string_view text);

struct environment {
    std::map<std::string, std::string> vars;
    std::function<bool(const std::string&)> exists;  // file existence test

    std::optional<std::string> get(const std::string& name) const;
    static environment from_process();  // the real environ and filesystem
};

// /etc/nix/machines ($NIX_CONF_DIR/machines) if it exists, else
// ${GUIX_CONFIGURATION_DIRECTORY:-/etc/guix}/machines.scm (returned even if absent).
std::string default_machines_file(const environment& env);

// $FERRY_CONFIG or /etc/ferry/ferry.conf.
std::string ferry_conf_path(const environment& env);

// Read and parse a machines file in its detected format. A missing file is an error
// here (the caller chose it). default_system: Nix's `system` setting.
std::vector<machine> load_machines(const std::string& path, const std::string& default_system,
                                   const file_reader& read = read_file_if_exists);

// Read ferry.conf at ferry_conf_path(env); missing → defaults.
ferry_conf load_ferry_conf(const environment& env, const std::string& default_state_dir,
                           const file_reader& read = read_file_if_exists);

}  // namespace ferry::machines
