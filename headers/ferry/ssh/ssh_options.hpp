// NIX_SSHOPTS: the extra `ssh` arguments Nix's own hook puts on every ssh command
// line (Nix 2.8 ssh.cc addCommonSSHOpts splits the variable on whitespace, no
// quoting). ferry has no `ssh` to hand them to, so it reads the ones it can honour
// into session_options and names every other one (pure: no I/O).
//
//   auto o = parse_ssh_command_options(getenv("NIX_SSHOPTS"));
//   apply_ssh_command_options(o, session);     // after the machine line's values
//   for (auto& why : o.ignored) warn(why);     // once per process
//
// Honoured (ssh's getopt syntax: `-p 22`, `-p22`, `-xap 22`; `-o Key=Value`,
// `-oKey=Value`, Key case-insensitive):
//   -p N, -o Port=N                 port        (1-65535)
//   -l U, -o User=U                 user
//   -i F, -o IdentityFile=F         identity    (one: the first; ssh would try them all)
//   -F F                            ssh_config file
//   -o UserKnownHostsFile=F         known_hosts (used only when no key is pinned)
//   -o ConnectTimeout=N             connect timeout, seconds (the smaller of this and ferry's wins)
//   -o ServerAliveInterval=N, -o ServerAliveCountMax=N   keepalive
//   -o StrictHostKeyChecking=yes    accepted: it is what ferry always does
// Accepted without effect (ferry never does what they turn off): -x -a -T -q -n -k.
// Everything else is ignored and named in `ignored`, notably
// -o StrictHostKeyChecking=no|accept-new|off|ask (ferry never weakens host key
// checking), -J / ProxyJump / ProxyCommand, -C / Compression (ferry compresses
// itself), -c / Ciphers, -4 / -6, -v. A malformed value (`-p abc`, `-o Port`) is
// ignored with the reason; the parser never throws. Text longer than
// max_text_size is ignored whole.
//
// Precedence (apply_ssh_command_options): the machine line's own values (port and
// user in the URI, identity column, pinned host key) win, then NIX_SSHOPTS, then
// ~/.ssh/config — as on an ssh command line, where options beat the config file.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/ssh/session.hpp"

namespace ferry::ssh {

struct ssh_command_options {
    std::optional<std::uint16_t> port;
    std::optional<std::string> user;
    std::optional<std::filesystem::path> identity;
    std::optional<std::filesystem::path> config_file;
    std::optional<std::filesystem::path> known_hosts;
    std::optional<std::chrono::milliseconds> connect_timeout;
    std::optional<std::chrono::milliseconds> keepalive_interval;
    std::optional<int> keepalive_count_max;
    // One line per word not honoured: what it was and why, e.g.
    // "-o StrictHostKeyChecking=no: ferry always checks host keys (pinned key or known_hosts)".
    std::vector<std::string> ignored;

    bool honours_anything() const;
};

inline constexpr std::size_t max_ssh_command_options_size = 64 * 1024;

ssh_command_options parse_ssh_command_options(std::string_view text);

// Fills what `s` leaves at its default (see precedence above); the connect
// timeout becomes the smaller of the two.
void apply_ssh_command_options(const ssh_command_options& o, session_options& s);

}  // namespace ferry::ssh
