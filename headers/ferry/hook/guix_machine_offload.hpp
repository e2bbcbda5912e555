// One offload to a Guix build machine, after hook::choose_machine accepted it
// (the Guix counterpart of offload_to_nix_machine, reporting through the same
// offload_events and returning the same offload_outcome).
//
// Steps (remote::guix_build_machine runs the `guix` commands over ssh):
//   1. connect (the probe's session when still open), protect the inputs + .drv
//      with GC roots under <remote state>/gcroots/ferry-*, ask which are missing;
//   2. send them: signed by the LOCAL daemon (the remote's `guix archive
//      --import` requires it) — asked over its socket with the worker protocol
//      (export-path with sign, as offload.scm's send-files does), or, when no
//      daemon listens there, through the local `guix archive --export` —
//      compressed into the remote import;
//   3. `guix build -r ROOT --max-silent-time=N --timeout=N DRV`, its stderr to
//      events.log as it comes, under ferry's watchdog (build_watchdog with the
//      daemon's limits plus a grace, so that the remote's own "timed out" is what
//      normally ends a build: the watchdog is for a remote that ignores them);
//   4. protect the outputs, `guix archive --export` them on the remote, verify
//      every item's signature against the local ACL (store/guix_signature.hpp:
//      what `guix archive --import` / guix-daemon's importPath checks) BEFORE the
//      importer registers it, restore + register with the daemon's locks honoured;
//   5. always: remove the remote roots.
// Exit status: 0 outputs valid locally; 100 `guix build` failed (offload.scm
// maps a store-protocol-error to 100); 101 timed out (the remote daemon's
// "timed out after N seconds [of silence]", or ferry's watchdog); 1 anything else
// (lost connection, transfer, signature, import, a missing program).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/hook/offload.hpp"
#include "ferry/machines/machine.hpp"
#include "ferry/remote/guix_remote.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/store/store_path.hpp"

namespace ferry::hook {

struct guix_offload_job {
    machines::machine machine;
    std::shared_ptr<ssh::session> session;  // from the choice; null or closed: connect anew
    std::string drv_path;
    std::vector<std::string> inputs;   // the daemon's inputs line (closure of the inputs and the .drv)
    std::vector<std::string> outputs;  // the daemon's outputs line (paths)
    std::uint64_t max_silent_time = 0;  // seconds, 0 = none
    std::uint64_t build_timeout = 0;    // seconds, 0 = none
    // The local daemon's socket (GUIX_DAEMON_SOCKET): the uploads' signed exports.
    std::string daemon_socket = "/var/guix/daemon-socket/socket";
    // The local real guix (FERRY_GUIX, ...): `guix archive --export` runs as it
    // when no daemon listens on daemon_socket.
    std::string local_guix;
    remote::guix_remote_options remote;  // guix-program, store dir, remote state dir
    // auto: an upload of >= auto_measure_threshold bytes measures the link and
    // weighs the codecs (transfer::probe_and_choose, as for Nix machines); below
    // it zstd:3 when the machine has zstd, else none. Outputs come back with the
    // same codec.
    codec::codec_spec codec{codec::codec_kind::zstd, 3};
    bool remote_has_zstd = true;  // from the probe
    // The local store the outputs go to (guix_environment::store_config():
    // NIX_STORE_DIR, GUIX_STATE_DIRECTORY, GUIX_DATABASE_DIRECTORY/db.sqlite).
    store::store_config local_store = store::store_config::make(store::store_flavour::guix, "/gnu/store", "/var/guix");
    // The local ACL (GUIX_CONFIGURATION_DIRECTORY/acl) the outputs' signatures
    // must verify against; see guix_signature.hpp for the missing-file rule.
    std::filesystem::path config_dir = "/etc/guix";
    std::chrono::milliseconds progress_every{5000};
    // ferry's watchdog fires a tenth of the limit (at least 1 s, at most this)
    // after the daemon's own limit.
    std::chrono::seconds watchdog_grace{5};
};

// Never throws: every failure is an outcome (exit_code 1, 100 or 101) whose
// message names the machine and the step.
asio::awaitable<offload_outcome> offload_to_guix_machine(guix_offload_job job, offload_settings settings,
                                                         offload_events events);

}  // namespace ferry::hook
