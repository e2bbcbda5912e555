// The control connection to a Nix build machine: one ssh channel running
// `nix-store --serve --write` (nix_remote.hpp), spoken with protocol::serve.
//
//   auto c = co_await serve_connection::open(session, options);   // handshake
//   auto missing = co_await c.query_missing(closure);              // one round trip
//   auto result = co_await c.build_derivation(drv, basic, opts, log_sink);
//   co_await c.close();
//
// The build log arrives on the channel's stderr and is passed to the sink as it
// comes; stderr is drained during every operation (stderr.hpp), and its tail is
// quoted in errors. Requests are strictly request/reply on this channel
// (uncompressed), one at a time.
//
// Cancellation: every operation honours Asio cancellation (io::with_deadline).
// An operation that failed or was cancelled leaves the protocol state unknown:
// the connection is then `broken()`, and abort() (or the destructor) closes the
// channel — the remote nix-store sees its stdin hang up and kills a running
// build (Nix's hang-up monitor). That is how a hook cancels or times out a build.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/protocol/serve.hpp"
#include "ferry/remote/nix_remote.hpp"
#include "ferry/remote/stderr.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/store/derivation.hpp"

namespace ferry::remote {

namespace detail {
struct serve_state;
}

class serve_connection {
public:
    // Starts the serve command on `s` and shakes hands. Throws ferry::failure
    // naming the host (remote_failed if the program is missing or speaks
    // something else, unsupported for a server older than protocol 2.5).
    static asio::awaitable<serve_connection> open(ssh::session& s, nix_remote_options options);

    serve_connection();
    serve_connection(serve_connection&&) noexcept;
    serve_connection& operator=(serve_connection&&) noexcept;
    ~serve_connection();  // abort()

    std::uint64_t server_version() const;
    const std::string& host() const;
    const nix_remote_options& options() const;
    bool broken() const;
    std::string stderr_text() const;

    // The subset of `paths` that is valid on the machine (server's order).
    asio::awaitable<std::vector<std::string>> query_valid_paths(const std::vector<std::string>& paths,
                                                                bool lock = false, bool substitute = false);
    // The paths the machine lacks, in the order given (one round trip). substitute:
    // the machine substitutes what it can first (its own substituters).
    asio::awaitable<std::vector<std::string>> query_missing(const std::vector<std::string>& paths,
                                                            bool substitute = false);
    // The same, and every path named becomes a temp root of the serve process
    // (lock = 1), held while the connection lasts: protect and ask in one round trip.
    asio::awaitable<std::vector<std::string>> protect_and_query_missing(const std::vector<std::string>& paths,
                                                                        bool substitute = false);
    asio::awaitable<std::vector<protocol::serve::path_info>> query_path_infos(const std::vector<std::string>& paths);

    // Builds drv_path on the machine. The inputs must be valid there already.
    // Log bytes (the remote's stderr) go to `log` as they arrive.
    asio::awaitable<protocol::serve::build_result> build_derivation(std::string drv_path,
                                                                    protocol::serve::basic_derivation drv,
                                                                    protocol::serve::build_options options,
                                                                    log_sink log = {});

    // Ends the session cleanly: EOF, then the remote's exit status (non-zero is
    // errc::remote_failed with its stderr).
    asio::awaitable<void> close();
    // Closes the channel now (hang-up: a remote build is killed). Idempotent.
    void abort() noexcept;
    // The end of an offload: the channel closes without waiting for nix-store to
    // exit. Nothing it could still say matters once the outputs are here, its temp
    // roots end when it exits (on the EOF), and its exit (SQLite's checkpoint) took
    // ~0.1 s of every offload's time on a test host.
    void hang_up() noexcept { abort(); }

private:
    std::unique_ptr<detail::serve_state> state_;
};

// The BasicDerivation Nix's build-remote sends: the .drv's outputs, platform,
// builder, args and environment, with inputSrcs = `inputs` (the whole input set:
// a BasicDerivation has no inputDrvs).
protocol::serve::basic_derivation to_basic_derivation(const store::derivation& drv,
                                                      const std::vector<std::string>& inputs);

}  // namespace ferry::remote
