#include "ferry/protocol/nix_hook.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include <fmt/core.h>

#include "ferry/protocol/detail/decode_step.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace ferry::protocol {

// ---- settings ----------------------------------------------------------------

void nix_settings::set(std::string name, std::string value) { values_[std::move(name)] = std::move(value); }

std::optional<std::string_view> nix_settings::get(std::string_view name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return std::string_view(it->second);
}

std::uint64_t nix_settings::unsigned_setting(std::string_view name, std::uint64_t fallback) const {
    auto value = get(name);
    if (!value) return fallback;
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
    if (value->empty() || ec != std::errc() || end != value->data() + value->size())
        throw failure(errc::bad_input, fmt::format("build-hook setting '{}': expected an unsigned integer, got '{}'",
                                                   name, *value));
    return n;
}

bool nix_settings::bool_setting(std::string_view name, bool fallback) const {
    auto value = get(name);
    if (!value) return fallback;
    // The spellings Nix's own Setting<bool> accepts.
    if (*value == "true" || *value == "yes" || *value == "1") return true;
    if (*value == "false" || *value == "no" || *value == "0") return false;
    throw failure(errc::bad_input,
                  fmt::format("build-hook setting '{}': expected true or false, got '{}'", name, *value));
}

std::vector<std::string> nix_settings::words_setting(std::string_view name) const {
    std::vector<std::string> words;
    auto value = get(name).value_or("");
    constexpr std::string_view blanks = " \t\n\r";
    std::size_t i = 0;
    while ((i = value.find_first_not_of(blanks, i)) != std::string_view::npos) {
        auto end = std::min(value.find_first_of(blanks, i), value.size());
        words.emplace_back(value.substr(i, end - i));
        i = end;
    }
    return words;
}

std::string nix_settings::builders() const { return std::string(get("builders").value_or("")); }
std::string nix_settings::system() const { return std::string(get("system").value_or("")); }
std::vector<std::string> nix_settings::extra_platforms() const { return words_setting("extra-platforms"); }
std::vector<std::string> nix_settings::system_features() const { return words_setting("system-features"); }
std::uint64_t nix_settings::max_silent_time() const { return unsigned_setting("max-silent-time", 0); }
std::uint64_t nix_settings::build_timeout() const { return unsigned_setting("timeout", 0); }
std::uint64_t nix_settings::max_log_size() const { return unsigned_setting("max-build-log-size", 0); }
std::uint64_t nix_settings::build_repeat() const { return unsigned_setting("repeat", 0); }
std::uint64_t nix_settings::connect_timeout() const { return unsigned_setting("connect-timeout", 0); }
bool nix_settings::enforce_determinism() const { return bool_setting("enforce-determinism", true); }
bool nix_settings::keep_failed() const { return bool_setting("keep-failed", false); }
bool nix_settings::builders_use_substitutes() const { return bool_setting("builders-use-substitutes", false); }
std::string nix_settings::store() const { return std::string(get("store").value_or("auto")); }

bool nix_settings::can_build_locally(const nix_build_request& request) const {
    if (!request.am_willing) return false;
    auto platforms = extra_platforms();
    bool platform_ok = request.platform == system() || request.platform == "builtin" ||
                       std::find(platforms.begin(), platforms.end(), request.platform) != platforms.end();
    if (!platform_ok) return false;
    auto features = system_features();
    return std::all_of(request.required_features.begin(), request.required_features.end(), [&](const auto& f) {
        return std::find(features.begin(), features.end(), f) != features.end();
    });
}

// ---- decoder -----------------------------------------------------------------

namespace {

// Inside a parse function: return "need more" from it when a getter does.
template <class F>
auto with_step(std::string_view step, F&& f) -> decltype(f()) {
    return detail::with_step("nix build hook", step, std::forward<F>(f));
}

std::optional<nix_settings> read_settings(wire::cursor& in, const nix_hook_limits& limits) {
    nix_settings settings;
    for (std::uint64_t n = 0;; ++n) {
        auto start = in.stream_offset();
        FERRY_GET(tag, in.u64());
        if (*tag == 0) return settings;
        if (*tag != 1)
            throw failure(errc::bad_input, fmt::format("expected 1 (another setting) or 0 (end) at offset {}, got {}",
                                                       start, *tag));
        if (n >= limits.max_settings)
            throw failure(errc::too_large, fmt::format("more than {} settings (offset {})", limits.max_settings, start));
        FERRY_GET(name, in.string(limits.max_setting_name));
        FERRY_GET(value, in.string(limits.max_setting_value));
        settings.set(std::string(*name), std::string(*value));
    }
}

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

}  // namespace

