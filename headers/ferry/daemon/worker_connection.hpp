// A connection to the local store daemon (nix-daemon or guix-daemon) over its
// Unix socket, spoken with protocol::worker (either dialect, told by the daemon's
// hello).
//
//   auto c = co_await worker_connection::connect("/nix/var/nix/daemon-socket/socket");
//   co_await c.add_temp_root(path);                      // lives as long as c
//   auto info = co_await c.query_path_info(path);        // nullopt: not valid
//   co_await c.export_path(path, true, [&](std::string_view piece) { ... });
//
// One request at a time. The daemon's log lines go to the log callback (if any);
// activities are skipped. A daemon error ("path ... is not valid") throws
// ferry::failure(remote_failed) with the daemon's message and the path, and leaves
// the connection usable: the daemon ended the operation cleanly. Anything else
// that fails (I/O, malformed bytes, an on_data callback that throws, cancellation)
// leaves the protocol state unknown: the connection is then broken() and every
// later call fails. Memory is bounded by one export piece (the daemons send
// <= 64 KiB; protocol::worker::worker_limits caps it) plus one 64 KiB read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/protocol/worker.hpp"

namespace ferry::daemon {

namespace detail {
struct worker_state;
}

using daemon_log = std::function<void(std::string_view line)>;

class worker_connection {
public:
    // Connects and shakes hands (including the daemon's startup messages).
    // Throws ferry::failure naming the socket path: connect_failed if nothing
    // listens there, unsupported for a version ferry does not speak, remote_failed
    // if the daemon refuses the client, bad_input for other bytes.
    static asio::awaitable<worker_connection> connect(std::string socket_path, daemon_log log = {});

    worker_connection();
    worker_connection(worker_connection&&) noexcept;
    worker_connection& operator=(worker_connection&&) noexcept;
    ~worker_connection();  // close()

    protocol::worker::dialect dialect() const;
    std::uint64_t server_version() const;
    const std::string& daemon_version() const;  // Nix >= minor 33: e.g. "2.8.1"; "" otherwise
    const std::string& socket_path() const;
    bool broken() const;
    void set_log(daemon_log log);

    // Streams the daemon's export of `path` (NAR, export magic, path, references,
    // deriver, signature marker — without the bundle's leading 1 / trailing 0):
    // on_data gets each piece as it arrives and is awaited before the next one is
    // read (back-pressure: a slow consumer slows the daemon down, memory stays
    // bounded). sign: Guix appends its signature; Nix 2.8 ignores the flag.
    using data_sink = std::function<asio::awaitable<void>(std::string_view)>;
    asio::awaitable<void> export_path(std::string path, bool sign, data_sink on_data);
    asio::awaitable<std::optional<protocol::worker::path_info>> query_path_info(std::string path);
    // A temporary GC root on `path` for as long as this connection is open.
    asio::awaitable<void> add_temp_root(std::string path);

    // Closes the socket (the daemon drops the temp roots). Idempotent.
    void close() noexcept;

private:
    std::unique_ptr<detail::worker_state> state_;
};

// An export bundle of `paths`, in the order given (references first, for the
// importer), as Guix's export-paths and `nix-store --export` frame it: for each
// path u64 1 and the daemon's export of it, then u64 0. Each piece goes to
// on_data as it comes.
asio::awaitable<void> export_bundle(worker_connection& c, const std::vector<std::string>& paths, bool sign,
                                    const worker_connection::data_sink& on_data);

}  // namespace ferry::daemon
