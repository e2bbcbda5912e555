// The Nix front end: ferry as nix-daemon's (or root nix-build's) build hook,
// `ferry-build-hook VERBOSITY` (Nix 2.8 hook-instance.cc, build-remote.cc).
//
// Descriptors as the daemon sets them up: stdin = the request pipe (binary
// protocol, decoded by protocol::nix_hook_decoder); stderr = the reply pipe (`# `
// lines and `@nix {json}` log lines, nothing else ever); fd 4 = the build log;
// fd 5 = the read side of the build-log pipe (closed at once: reading it would
// steal log bytes). Every descriptor is used with plain blocking reads and writes
// (fd 4 through io::fd_writer): their O_NONBLOCK flags, shared with the daemon, are
// never changed.
//
// Conversation:
//   settings preamble -> machines from `builders` (inline lines, `@file`) through
//   the machines layer; none -> `# decline-permanently`, exit 0.
//   per "try": choose_machine (offload.hpp) -> `# decline` / `# postpone` (same
//   process, next request) or `# accept` + machine URI line; then the input paths
//   and wanted output names; the offload runs; the process exits with its status.
//   End of input or another word than "try" -> exit 0.
// Settings used from the preamble: builders, system, extra-platforms,
// system-features (can the daemon build locally: decline, else postpone),
// max-silent-time, timeout (enforced by ferry), max-build-log-size, keep-failed,
// builders-use-substitutes (the machine substitutes missing inputs first).
// Derivations ferry cannot build remotely are declined at "try" time with a
// warning saying why (the daemon then builds them itself): outputs without a
// known path (floating content-addressed, impure or deferred outputs, read from
// the .drv). Fixed-output derivations are offloaded.
// ferry.conf (FERRY_CONFIG, default /etc/ferry/ferry.conf; machines/ferry_conf.hpp,
// per machine under [machine HOST]): state-dir, log-level (debug shows the decision
// log whatever the daemon's verbosity), codec, probe-deadline, probe-cache-seconds,
// connect-timeout, overload-threshold (Nix machines: off unless set here),
// min-free-space.
//
// Errors after accept are said as {"action":"msg","level":0,...} on stderr and as
// a "ferry: ..." line in the build log (fd 4), whose last lines Nix shows; stderr
// stays open until every cleanup (remote GC roots, slot) is done, because the
// daemon kills the process group when it sees stderr's EOF.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace ferry::hook {

struct nix_hook_fds {
    int in = 0;        // requests
    int err = 2;       // replies and @nix log lines
    int log = 4;       // build log (may be closed: then the log is dropped)
    int log_read = 5;  // closed at start; -1 = leave alone
};

struct nix_hook_environment {
    std::filesystem::path ferry_config = "/etc/ferry/ferry.conf";  // FERRY_CONFIG
    // NIX_SSHOPTS: the options ferry honours are applied to every connection
    // (ssh/ssh_options.hpp); the others are named once in a talkative message.
    std::string nix_sshopts;
    // ferry.conf's state-dir when it says none (machines/ferry_conf.hpp).
    static constexpr const char* default_state_dir = "/var/lib/ferry";

    using getenv_fn = std::function<const char*(const char*)>;
    static nix_hook_environment from(const getenv_fn& getenv);
};

// Runs the whole conversation; returns the process's exit status (0, 100, 101
// or 1). Never throws. verbosity: Nix's level (argv[1]).
int run_nix_build_hook(unsigned verbosity, const nix_hook_environment& env, nix_hook_fds fds = {});

}  // namespace ferry::hook
