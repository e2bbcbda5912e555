#include "ferry/protocol/worker.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/core.h>

#include "ferry/protocol/detail/decode_step.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace ferry::protocol::worker {
namespace {

// What arrived instead of the server's magic, shown as text.
std::string shown(std::string_view bytes) {
    std::string out;
    for (char c : bytes.substr(0, 64))
        out += (c >= ' ' && c < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    return out;
}

std::string_view code_name(std::uint64_t code) {
    switch (code) {
    case stderr_code::next: return "STDERR_NEXT";
    case stderr_code::read: return "STDERR_READ";
    case stderr_code::write: return "STDERR_WRITE";
    case stderr_code::last: return "STDERR_LAST";
    case stderr_code::error: return "STDERR_ERROR";
    case stderr_code::start_activity: return "STDERR_START_ACTIVITY";
    case stderr_code::stop_activity: return "STDERR_STOP_ACTIVITY";
    case stderr_code::result: return "STDERR_RESULT";
    }
    return "unknown";
}

std::optional<std::string> read_text(wire::cursor& in, std::uint64_t max_length) {
    FERRY_GET(text, in.string(max_length));
    return std::string(*text);
}

// The u64 1 that ends ExportPath and AddTempRoot (daemon.cc:503, 644;
// nix-daemon.cc:473, 520).
std::optional<done> read_one(wire::cursor& in, std::string_view what) {
    auto offset = in.stream_offset();
    FERRY_GET(value, in.u64());
    if (*value != 1)
        throw failure(errc::bad_input, fmt::format("{}: expected 1 after STDERR_LAST at offset {}, got {}", what,
                                                   offset, *value));
    return done{};
}

// A u64 that must be 0 (false) or 1 (true).
std::optional<bool> read_bool(wire::cursor& in, std::string_view what) {
    auto offset = in.stream_offset();
    FERRY_GET(value, in.u64());
    if (*value > 1)
        throw failure(errc::bad_input, fmt::format("{} at offset {}: expected 0 or 1, got {}", what, offset, *value));
    return *value == 1;
}

// Nix's Logger::Fields (remote-store.cc:1102-1116): count, then per field a type
// (0 = integer, 1 = string) and the value. Only checked and skipped.
std::optional<std::monostate> skip_fields(wire::cursor& in, const worker_limits& limits) {
    auto offset = in.stream_offset();
    FERRY_GET(count, in.u64());
    if (*count > limits.max_activity_fields)
        throw failure(errc::too_large, fmt::format("{} activity fields at offset {} exceed the limit of {}", *count,
                                                   offset, limits.max_activity_fields));
    for (std::uint64_t i = 0; i < *count; ++i) {
        auto type_offset = in.stream_offset();
        FERRY_GET(type, in.u64());
        if (*type == 0) {
            FERRY_GET(number, in.u64());
        } else if (*type == 1) {
            FERRY_GET(text, in.string(limits.max_log_line));
        } else {
            throw failure(errc::bad_input,
                          fmt::format("activity field type {} at offset {} (0 = integer, 1 = string)", *type,
                                      type_offset));
        }
    }
    return std::monostate{};
}

// The body of START_ACTIVITY (id, level, type, text, fields, parent), STOP_ACTIVITY
// (id) and RESULT (id, type, fields): daemon.cc:135, 143, 151.
std::optional<activity> read_activity(wire::cursor& in, std::uint64_t code, const worker_limits& limits) {
    activity a;
    a.code = code;
    FERRY_GET(id, in.u64());
    a.id = *id;
    if (code == stderr_code::start_activity) {
        FERRY_GET(level, in.u64());
        FERRY_GET(type, in.u64());
        FERRY_GET(text, read_text(in, limits.max_log_line));
        FERRY_GET(fields, skip_fields(in, limits));
        FERRY_GET(parent, in.u64());
        a.text = std::move(*text);
    } else if (code == stderr_code::result) {
        FERRY_GET(type, in.u64());
        FERRY_GET(fields, skip_fields(in, limits));
    }
    return a;
}

// A "havePos" word, which Nix 2.8 always writes as 0 (serialise.cc:362, 365) and
// whose other values it cannot read either (serialise.cc:436, 440).
std::optional<std::monostate> read_no_position(wire::cursor& in) {
    auto offset = in.stream_offset();
    FERRY_GET(have_pos, in.u64());
    if (*have_pos != 0)
        throw failure(errc::unsupported,
                      fmt::format("error position (havePos = {}) at offset {}: only 0 is defined", *have_pos, offset));
    return std::monostate{};
}

// Nix's structured error (minor >= 26; serialise.cc:354-369, read at 424-446):
// "Error", level, a name (no longer used), the message, havePos 0, the traces.
// It carries no status: Nix's client makes it an Error with the default status 1.
std::optional<daemon_error> read_nix_structured_error(wire::cursor& in, const worker_limits& limits) {
    auto type_offset = in.stream_offset();
    FERRY_GET(type, in.string(64));
    if (*type != "Error")
        throw failure(errc::bad_input,
                      fmt::format("structured error of type '{}' at offset {}; \"Error\" expected", *type, type_offset));
    daemon_error e;
    FERRY_GET(level, in.u64());
    FERRY_GET(name, in.string(limits.max_error_msg));
    FERRY_GET(message, read_text(in, limits.max_error_msg));
    e.message = std::move(*message);
    FERRY_GET(position, read_no_position(in));
    auto count_offset = in.stream_offset();
    FERRY_GET(count, in.u64());
    if (*count > limits.max_traces)
        throw failure(errc::too_large, fmt::format("{} error traces at offset {} exceed the limit of {}", *count,
                                                   count_offset, limits.max_traces));
    for (std::uint64_t i = 0; i < *count; ++i) {
        FERRY_GET(trace_position, read_no_position(in));
        FERRY_GET(hint, read_text(in, limits.max_error_msg));
        e.traces.push_back(std::move(*hint));
    }
    return e;
}

// The older error frame: message + status. Nix < 26 (daemon.cc:120); Guix always
// (nix-daemon.cc:226-227, status for client minor >= 8). Guix's stopWork writes the
// status only when it is non-zero; its errors default to status 1 and its own
// client reads the word whenever the stream has not ended (store.scm
// process-stderr), so ferry reads it too.
std::optional<daemon_error> read_message_and_status(wire::cursor& in, const worker_limits& limits) {
    daemon_error e;
    FERRY_GET(message, read_text(in, limits.max_error_msg));
    FERRY_GET(status, in.u64());
    e.message = std::move(*message);
    e.status = *status;
    return e;
}

// ValidPathInfo without its path, Nix 2.8 (path-info.cc:27-44: base16 hash;
// ultimate, sigs and ca for minor >= 16) or Guix (nix-daemon.cc:724-728).
std::optional<path_info> read_info(wire::cursor& in, bool with_trust_fields, const worker_limits& limits) {
    path_info info;
    FERRY_GET(deriver, read_text(in, limits.max_path_length));
    FERRY_GET(hash, read_text(in, limits.max_sig_length));
    FERRY_GET(refs, in.strings(limits.max_references, limits.max_path_length));
    FERRY_GET(registration_time, in.u64());
    FERRY_GET(nar_size, in.u64());
    info.deriver = std::move(*deriver);
    info.nar_hash = std::move(*hash);
    info.references = std::move(*refs);
    info.registration_time = *registration_time;
    info.nar_size = *nar_size;
    if (with_trust_fields) {
        FERRY_GET(ultimate, read_bool(in, "ultimate"));
        FERRY_GET(sigs, in.strings(limits.max_sigs, limits.max_sig_length));
        FERRY_GET(ca, read_text(in, limits.max_sig_length));
        info.ultimate = *ultimate;
        info.sigs = std::move(*sigs);
        info.ca = std::move(*ca);
    }
    return info;
}

}  // namespace

std::string_view to_string(dialect d) { return d == dialect::nix ? "Nix" : "Guix"; }

dialect dialect_of(std::uint64_t version) {
    if (major_of(version) != 0x100)
        throw failure(errc::unsupported,
                      fmt::format("the daemon speaks worker protocol 0x{:x}; major 0x100 expected", version));
    if (version >= guix_oldest && version <= guix_newest) return dialect::guix;
    if (version >= nix_oldest && version <= nix_newest) return dialect::nix;
    throw failure(errc::unsupported,
                  fmt::format("the daemon speaks worker protocol 0x{:x}, which is too old: ferry needs Nix's "
                              "0x{:x}-0x{:x} (Nix 2.3 and later) or Guix's 0x{:x} and later",
                              version, nix_oldest, nix_newest, guix_oldest));
}

std::uint64_t client_version_for(dialect d) { return d == dialect::nix ? nix_client_version : guix_client_version; }

// ---- requests ----------------------------------------------------------------

std::uint64_t worker_client::effective_version() const {
    if (!server_version_ || !dialect_) throw std::logic_error("worker_client: the server's hello is not decoded yet");
    return std::min(*server_version_, client_version_for(*dialect_));
}

bool worker_client::nix_at_least(std::uint64_t minor) const {
    return dialect_ == dialect::nix && minor_of(effective_version()) >= minor;
}

std::string worker_client::hello() {
    if (hello_sent_) throw std::logic_error("worker_client: hello() sent twice");
    hello_sent_ = true;
    pending_.push_back({pending_op::kind::handshake, {}, stage::hello});
    std::string out;
    wire::append_u64(out, client_magic);
    return out;
}

std::string worker_client::finish_handshake() {
    if (!dialect_ || handshake_finished_ || pending_.empty() || pending_.front().at != stage::wait_finish)
        throw std::logic_error("worker_client: finish_handshake() belongs right after the server's hello");
    handshake_finished_ = true;
    // Nix sends its version string when both sides are at minor >= 33
    // (daemon.cc:1018-1019 on the client's version, remote-store.cc:224-227 on the
    // daemon's). Guix never does: its 0x163/0x164 are not Nix's minor 99/100.
    pending_.front().at = nix_at_least(33) ? stage::daemon_version : stage::stream;
    std::string out;
    wire::append_u64(out, client_version_for(*dialect_));
    wire::append_u64(out, 0);  // CPU affinity: none (minor >= 14)
    wire::append_u64(out, 0);  // reserveSpace: no (minor >= 11); ferry's connections are short
    return out;
}

std::string worker_client::start(pending_op::kind what, op code, std::string_view path) {
    if (!handshake_finished_) throw std::logic_error("worker_client: requests need finish_handshake() first");
    pending_.push_back({what, std::string(path), stage::stream});
    std::string out;
    wire::append_u64(out, static_cast<std::uint64_t>(code));
    wire::append_string(out, path);
    return out;
}

std::string worker_client::export_path(std::string_view path, bool sign) {
    auto out = start(pending_op::kind::export_path, op::export_path, path);
    // Guix signs the export when this is 1 (nix-daemon.cc:459); Nix 2.8 reads and
    // ignores it (daemon.cc:498) and never signs exports.
    wire::append_u64(out, sign ? 1 : 0);
    return out;
}

std::string worker_client::query_path_info(std::string_view path) {
    return start(pending_op::kind::query_path_info, op::query_path_info, path);
}

std::string worker_client::add_temp_root(std::string_view path) {
    return start(pending_op::kind::add_temp_root, op::add_temp_root, path);
}

// ---- replies -----------------------------------------------------------------

std::string worker_client::awaited() const {
    if (pending_.empty()) return "nothing";
    const auto& p = pending_.front();
    switch (p.what) {
    case pending_op::kind::handshake: return "the handshake";
    case pending_op::kind::export_path: return "ExportPath of " + p.path;
    case pending_op::kind::query_path_info: return "QueryPathInfo of " + p.path;
    case pending_op::kind::add_temp_root: return "AddTempRoot of " + p.path;
    }
    return "a reply";
}

worker_client::result worker_client::finish(message msg, std::size_t consumed, bool op_over) {
    if (op_over) pending_.pop_front();
    offset_ += consumed;
    return {std::move(msg), consumed};
}

worker_client::result worker_client::decode(std::string_view bytes) {
    if (pending_.empty()) {
        if (bytes.empty()) return {};
        throw failure(errc::bad_input, fmt::format("daemon worker protocol: {} byte(s) at offset {} answer no request",
                                                   bytes.size(), offset_));
    }
    try {
        return decode_front(bytes);
    } catch (const failure& e) {
        // Named here, not per call: decode runs once per export piece.
        auto protocol = dialect_ ? fmt::format("{} daemon worker protocol", to_string(*dialect_))
                                 : std::string("daemon worker protocol");
        throw failure(e.code(), fmt::format("{}, {}: {}", protocol, awaited(), e.what()));
    }
}

worker_client::result worker_client::decode_front(std::string_view bytes) {
    auto& front = pending_.front();
    wire::cursor in(bytes, offset_);
    switch (front.at) {
    case stage::hello: {
        auto magic = in.u64();
        if (!magic) return {};
        if (*magic != server_magic)
            throw failure(errc::bad_input, fmt::format("expected the daemon's magic 0x{:x}, got 0x{:x} ('{}')",
                                                       server_magic, *magic, shown(bytes)));
        auto version = in.u64();
        if (!version) return {};
        dialect_ = dialect_of(*version);
        server_version_ = *version;
        front.at = stage::wait_finish;
        return finish(server_hello{*version, *dialect_}, in.consumed(), false);
    }
    case stage::wait_finish:
        if (bytes.empty()) return {};
        throw failure(errc::bad_input, fmt::format("{} byte(s) at offset {} before the client sent its version",
                                                   bytes.size(), offset_));
    case stage::daemon_version: {
        auto text = read_text(in, limits_.max_version_string);
        if (!text) return {};
        front.at = stage::stream;
        return finish(daemon_version{std::move(*text)}, in.consumed(), false);
    }
    case stage::stream: break;
    }

    auto code_offset = in.stream_offset();
    auto code = in.u64();
    if (!code) return {};
    switch (*code) {
    case stderr_code::next: {
        auto text = read_text(in, limits_.max_log_line);
        if (!text) return {};
        return finish(log_line{std::move(*text)}, in.consumed(), false);
    }
    case stderr_code::write: {
        // Only ExportPath has a sink; Nix's client fails the same way ("no sink",
        // remote-store.cc:1130).
        if (front.what != pending_op::kind::export_path)
            throw failure(errc::bad_input, fmt::format("STDERR_WRITE at offset {}: this operation has no data "
                                                       "stream", code_offset));
        auto bytes_view = in.string(limits_.max_data_chunk);
        if (!bytes_view) return {};
        return finish(data_chunk{*bytes_view}, in.consumed(), false);
    }
    case stderr_code::read: {
        auto length = in.u64();
        if (!length) return {};
        throw failure(errc::unsupported, fmt::format("the daemon asked for {} byte(s) of input (STDERR_READ at "
                                                     "offset {}); ferry sends none for this operation",
                                                     *length, code_offset));
    }
    case stderr_code::error: {
        auto e = nix_at_least(26) ? read_nix_structured_error(in, limits_) : read_message_and_status(in, limits_);
        if (!e) return {};
        // Guix has no "valid" flag: QueryPathInfo of an invalid path fails with
        // "path `P' is not valid" (local-store.cc:616). Nix's client turns the same
        // message into "invalid path" for old daemons (remote-store.cc:449).
        if (front.what == pending_op::kind::query_path_info && dialect_ == dialect::guix &&
            e->message == fmt::format("path `{}' is not valid", front.path))
            return finish(path_info_reply{}, in.consumed(), true);
        return finish(std::move(*e), in.consumed(), true);
    }
    case stderr_code::start_activity:
    case stderr_code::stop_activity:
    case stderr_code::result: {
        // Nix sends activities to clients at minor >= 20 (daemon.cc:128-152); no Guix daemon does.
        if (!nix_at_least(20)) break;
        auto a = read_activity(in, *code, limits_);
        if (!a) return {};
        return finish(std::move(*a), in.consumed(), false);
    }
    case stderr_code::last: {
        auto reply = read_after_last(in);
        if (!reply) return {};
        return finish(std::move(*reply), in.consumed(), true);
    }
    }
    if (code_name(*code) != "unknown")
        throw failure(errc::bad_input, fmt::format("stderr message {} (0x{:x}) at offset {} is not part of protocol "
                                                   "0x{:x} of this dialect", code_name(*code), *code, code_offset,
                                                   effective_version()));
    throw failure(errc::bad_input,
                  fmt::format("unknown stderr message code 0x{:x} at offset {}", *code, code_offset));
}

std::optional<worker_client::message> worker_client::read_after_last(wire::cursor& in) {
    const auto& front = pending_.front();
    switch (front.what) {
    case pending_op::kind::handshake: return done{};
    case pending_op::kind::export_path:
    case pending_op::kind::add_temp_root: {
        auto one = read_one(in, awaited());
        if (!one) return std::nullopt;
        return *one;
    }
    case pending_op::kind::query_path_info: {
        // Nix >= 17 says whether the path is valid first (daemon.cc:807-814).
        if (nix_at_least(17)) {
            auto valid = read_bool(in, "the \"valid\" flag");
            if (!valid) return std::nullopt;
            if (!*valid) return path_info_reply{};
        }
        auto info = read_info(in, nix_at_least(16), limits_);
        if (!info) return std::nullopt;
        return path_info_reply{std::move(*info)};
    }
    }
    return std::nullopt;
}

}  // namespace ferry::protocol::worker
