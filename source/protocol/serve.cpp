#include "ferry/protocol/serve.hpp"

#include <stdexcept>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "ferry/protocol/detail/decode_step.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace ferry::protocol::serve {
namespace {

template <class F>
auto with_step(std::string_view step, F&& f) -> decltype(f()) {
    return detail::with_step("nix-store --serve", step, std::forward<F>(f));
}

void append_set(std::string& out, const std::set<std::string>& values) {
    wire::append_u64(out, values.size());
    for (const auto& v : values) wire::append_string(out, v);
}

// What arrived instead of the server's magic, shown as text: usually a shell's
// "command not found" or a login banner.
std::string shown(std::string_view bytes) {
    std::string out;
    for (char c : bytes.substr(0, 64))
        out += (c >= ' ' && c < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    return out;
}

}  // namespace

void append_basic_derivation(std::string& out, const basic_derivation& drv) {
    wire::append_u64(out, drv.outputs.size());
    for (const auto& [name, output] : drv.outputs) {
        wire::append_string(out, name);
        wire::append_string(out, output.path);
        wire::append_string(out, output.hash_algo);
        wire::append_string(out, output.hash);
    }
    append_set(out, drv.input_srcs);
    wire::append_string(out, drv.platform);
    wire::append_string(out, drv.builder);
    wire::append_strings(out, drv.args);
    wire::append_u64(out, drv.env.size());
    for (const auto& [key, value] : drv.env) {
        wire::append_string(out, key);
        wire::append_string(out, value);
    }
}

std::string_view to_string(build_status s) {
    switch (s) {
    case build_status::built: return "Built";
    case build_status::substituted: return "Substituted";
    case build_status::already_valid: return "AlreadyValid";
    case build_status::permanent_failure: return "PermanentFailure";
    case build_status::input_rejected: return "InputRejected";
    case build_status::output_rejected: return "OutputRejected";
    case build_status::transient_failure: return "TransientFailure";
    case build_status::cached_failure: return "CachedFailure";
    case build_status::timed_out: return "TimedOut";
    case build_status::misc_failure: return "MiscFailure";
    case build_status::dependency_failed: return "DependencyFailed";
    case build_status::log_limit_exceeded: return "LogLimitExceeded";
    case build_status::not_deterministic: return "NotDeterministic";
    case build_status::resolves_to_already_valid: return "ResolvesToAlreadyValid";
    case build_status::no_substituters: return "NoSubstituters";
    }
    return "Unknown";
}

bool succeeded(build_status s) {
    return s == build_status::built || s == build_status::substituted || s == build_status::already_valid ||
           s == build_status::resolves_to_already_valid;
}

int hook_exit_code(build_status s) {
    switch (s) {
    case build_status::built:
    case build_status::substituted:
    case build_status::already_valid:
    case build_status::resolves_to_already_valid: return 0;
    case build_status::permanent_failure:
    case build_status::output_rejected:
    case build_status::cached_failure:
    case build_status::log_limit_exceeded:
    case build_status::not_deterministic: return 100;
    case build_status::timed_out: return 101;
    case build_status::input_rejected:
    case build_status::transient_failure:
    case build_status::misc_failure:
    case build_status::dependency_failed:
    case build_status::no_substituters: return 1;
    }
    return 1;
}

// ---- requests ----------------------------------------------------------------

std::uint64_t serve_client::minor() const {
    if (!server_version_) throw std::logic_error("serve_client: this request needs the server's version (hello)");
    return minor_of(*server_version_);
}

std::string serve_client::start(command c, expect e) {
    if (!hello_sent_) throw std::logic_error("serve_client: hello() must be the first request");
    std::string out;
    wire::append_u64(out, static_cast<std::uint64_t>(c));
    pending_.push_back(e);
    return out;
}

std::string serve_client::hello() {
    if (hello_sent_) throw std::logic_error("serve_client: hello() sent twice");
    hello_sent_ = true;
    std::string out;
    wire::append_u64(out, client_magic);
    wire::append_u64(out, client_version);
    pending_.push_back(expect::hello);
    return out;
}

std::string serve_client::query_valid_paths(const std::vector<std::string>& paths, bool lock, bool substitute) {
    auto out = start(command::query_valid_paths, expect::valid_paths);
    wire::append_u64(out, lock ? 1 : 0);
    wire::append_u64(out, substitute ? 1 : 0);
    wire::append_strings(out, paths);
    return out;
}

std::string serve_client::query_path_infos(const std::vector<std::string>& paths) {
    auto out = start(command::query_path_infos, expect::path_infos);
    wire::append_strings(out, paths);
    return out;
}

std::string serve_client::dump_store_path(std::string_view path) {
    auto out = start(command::dump_store_path, expect::nar);
    wire::append_string(out, path);
    return out;
}

std::string serve_client::import_paths() { return start(command::import_paths, expect::import_done); }

std::string serve_client::export_paths(const std::vector<std::string>& paths) {
    auto out = start(command::export_paths, expect::bundle);
    wire::append_u64(out, 0);  // obsolete "sign" flag, ignored by the server
    wire::append_strings(out, paths);
    return out;
}

std::string serve_client::query_closure(const std::vector<std::string>& paths, bool include_outputs) {
    auto out = start(command::query_closure, expect::valid_paths);
    wire::append_u64(out, include_outputs ? 1 : 0);
    wire::append_strings(out, paths);
    return out;
}

std::string serve_client::build_derivation(std::string_view drv_path, const basic_derivation& drv,
                                           const build_options& options) {
    auto m = minor();
    auto out = start(command::build_derivation, expect::build_result);
    wire::append_string(out, drv_path);
    append_basic_derivation(out, drv);
    wire::append_u64(out, options.max_silent_time);
    wire::append_u64(out, options.build_timeout);
    if (m >= 2) wire::append_u64(out, options.max_log_size);
    if (m >= 3) {
        wire::append_u64(out, options.nr_repeats);
        wire::append_u64(out, options.enforce_determinism ? 1 : 0);
    }
    if (m >= 7) wire::append_u64(out, options.keep_failed ? 1 : 0);
    return out;
}

std::string serve_client::add_to_store_nar(const add_to_store_nar_request& r) {
    if (minor() < 5)
        throw failure(errc::unsupported, fmt::format("nix-store --serve: the server's protocol 0x{:x} has no "
                                                     "AddToStoreNar (needs minor 5)", *server_version_));
    if (r.nar_size == 0)
        throw failure(errc::bad_input, fmt::format("nix-store --serve: AddToStoreNar of '{}' with a NAR size of 0",
                                                   r.path));
    auto out = start(command::add_to_store_nar, expect::import_done);
    wire::append_string(out, r.path);
    wire::append_string(out, r.deriver);
    wire::append_string(out, r.nar_hash);
    wire::append_strings(out, r.references);
    wire::append_u64(out, r.registration_time);
    wire::append_u64(out, r.nar_size);
    wire::append_u64(out, r.ultimate ? 1 : 0);
    wire::append_strings(out, r.sigs);
    wire::append_string(out, r.ca);
    return out;
}

// ---- replies -----------------------------------------------------------------

namespace {

std::optional<server_hello> read_hello(wire::cursor& in) {
    auto start = in.rest();
    FERRY_GET(magic, in.u64());
    if (*magic != server_magic)
        throw failure(errc::bad_input, fmt::format("expected the server magic 0x{:x}, got 0x{:x} ('{}')", server_magic,
                                                   *magic, shown(start)));
    FERRY_GET(version, in.u64());
    if (major_of(*version) != 0x200)
        throw failure(errc::unsupported,
                      fmt::format("the server speaks protocol version 0x{:x}; major 0x200 expected", *version));
    return server_hello{*version};
}

std::optional<path_infos> read_path_infos(wire::cursor& in, std::uint64_t minor, const serve_limits& limits) {
    path_infos infos;
    for (;;) {
        FERRY_GET(path, in.string(limits.max_path_length));
        if (path->empty()) return infos;
        if (infos.infos.size() >= limits.max_paths)
            throw failure(errc::too_large, fmt::format("more than {} path infos (offset {})", limits.max_paths,
                                                       in.stream_offset()));
        path_info info;
        info.path = std::string(*path);
        FERRY_GET(deriver, in.string(limits.max_path_length));
        info.deriver = std::string(*deriver);
        FERRY_GET(refs, in.strings(limits.max_paths, limits.max_path_length));
        info.references = std::move(*refs);
        FERRY_GET(download, in.u64());
        FERRY_GET(nar_size, in.u64());
        info.download_size = *download;
        info.nar_size = *nar_size;
        if (minor >= 4) {
            FERRY_GET(hash, in.string(limits.max_sig_length));
            FERRY_GET(ca, in.string(limits.max_sig_length));
            FERRY_GET(sigs, in.strings(limits.max_sigs, limits.max_sig_length));
            info.nar_hash = std::string(*hash);
            info.ca = std::string(*ca);
            info.sigs = std::move(*sigs);
        }
        infos.infos.push_back(std::move(info));
    }
}

built_output parse_realisation(std::string_view id, std::string_view json_text, std::uint64_t offset) {
    auto j = nlohmann::json::parse(json_text, nullptr, false);
    auto out_path = j.is_object() ? j.find("outPath") : j.end();
    if (j.is_discarded() || !j.is_object() || out_path == j.end() || !out_path->is_string())
        throw failure(errc::bad_input, fmt::format("built output '{}' at offset {}: expected a realisation JSON "
                                                   "object with a string \"outPath\"", id, offset));
    return {std::string(id), out_path->get<std::string>(), std::string(json_text)};
}

std::optional<build_result> read_build_result(wire::cursor& in, std::uint64_t minor, const serve_limits& limits) {
    build_result r;
    FERRY_GET(status, in.u64());
    r.status = static_cast<build_status>(*status);
    FERRY_GET(msg, in.string(limits.max_error_msg));
    r.error_msg = std::string(*msg);
    if (minor >= 3) {
        FERRY_GET(times, in.u64());
        FERRY_GET(non_det, in.u64());
        FERRY_GET(start, in.u64());
        FERRY_GET(stop, in.u64());
        r.times_built = *times;
        r.is_non_deterministic = *non_det != 0;
        r.start_time = *start;
        r.stop_time = *stop;
    }
    if (minor >= 6) {
        auto count_offset = in.stream_offset();
        FERRY_GET(count, in.u64());
        if (*count > limits.max_built_outputs)
            throw failure(errc::too_large, fmt::format("{} built outputs at offset {} exceed the limit of {}", *count,
                                                       count_offset, limits.max_built_outputs));
        for (std::uint64_t i = 0; i < *count; ++i) {
            FERRY_GET(id, in.string(limits.max_path_length));
            auto json_offset = in.stream_offset();
            FERRY_GET(json, in.string(limits.max_realisation_json));
            r.built_outputs.push_back(parse_realisation(*id, *json, json_offset));
        }
    }
    return r;
}

std::optional<std::uint64_t> read_one(wire::cursor& in) {
    auto offset = in.stream_offset();
    FERRY_GET(value, in.u64());
    if (*value != 1)
        throw failure(errc::remote_failed, fmt::format("expected 1 (success) at offset {}, got {}", offset, *value));
    return value;
}

}  // namespace

std::string_view serve_client::describe(expect e) {
    switch (e) {
    case expect::hello: return "the handshake";
    case expect::valid_paths: return "a path set (QueryValidPaths / QueryClosure)";
    case expect::path_infos: return "path infos (QueryPathInfos)";
    case expect::import_done: return "the import status (ImportPaths / AddToStoreNar)";
    case expect::nar: return "a NAR (DumpStorePath)";
    case expect::bundle: return "an export bundle (ExportPaths)";
    case expect::build_result: return "a BuildResult (BuildDerivation)";
    }
    return "a reply";
}

std::error_code serve_client::end_of_stream(std::string& message) const {
    if (pending_.empty()) {
        message.clear();
        return {};
    }
    message = fmt::format("nix-store --serve: the server's output ended at offset {} while waiting for {} "
                          "({} replies pending)", offset_, describe(pending_.front()), pending_.size());
    return errc::truncated;
}

serve_client::result serve_client::decode(std::string_view bytes) {
    if (pending_.empty()) {
        if (bytes.empty()) return {};
        throw failure(errc::bad_input, fmt::format("nix-store --serve: {} byte(s) at offset {} answer no request",
                                                   bytes.size(), offset_));
    }
    wire::cursor in(bytes, offset_);
    auto done = [&](reply msg) -> result {
        pending_.pop_front();
        offset_ += in.consumed();
        return {std::move(msg), in.consumed()};
    };
    switch (pending_.front()) {
    case expect::hello:
        return with_step("handshake", [&]() -> result {
            auto hello = read_hello(in);
            if (!hello) return {};
            server_version_ = hello->version;
            return done(*hello);
        });
    case expect::valid_paths:
        return with_step("reading a path set", [&]() -> result {
            auto paths = in.strings(limits_.max_paths, limits_.max_path_length);
            if (!paths) return {};
            return done(valid_paths{std::move(*paths)});
        });
    case expect::path_infos:
        return with_step("reading path infos", [&]() -> result {
            auto infos = read_path_infos(in, minor(), limits_);
            if (!infos) return {};
            return done(std::move(*infos));
        });
    case expect::import_done:
        return with_step("reading the import status", [&]() -> result {
            if (!read_one(in)) return {};
            return done(import_done{});
        });
    case expect::build_result:
        return with_step("reading a BuildResult", [&]() -> result {
            auto r = read_build_result(in, minor(), limits_);
            if (!r) return {};
            return done(std::move(*r));
        });
    case expect::nar: return done(nar_follows{});
    case expect::bundle: return done(bundle_follows{});
    }
    return {};
}

}  // namespace ferry::protocol::serve
