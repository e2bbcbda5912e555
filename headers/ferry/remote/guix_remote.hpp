// A Guix build machine, reached the way the 2014 `guix offload` did: through the
// `guix` command line over SSH (guix/scripts/offload.scm before the switch to the
// daemon socket; ../shared/reference/store-formats.md "Guix machine"):
//
//   guix archive --missing                 paths on stdin, prints the missing ones
//   <decompressor> | guix archive --import a SIGNED bundle on stdin
//   guix archive --export PATH... | <compressor>
//   guix build -r ROOT --max-silent-time=N --timeout=N DRV   (build log on stderr)
//   GC roots: symlinks in <state>/gcroots/ferry-<random>/ (remote_roots), removed
//   afterwards.
//
// `guix archive --import` refuses unsigned items. The hook's uploads come from the
// LOCAL daemon's export, which signs with /etc/guix/signing-key.sec (offload.scm's
// send-files asks the local daemon too): the send side runs the real local
// `guix archive --export` (local_export_argv) and streams its output, compressed,
// into the remote import. (ferry signs by itself only `ferry test`'s throwaway
// item, store/guix_signature.hpp, which needs read access to that key.) The receive side
// restores the remote's export itself (store::bundle_importer), because the daemon
// holds the outputs' locks (offload.scm: restore-file-set #:lock? #f).
//
// The command texts are pure functions (every word shell-quoted); guix_build_machine
// runs them on an ssh::session.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/remote/gc_roots.hpp"
#include "ferry/remote/stderr.hpp"
#include "ferry/ssh/session.hpp"

namespace ferry::remote {

struct guix_remote_options {
    // The `guix` program on the machine (ferry.conf per-machine `guix-program`;
    // tests point it at a shim). One word; quoted when used.
    std::string guix_program = "guix";
    std::string store_dir = "/gnu/store";
    std::string state_dir = "/var/guix";  // GC roots under <state>/gcroots
};

// `guix archive --missing` (paths go on stdin, one a line).
std::string guix_missing_command(const guix_remote_options& o);
// `guix archive --import`, behind `sh -c '<decompressor> | ...'` unless codec none.
std::string guix_import_command(const guix_remote_options& o, codec::codec_kind kind);
// `guix archive --export P...`, piped into the compressor unless codec none. A
// failing export is said on stderr ("ferry: export failed (status N)"); the stream
// then lacks the bundle's final 0, which the receiver rejects as truncated.
std::string guix_export_command(const guix_remote_options& o, const std::vector<std::string>& paths,
                                const codec::codec_spec& codec, unsigned threads = 0);
// `guix build -r ROOT --max-silent-time=N --timeout=N DRV`. 0 means "no limit" to
// the daemon for both, and is passed as such.
std::string guix_build_command(const guix_remote_options& o, std::string_view root, std::uint64_t max_silent_time,
                               std::uint64_t timeout, std::string_view drv_path);

// The local exporter: argv for `sh -c` that runs `<local guix> archive --export
// P...` (paths as positional parameters: no quoting, no argv re-splitting) piped
// into the compressor. The local daemon signs the items.
std::vector<std::string> local_export_argv(std::string_view local_guix, const std::vector<std::string>& paths,
                                           const codec::codec_spec& codec, unsigned threads = 0);

// Where an upload's signed bundle comes from: `produce` writes the whole bundle
// (1 item 1 item ... 0, references first) to the sink, awaiting each piece, and
// throws ferry::failure naming its side when it fails. Two sources: the local
// daemon over its socket (hook/guix_machine_offload.cpp, daemon::export_bundle)
// and the local `guix archive --export` (local_cli_export).
using bundle_sink = std::function<asio::awaitable<void>(std::string_view)>;
struct bundle_source {
    std::string name;  // in messages: "the local guix-daemon at SOCKET", ...
    std::function<asio::awaitable<void>(bundle_sink)> produce;
};
bundle_source local_cli_export(std::string local_guix, std::vector<std::string> paths);

// How `guix build` ended, read as offload.scm reads a store-protocol-error: a
// build failure is permanent (hook exit 100), a timeout 101, anything else
// (ssh trouble, a missing program, a signal) transient.
enum class guix_build_verdict { built, failed, timed_out, transient };
guix_build_verdict classify_guix_build(int exit_code, std::string_view stderr_tail);

struct guix_transfer_progress {
    std::size_t items = 0;
    std::uint64_t bytes = 0;  // bytes on the wire so far
};
using guix_progress_fn = std::function<void(const guix_transfer_progress&)>;

class guix_build_machine {
public:
    // The session must outlive the machine.
    guix_build_machine(ssh::session& s, guix_remote_options options);

    const std::string& host() const { return session_->host(); }
    const guix_remote_options& options() const { return options_; }

    // Keeps `paths` alive on the machine until finish() (creates the root
    // directory on first use).
    asio::awaitable<void> protect(const std::vector<std::string>& paths);
    // Which of `paths` the machine lacks, in the order given.
    asio::awaitable<std::vector<std::string>> missing_paths(const std::vector<std::string>& paths);
    // Streams the source's signed bundle, compressed with `codec`, into the
    // remote import (its items are counted on the way). progress is called at
    // least every `progress_every`, and at the end. Returns the bytes sent on the
    // channel. Throws ferry::failure naming the host and the failing side (the
    // source, or the remote import with its stderr).
    asio::awaitable<std::uint64_t> send(bundle_source source, codec::codec_spec codec, guix_progress_fn progress,
                                        std::chrono::milliseconds progress_every);
    struct build_outcome {
        guix_build_verdict verdict = guix_build_verdict::transient;
        ssh::exit_status status;
        std::string message;  // the last stderr lines when it failed
    };
    // Builds the derivation with a root below the protection directory; the
    // log (the command's stderr) goes to `log` as it comes.
    asio::awaitable<build_outcome> build(std::string drv_path, std::uint64_t max_silent_time,
                                         std::uint64_t timeout, log_sink log);
    // Streams `guix archive --export outputs | <compressor>` into `sink`
    // (decompressed bundle bytes). Returns the wire bytes.
    using received_sink = std::function<void(std::string_view)>;
    asio::awaitable<std::uint64_t> receive(std::vector<std::string> outputs, codec::codec_spec codec,
                                           received_sink sink, guix_progress_fn progress,
                                           std::chrono::milliseconds progress_every);
    // Removes the GC roots; never throws.
    asio::awaitable<void> finish() noexcept;

private:
    ssh::session* session_;
    guix_remote_options options_;
    std::unique_ptr<remote_roots> roots_;
};

}  // namespace ferry::remote
