// The Nix machines format: the `builders` setting and the files it names with
// `@file` (default `@/etc/nix/machines`), parsed as Nix 2.8 does, quirks included:
//  - entries are split on '\n' AND ';' first, then '#' starts a comment that ends at
//    the end of that entry ("a # x;b" is two entries: "a" and "b");
//  - `@file` includes (after trimming); a missing file is skipped silently;
//  - whitespace-separated columns, '-' or missing = default; columns past the 8th ignored;
//  - URI: ssh://[user@]host, ssh-ng://... (ferry treats it as ssh), bare host = ssh://;
//    ferry extension: ":port" after the host; `?remote-program=` and `?remote-store=`;
//  - systems default to the `system` setting; max-jobs default 1;
//  - speed is an unsigned integer (Nix 2.8 rejects "1.5"), 0 becomes 1;
//  - the host key column is base64 of the OpenSSH public key line; it is decoded.
// Errors throw ferry::failure(errc::bad_input) naming file:line and the column expected.
#pragma once

#include <ferry/machines/machine.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::machines {

// Reads an @file: its text, or nullopt when the file does not exist (other errors throw).
using file_reader = std::function<std::optional<std::string>(const std::string& path)>;

// Reads real files (std::ifstream); ENOENT → nullopt, other failures throw ferry::failure.
std::optional<std::string> read_file_if_exists(const std::string& path);

struct nix_parse_options {
    std::string default_system;          // the `system` setting (e.g. "x86_64-linux")
    file_reader read = read_file_if_exists;
    int max_include_depth = 16;          // Nix has no limit; ferry refuses include loops
};

// Parse `text` (the builders setting or a machines file's contents). `origin` names it in
// positions and messages ("<builders>" or the file path).
std::vector<machine> parse_nix_machines(std::string_view text, const std::string& origin,
                                        const nix_parse_options& options);

// Parse one machines-file line (e.g. `ferry bench --machine "ssh://u@h x86_64-linux"`).
machine parse_nix_machine_line(std::string_view line, const source_position& where,
                               const std::string& default_system);

}  // namespace ferry::machines
