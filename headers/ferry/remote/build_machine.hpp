// One offload's view of a build machine, whatever its flavour. The hook drives it:
//
//   auto m = co_await nix_build_machine::open(session, options);
//   co_await m->protect(inputs);                    // remote GC roots first,
//   auto missing = co_await m->missing_paths(inputs);   // then ask (a Nix machine:
//                                                   // both in one, protect_and_find_missing)
//   ... transfer::send_paths(session, db, missing, ...) ...
//   auto result = co_await m->build(request, log);  // log streamed as it comes
//   co_await m->protect(outputs);
//   ... transfer::receive_paths(...) ...
//   co_await m->finish();                           // on every path out
//
// build_machine is the seam for the Guix flavour (guix archive / daemon socket),
// which another implementation will fill; nix_build_machine speaks
// `nix-store --serve --write`. Cancelling build() (e.g. io::with_deadline) closes
// the control channel, which kills the remote build (hang-up).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/protocol/serve.hpp"
#include "ferry/remote/gc_roots.hpp"
#include "ferry/remote/nix_remote.hpp"
#include "ferry/remote/serve_connection.hpp"
#include "ferry/remote/stderr.hpp"
#include "ferry/ssh/session.hpp"

namespace ferry::remote {

struct build_request {
    std::string drv_path;
    protocol::serve::basic_derivation drv;  // inputSrcs = every input (to_basic_derivation)
    protocol::serve::build_options options;  // max_silent_time, build_timeout, ...
};

class build_machine {
public:
    virtual ~build_machine() = default;
    virtual const std::string& host() const = 0;
    // Keeps `paths` from the machine's garbage collector until finish().
    virtual asio::awaitable<void> protect(const std::vector<std::string>& paths) = 0;
    // Which of `paths` the machine lacks, in the order given.
    virtual asio::awaitable<std::vector<std::string>> missing_paths(const std::vector<std::string>& paths) = 0;
    virtual asio::awaitable<protocol::serve::build_result> build(build_request request, log_sink log) = 0;
    // Removes the GC roots and ends the control connection; never throws (a
    // failure to clean up must not hide the build's outcome).
    virtual asio::awaitable<void> finish() noexcept = 0;
};

class nix_build_machine final : public build_machine {
public:
    // Opens the control connection (handshake). The session must outlive the machine.
    static asio::awaitable<std::unique_ptr<nix_build_machine>> open(ssh::session& s, nix_remote_options options);
    // protect() takes temp roots in the remote serve process (QueryValidPaths with
    // lock = 1), held until finish() closes the control connection; roots() (symlink
    // roots) stays inactive for a Nix machine.

    const std::string& host() const override { return control_.host(); }
    asio::awaitable<void> protect(const std::vector<std::string>& paths) override;
    asio::awaitable<std::vector<std::string>> missing_paths(const std::vector<std::string>& paths) override;
    // substitute: the machine first tries to substitute the paths it lacks from its
    // own substituters (QueryValidPaths with the substitute flag, what Nix's
    // builders-use-substitutes does); what is still missing is returned.
    asio::awaitable<std::vector<std::string>> missing_paths(const std::vector<std::string>& paths, bool substitute);
    // protect() and missing_paths() in one round trip (the locking query answers too).
    asio::awaitable<std::vector<std::string>> protect_and_find_missing(const std::vector<std::string>& paths,
                                                                       bool substitute);
    asio::awaitable<protocol::serve::build_result> build(build_request request, log_sink log) override;
    asio::awaitable<void> finish() noexcept override;

    ssh::session& session() { return *session_; }
    const nix_remote_options& options() const { return options_; }
    serve_connection& control() { return control_; }
    const remote_roots& roots() const { return roots_; }

private:
    nix_build_machine() = default;
    ssh::session* session_ = nullptr;
    nix_remote_options options_;
    serve_connection control_;
    remote_roots roots_;
};

}  // namespace ferry::remote