nix_hook_decoder::result nix_hook_decoder::finish(message msg, std::size_t consumed) {
    offset_ += consumed;
    return {std::move(msg), consumed};
}

nix_hook_decoder::result nix_hook_decoder::decode_settings(std::string_view bytes) {
    return with_step("reading the settings preamble", [&]() -> result {
        wire::cursor in(bytes, offset_);
        auto settings = read_settings(in, limits_);
        if (!settings) return {};
        state_ = state::requests;
        return finish(std::move(*settings), in.consumed());
    });
}

nix_hook_decoder::result nix_hook_decoder::decode_request(std::string_view bytes) {
    return with_step("reading a build request", [&]() -> result {
        wire::cursor in(bytes, offset_);
        auto word = in.string(limits_.max_word);
        if (!word) return {};
        if (*word != "try") {
            state_ = state::done;
            return finish(nix_hook_end{fmt::format("the daemon sent '{}' instead of 'try'", *word)}, in.consumed());
        }
        auto parse = [&]() -> std::optional<nix_build_request> {
            FERRY_GET(willing, in.u64());
            FERRY_GET(platform, in.string(limits_.max_word));
            FERRY_GET(drv, in.string(limits_.max_path_length));
            FERRY_GET(features, in.strings(limits_.max_features, limits_.max_word));
            return nix_build_request{*willing != 0, std::string(*platform), std::string(*drv), sorted(*features)};
        };
        auto request = parse();
        if (!request) return {};
        state_ = state::awaiting_reply;
        return finish(std::move(*request), in.consumed());
    });
}

nix_hook_decoder::result nix_hook_decoder::decode_paths(std::string_view bytes) {
    return with_step("reading the paths after accept", [&]() -> result {
        wire::cursor in(bytes, offset_);
        auto inputs = in.strings(limits_.max_paths, limits_.max_path_length);
        if (!inputs) return {};
        auto outputs = in.strings(limits_.max_features, limits_.max_word);
        if (!outputs) return {};
        state_ = state::done;
        return finish(nix_accepted_paths{std::move(*inputs), std::move(*outputs)}, in.consumed());
    });
}

nix_hook_decoder::result nix_hook_decoder::decode(std::string_view bytes) {
    switch (state_) {
    case state::settings: return decode_settings(bytes);
    case state::requests: return decode_request(bytes);
    case state::accepted_paths: return decode_paths(bytes);
    case state::awaiting_reply: return {};  // the daemon says nothing before our reply
    case state::done:
        if (bytes.empty()) return {};
        throw failure(errc::bad_input,
                      fmt::format("nix build hook: {} unexpected bytes at offset {} after the last message",
                                  bytes.size(), offset_));
    }
    return {};
}

nix_hook_decoder::result nix_hook_decoder::decode_eof(std::string_view bytes) {
    auto r = decode(bytes);
    if (!r.need_more()) return r;
    auto cut = [&](std::string_view what) {
        return failure(errc::truncated, fmt::format("nix build hook: input ended at offset {} in {}",
                                                    offset_ + bytes.size(), what));
    };
    switch (state_) {
    case state::settings: throw cut("the settings preamble");
    case state::requests:
        if (!bytes.empty()) throw cut("a build request");
        state_ = state::done;
        return {nix_hook_end{"end of input"}, 0};
    case state::accepted_paths: throw cut("the input paths / wanted outputs after accept");
    case state::awaiting_reply: return {};
    case state::done: return {nix_hook_end{"end of input"}, 0};
    }
    return {};
}

void nix_hook_decoder::reply(hook_reply r) {
    if (state_ != state::awaiting_reply) return;
    switch (r) {
    case hook_reply::accept: state_ = state::accepted_paths; break;
    case hook_reply::decline:
    case hook_reply::postpone: state_ = state::requests; break;
    case hook_reply::decline_permanently: state_ = state::done; break;
    }
}

// ---- replies -----------------------------------------------------------------

std::string encode_nix_accept(std::string_view machine) {
    if (machine.find_first_of("\r\n") != std::string_view::npos)
        throw failure(errc::bad_input, "nix build hook: the machine name for '# accept' contains a line break");
    return fmt::format("# accept\n{}\n", machine);
}

std::string encode_nix_reply(hook_reply r) {
    if (r == hook_reply::accept) throw std::invalid_argument("encode_nix_reply: accept needs encode_nix_accept");
    return fmt::format("# {}\n", reply_word(r));
}

}  // namespace ferry::protocol
