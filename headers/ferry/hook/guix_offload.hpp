// The Guix front end: `ferry offload SYSTEM MAX-SILENT-TIME PRINT-BUILD-TRACE
// BUILD-TIMEOUT` as guix-daemon runs it (guix nix/libstore/build.cc tryBuildHook,
// nix/libutil/util.cc Agent::Agent; guix/scripts/offload.scm guix-offload).
//
// Descriptors, as the daemon sets them up: stdin = request pipe; stdout AND
// stderr = one pipe back (the daemon reads lines until one starts with "# ",
// passing the others to the client); fd 4 = the build log; cwd "/".
//
// Per request line, hook::choose_machine decides with Guix's policy
// (schedule::daemon_kind::guix): `# decline` when no machine of machines.scm
// matches the system and features (offload.scm: no candidate), `# accept` when a
// machine was chosen and its slot is held, `# postpone` when candidates are busy,
// overloaded or low on disk; when every candidate is down or backed off: decline
// if the request says the daemon can build it itself, else postpone — with a
// line naming each host and its error. After decline/postpone the next request comes on the same
// stdin; after accept the daemon writes the inputs and outputs lines and closes
// stdin, and this process offloads that one derivation and exits:
//   0    outputs are valid in the local store (written and registered by ferry)
//   100  the remote build failed (permanent; the daemon may cache it)
//   101  the remote build timed out
//   1    anything else: connection lost, transfer failed, bad input (transient)
// A malformed request line is reported on stderr naming the line and its text,
// with status 1 (offload.scm: "invalid request line").
//
// The daemon kills a hook that is silent for MAX-SILENT-TIME on stderr and fd 4,
// so transfers print progress lines on stderr ("ferry: sent N items, X MB to H").
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "ferry/machines/ferry_conf.hpp"
#include "ferry/protocol/guix_hook.hpp"
#include "ferry/schedule/probe.hpp"
#include "ferry/store/store_path.hpp"

namespace ferry::hook {

// Where Guix keeps things, from the same variables Guix reads
// (guix/config.scm.in, nix/libstore/globals.cc).
struct guix_environment {
    std::string store_dir = "/gnu/store";                 // NIX_STORE_DIR
    std::filesystem::path state_dir = "/var/guix";        // GUIX_STATE_DIRECTORY
    std::filesystem::path database_dir = "/var/guix/db";  // GUIX_DATABASE_DIRECTORY (default <state>/db)
    std::filesystem::path config_dir = "/etc/guix";       // GUIX_CONFIGURATION_DIRECTORY
    std::string daemon_socket = "/var/guix/daemon-socket/socket";  // GUIX_DAEMON_SOCKET
    std::filesystem::path ferry_config = "/etc/ferry/ferry.conf";  // FERRY_CONFIG
    // The real local guix, which runs `guix archive --export` (the local daemon
    // signs the bundle). Empty: not found (the offload then fails, transient).
    std::string local_guix;

    std::filesystem::path machines_file() const { return config_dir / "machines.scm"; }
    // The local store these variables name (its database under database_dir).
    store::store_config store_config() const;

    using getenv_fn = std::function<const char*(const char*)>;
    static guix_environment from(const getenv_fn& getenv);
};

struct guix_offload_fds {
    int in = 0;   // requests
    int out = 1;  // replies
    int err = 2;  // diagnostics, traces, progress (the same pipe as out under the daemon)
    int log = 4;  // build log
};

// Probe deadline, connect timeout, codec, state directory, log level, ... come
// from ferry.conf (machines/ferry_conf.hpp; state-dir defaults to Guix's state
// directory, where guix offload keeps its slot files).
struct guix_offload_options {
    std::chrono::milliseconds progress_every{5000};  // also capped by MAX-SILENT-TIME / 3
};

// How a machines.scm machine is driven (ferry.conf remote-flavour): as forced,
// or for auto: a configured guix-program means Guix; else the machine's probe —
// `guix` on its PATH means Guix, `nix-store` without `guix` means Nix (offloaded
// through `nix-store --serve` exactly as offload_to_nix_machine does for
// nix-daemon); neither (or no probe) means Guix, whose first command then names
// what is missing. Never returns auto_detect.
machines::remote_flavour remote_flavour_for(const machines::settings& conf,
                                            const std::optional<schedule::probe_result>& probe);

// Runs the whole conversation; returns the exit status. Never throws.
int run_guix_offload(const protocol::guix_hook_args& args, const guix_environment& env, guix_offload_fds fds = {},
                     guix_offload_options options = {});

}  // namespace ferry::hook
