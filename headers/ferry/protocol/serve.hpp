// The client side of `nix-store --serve --write` (sans-I/O), as Nix 2.8's
// legacy-ssh-store speaks it and nix-store.cc opServe answers it.
//
// serve_client encodes requests (each call returns the bytes to send and
// records which reply to expect) and decodes the replies in order. Requests may
// be pipelined. decode() is given the unconsumed reply bytes and returns one whole
// reply and the bytes it used, or "need more" (std::monostate) with consumed == 0.
// Errors throw ferry::failure naming the reply and stream offset; every length
// and count from the server is checked against serve_limits first.
//
// Streams that other codecs own: after dump_store_path() the reply is a NAR, after
// export_paths() an export bundle; decode() returns nar_follows / bundle_follows
// without consuming anything and the caller hands the bytes to the NAR / bundle
// decoder before calling decode() again. import_paths() and add_to_store_nar()
// return only the header: the caller then streams the bundle / exactly nar_size
// NAR bytes, and the reply (u64 1) is import_done.
//
// Version rules (encoding follows the server's minor version, as Nix's client
// does): path infos carry narHash/ca/sigs for minor >= 4; AddToStoreNar needs
// minor >= 5; build options and BuildResult fields grow with minor 2, 3, 6, 7.
// Nix 2.8's server sends the built-outputs map after BuildDerivation whatever the
// client announced (opServe tests GET_PROTOCOL_MINOR(clientVersion >= 6)), so the
// client announces 0x207 and reads the map whenever the server's minor is >= 6.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

namespace ferry::protocol::serve {

constexpr std::uint64_t client_magic = 0x390c9deb;
constexpr std::uint64_t server_magic = 0x5452eecb;
constexpr std::uint64_t client_version = 0x207;  // major 0x200, minor 7 (Nix 2.8)

constexpr std::uint64_t major_of(std::uint64_t version) { return version & 0xff00; }
constexpr std::uint64_t minor_of(std::uint64_t version) { return version & 0x00ff; }

enum class command : std::uint64_t {
    query_valid_paths = 1,
    query_path_infos = 2,
    dump_store_path = 3,
    import_paths = 4,
    export_paths = 5,
    build_paths = 6,  // not used by ferry
    query_closure = 7,
    build_derivation = 8,
    add_to_store_nar = 9,
};

// One output of a BasicDerivation as Nix's writeDerivation sends it:
// input-addressed = {path, "", ""}; fixed-output = {path, "r:sha256", hex hash};
// floating CA = {"", "r:sha256", ""}; deferred = {"", "", ""}.
struct derivation_output {
    std::string path;
    std::string hash_algo;
    std::string hash;

    bool operator==(const derivation_output&) const = default;
};

// A derivation without inputDrvs (Nix's BasicDerivation). Sorted containers give
// Nix's own order on the wire. The store layer converts a parsed .drv into this;
// Nix's build-remote replaces input_srcs with the whole input closure when the
// derivation had inputDrvs.
struct basic_derivation {
    std::map<std::string, derivation_output> outputs;  // output name -> output
    std::set<std::string> input_srcs;
    std::string platform;
    std::string builder;
    std::vector<std::string> args;
    std::map<std::string, std::string> env;

    bool operator==(const basic_derivation&) const = default;
};

void append_basic_derivation(std::string& out, const basic_derivation& drv);

// The build settings sent after BuildDerivation (putBuildSettings).
struct build_options {
    std::uint64_t max_silent_time = 0;  // seconds, 0 = none
    std::uint64_t build_timeout = 0;    // seconds, 0 = none
    std::uint64_t max_log_size = 0;     // minor >= 2
    std::uint64_t nr_repeats = 0;       // minor >= 3 (Nix's "repeat")
    bool enforce_determinism = true;    // minor >= 3
    bool keep_failed = false;           // minor >= 7
};

// BuildResult::Status (build-result.hh). Values outside the list may arrive from
// newer servers; they are kept as they are.
enum class build_status : std::uint64_t {
    built = 0,
    substituted = 1,
    already_valid = 2,
    permanent_failure = 3,
    input_rejected = 4,
    output_rejected = 5,
    transient_failure = 6,
    cached_failure = 7,
    timed_out = 8,
    misc_failure = 9,
    dependency_failed = 10,
    log_limit_exceeded = 11,
    not_deterministic = 12,
    resolves_to_already_valid = 13,
    no_substituters = 14,
};

std::string_view to_string(build_status s);  // Nix's spelling: "PermanentFailure"...; "Unknown"
bool succeeded(build_status s);              // Built, Substituted, AlreadyValid, ResolvesToAlreadyValid

// The build hook's exit status for a remote build's status, which the daemons
// read as: 0 = success; 100 = permanent build failure (Guix may cache it;
// the daemon will not retry); 101 = timeout; anything else = transient.
//   0   built, substituted, already_valid, resolves_to_already_valid
//   100 permanent_failure, output_rejected (e.g. fixed-output hash mismatch),
//       cached_failure, log_limit_exceeded, not_deterministic: a rebuild
//       elsewhere would fail the same way
//   101 timed_out
//   1   transient_failure, misc_failure, input_rejected, dependency_failed,
//       no_substituters and unknown codes: a problem of this remote or run,
//       not of the derivation
int hook_exit_code(build_status s);

// A realisation the server reports as built (for content-addressed outputs).
struct built_output {
    std::string id;        // DrvOutput: "sha256:<hash>!<output name>"
    std::string out_path;  // the realisation's outPath (a base name, no store dir)
    std::string json;      // the realisation as the server sent it

