// The client side of the daemon worker protocol (sans-I/O): what a store client
// speaks over the daemon's Unix socket, in the two dialects that exist today.
// Sources read (no code taken): Nix tag 2.8.1 src/libstore/{worker-protocol.hh,
// daemon.cc, remote-store.cc, path-info.cc, export-import.cc},
// src/libutil/serialise.cc; Guix (kromka-chleba/guix 43770a9d8ac)
// nix/libstore/{worker-protocol.hh, local-store.cc}, nix/nix-daemon/nix-daemon.cc,
// guix/store.scm, guix/remote-procedures.scm.
//
// Conversation:
//   client: hello()                      magic 0x6e697863
//   server: server_hello                 magic 0x6478696f + version -> dialect
//   client: finish_handshake()           client version, CPU affinity 0, reserveSpace 0
//   server: [daemon_version]             Nix only, both sides >= minor 33
//           stderr stream ... done       startup messages, then STDERR_LAST
//   client: export_path / query_path_info / add_temp_root
//   server: stderr stream (log_line, data_chunk, activity)* then exactly one of
//           done (export, temp root) / path_info_reply / daemon_error
//
// decode() is given the unconsumed server bytes and returns one message and the
// bytes it used, or "need more" (std::monostate) with consumed == 0. STDERR_LAST
// and the reply after it are decoded together, so a reply is never half-read.
// A data_chunk's bytes are a view into the buffer given to decode(): use them
// before dropping the consumed bytes. Errors throw ferry::failure naming the
// stream offset; every length from the server is checked against worker_limits
// before anything is allocated.
//
// Versions: each side gates features on the other's version (daemon.cc:1010-1019
// on the client's, remote-store.cc:212-226 on the daemon's), so the version in
// force is the smaller of the two; every feature test below is per dialect.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ferry::protocol::wire {
class cursor;
}

namespace ferry::protocol::worker {

constexpr std::uint64_t client_magic = 0x6e697863;  // "cxin": WORKER_MAGIC_1
constexpr std::uint64_t server_magic = 0x6478696f;  // "oixd": WORKER_MAGIC_2

constexpr std::uint64_t major_of(std::uint64_t version) { return version & 0xff00; }
constexpr std::uint64_t minor_of(std::uint64_t version) { return version & 0x00ff; }

// The two families of daemons. Their version numbers share major 0x100 but not
// their meaning: Guix forked at 0x10e, bumped 0x10f (2015) and then jumped to
// 0x160 (Guix f9aefa2d5fb, 2016) and on to 0x164 (1e47148f46e, 2023); Nix
// went 0x114 (2.0), 0x115 (2.3), 0x120 (2.4), 0x122 (2.8), 0x123 (2.18), 0x126 (2.24), 0x127.
enum class dialect { nix, guix };

std::string_view to_string(dialect d);  // "Nix" / "Guix"

// Version ranges ferry accepts, per family. Below 0x115 (Nix < 2.3, Guix 0x10e /
// 0x10f from before 2016, which also clash with Nix 1.x numbers) is "too old".
constexpr std::uint64_t nix_oldest = 0x115;
constexpr std::uint64_t nix_newest = 0x15f;
constexpr std::uint64_t guix_oldest = 0x160;
constexpr std::uint64_t guix_newest = 0x1ff;

// The dialect of a daemon announcing `server_version`; throws ferry::failure
// (unsupported) for another major, a version below both families, or none.
dialect dialect_of(std::uint64_t server_version);

// The version ferry announces: Nix 2.8's own (0x122: structured errors, activities,
// the daemon's version string; newer daemons then answer in that format), and
// Guix's current client version 0x164 (guix/remote-procedures.scm %protocol-version).
constexpr std::uint64_t nix_client_version = 0x122;
constexpr std::uint64_t guix_client_version = 0x164;
std::uint64_t client_version_for(dialect d);

enum class op : std::uint64_t {
    add_temp_root = 11,    // wopAddTempRoot, both dialects
    export_path = 16,      // wopExportPath (Nix: "obsolete" but served in 2.8)
    query_path_info = 26,  // wopQueryPathInfo
};

// The stderr stream's message codes (worker-protocol.hh in both trees).
namespace stderr_code {
constexpr std::uint64_t next = 0x6f6c6d67;   // a log line
constexpr std::uint64_t read = 0x64617461;   // the daemon wants input
constexpr std::uint64_t write = 0x64617416;  // data for the client's sink
constexpr std::uint64_t last = 0x616c7473;   // the operation succeeded
constexpr std::uint64_t error = 0x63787470;  // the operation failed
constexpr std::uint64_t start_activity = 0x53545254;  // Nix >= minor 20
constexpr std::uint64_t stop_activity = 0x53544f50;
constexpr std::uint64_t result = 0x52534c54;
}  // namespace stderr_code

struct worker_limits {
    std::uint64_t max_path_length = 4096;
    std::uint64_t max_references = 1 << 20;
    std::uint64_t max_log_line = 1 << 20;
    std::uint64_t max_error_msg = 1 << 20;
    std::uint64_t max_traces = 1024;
    std::uint64_t max_data_chunk = 64 << 20;  // the daemons send <= 64 KiB pieces
    std::uint64_t max_sigs = 1024;
    std::uint64_t max_sig_length = 4096;
    std::uint64_t max_activity_fields = 1024;
    std::uint64_t max_version_string = 1024;
};

struct path_info {
    std::string deriver;  // "" = none
    std::string nar_hash;  // as sent: SHA-256 in base16 without prefix, both dialects
    std::vector<std::string> references;
    std::uint64_t registration_time = 0;
    std::uint64_t nar_size = 0;
    bool ultimate = false;            // Nix >= minor 16
    std::vector<std::string> sigs;    // Nix >= minor 16
    std::string ca;                   // Nix >= minor 16; "" = not content-addressed