    bool operator==(const built_output&) const = default;
};

struct build_result {
    build_status status = build_status::misc_failure;
    std::string error_msg;
    std::uint64_t times_built = 0;  // minor >= 3
    bool is_non_deterministic = false;
    std::uint64_t start_time = 0;  // seconds since the epoch
    std::uint64_t stop_time = 0;
    std::vector<built_output> built_outputs;  // minor >= 6

    bool operator==(const build_result&) const = default;
};

struct path_info {
    std::string path;
    std::string deriver;  // "" = none
    std::vector<std::string> references;
    std::uint64_t download_size = 0;
    std::uint64_t nar_size = 0;
    std::string nar_hash;  // minor >= 4: "sha256:<nix-base32>"
    std::string ca;        // minor >= 4: "" or e.g. "text:sha256:..."
    std::vector<std::string> sigs;  // minor >= 4

    bool operator==(const path_info&) const = default;
};

// The header of AddToStoreNar; exactly nar_size NAR bytes follow it.
struct add_to_store_nar_request {
    std::string path;
    std::string deriver;  // "" = none
    std::string nar_hash;  // base16 without prefix (Nix's client) or any form Hash::parseAny takes
    std::vector<std::string> references;
    std::uint64_t registration_time = 0;
    std::uint64_t nar_size = 0;  // must not be 0: the server refuses it
    bool ultimate = false;
    std::vector<std::string> sigs;
    std::string ca;
};

struct serve_limits {
    std::uint64_t max_paths = 1 << 20;
    std::uint64_t max_path_length = 4096;
    std::uint64_t max_error_msg = 1 << 20;
    std::uint64_t max_sigs = 1024;
    std::uint64_t max_sig_length = 4096;
    std::uint64_t max_built_outputs = 4096;
    std::uint64_t max_realisation_json = 1 << 20;
};

// Replies.
struct server_hello {
    std::uint64_t version = 0;
};
struct valid_paths {  // QueryValidPaths and QueryClosure
    std::vector<std::string> paths;
};
struct path_infos {  // only the paths the server knows, in its order
    std::vector<path_info> infos;
};
struct import_done {};     // ImportPaths / AddToStoreNar answered 1
struct nar_follows {};     // DumpStorePath: a NAR comes next
struct bundle_follows {};  // ExportPaths: an export bundle comes next

class serve_client {
public:
    using reply = std::variant<std::monostate, server_hello, valid_paths, path_infos, import_done, nar_follows,
                               bundle_follows, build_result>;
    struct result {
        reply msg;  // std::monostate: need more bytes (or nothing pending)
        std::size_t consumed = 0;
        bool need_more() const { return std::holds_alternative<std::monostate>(msg); }
    };

    explicit serve_client(serve_limits limits = {}) : limits_(limits) {}

    // Request encoders. Those that depend on the server's version throw
    // std::logic_error before the server_hello was decoded.
    std::string hello();  // magic + 0x207
    std::string query_valid_paths(const std::vector<std::string>& paths, bool lock, bool substitute);
    std::string query_path_infos(const std::vector<std::string>& paths);
    std::string dump_store_path(std::string_view path);
    std::string import_paths();
    std::string export_paths(const std::vector<std::string>& paths);
    std::string query_closure(const std::vector<std::string>& paths, bool include_outputs);
    std::string build_derivation(std::string_view drv_path, const basic_derivation& drv, const build_options& options);
    // Throws ferry::failure (unsupported) if the server's minor is < 5, (bad_input) if nar_size is 0.
    std::string add_to_store_nar(const add_to_store_nar_request& request);

    // bytes: the unconsumed reply stream.
    result decode(std::string_view bytes);
    // What to report when the server's stdout ended (errc::truncated, or ok when
    // nothing was pending): names the reply that was awaited and the offset. The
    // server's stderr usually says why; the caller adds it.
    std::error_code end_of_stream(std::string& message) const;

    std::size_t pending() const { return pending_.size(); }
    std::optional<std::uint64_t> server_version() const { return server_version_; }
    std::uint64_t stream_offset() const { return offset_; }

private:
    enum class expect { hello, valid_paths, path_infos, import_done, nar, bundle, build_result };
    static std::string_view describe(expect e);
    std::uint64_t minor() const;
    std::string start(command c, expect e);

    serve_limits limits_;
    std::deque<expect> pending_;
    std::optional<std::uint64_t> server_version_;
    bool hello_sent_ = false;
    std::uint64_t offset_ = 0;
};

}  // namespace ferry::protocol::serve