    bool operator==(const path_info&) const = default;
};

// Messages.
struct server_hello {
    std::uint64_t version = 0;
    worker::dialect dialect = dialect::nix;
};
struct daemon_version {  // Nix >= minor 33: the daemon's Nix version ("2.8.1")
    std::string text;
};
struct log_line {  // STDERR_NEXT (Nix appends "\n"; Guix sends raw stderr pieces)
    std::string text;
};
struct data_chunk {  // STDERR_WRITE: a piece of the export (a view into decode's input)
    std::string_view bytes;
};
struct activity {  // Nix's START_ACTIVITY / STOP_ACTIVITY / RESULT, decoded and skipped
    std::uint64_t code = 0;
    std::uint64_t id = 0;
    std::string text;  // START_ACTIVITY's description
};
struct daemon_error {  // STDERR_ERROR: the operation failed, nothing else follows
    std::string message;
    std::uint64_t status = 1;
    std::vector<std::string> traces;  // Nix structured errors
};
struct done {};  // handshake finished / export finished (u64 1) / temp root added (u64 1)
struct path_info_reply {
    std::optional<path_info> info;  // nullopt: the path is not valid
};

class worker_client {
public:
    using message = std::variant<std::monostate, server_hello, daemon_version, log_line, data_chunk, activity,
                                 daemon_error, done, path_info_reply>;
    struct result {
        message msg;  // std::monostate: need more bytes (or nothing pending)
        std::size_t consumed = 0;
        bool need_more() const { return std::holds_alternative<std::monostate>(msg); }
    };

    explicit worker_client(worker_limits limits = {}) : limits_(limits) {}

    // The client magic. The client version cannot go with it: it depends on the
    // dialect, which the server's hello tells (both real clients wait for it too:
    // remote-store.cc:193-214, store.scm open-connection).
    std::string hello();
    // After server_hello: the client version for the dialect, CPU affinity "no"
    // (minor >= 14) and reserveSpace "no" (minor >= 11), true of every supported
    // version of both dialects (daemon.cc:1010-1016, nix-daemon.cc:804-809).
    std::string finish_handshake();

    // Requests; each throws std::logic_error before finish_handshake().
    std::string export_path(std::string_view path, bool sign);
    std::string query_path_info(std::string_view path);
    std::string add_temp_root(std::string_view path);

    // bytes: the unconsumed server stream.
    result decode(std::string_view bytes);

    std::size_t pending() const { return pending_.size(); }
    std::optional<std::uint64_t> server_version() const { return server_version_; }
    std::optional<worker::dialect> dialect() const { return dialect_; }
    // min(server, client) once known: the version whose features are in force.
    std::uint64_t effective_version() const;
    std::uint64_t stream_offset() const { return offset_; }
    // "the handshake", "ExportPath of /gnu/store/...": what the front reply answers.
    std::string awaited() const;

private:
    enum class stage { hello, wait_finish, daemon_version, stream };
    struct pending_op {
        enum class kind { handshake, export_path, query_path_info, add_temp_root } what;
        std::string path;
        stage at = stage::stream;
    };

    std::string start(pending_op::kind what, op code, std::string_view path);
    result decode_front(std::string_view bytes);
    result finish(message msg, std::size_t consumed, bool op_over);
    std::optional<message> read_after_last(wire::cursor& in);
    bool nix_at_least(std::uint64_t minor) const;

    worker_limits limits_;
    std::deque<pending_op> pending_;
    std::optional<std::uint64_t> server_version_;
    std::optional<worker::dialect> dialect_;
    bool hello_sent_ = false;
    bool handshake_finished_ = false;
    std::uint64_t offset_ = 0;
};

}  // namespace ferry::protocol::worker
