#include "ferry/protocol/guix_hook.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::protocol {
namespace {

// [[:graph:]] in the C locale: printable ASCII without space.
bool graph(char c) { return c > ' ' && c < 0x7f; }
bool system_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; }

// A line shown in an error: bounded and with control bytes made visible.
std::string shown(std::string_view text) {
    constexpr std::size_t max = 100;
    std::string out;
    for (char c : text.substr(0, max)) {
        if (graph(c) || c == ' ')
            out.push_back(c);
        else
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    }
    if (text.size() > max) out += "...";
    return out;
}

[[noreturn]] void bad_line(std::uint64_t line_number, std::string_view expected, std::string_view line) {
    throw failure(errc::bad_input,
                  fmt::format("guix build hook, line {}: expected {}, got '{}'", line_number, expected, shown(line)));
}

std::vector<std::string> split(std::string_view text, char separator) {
    std::vector<std::string> items;
    std::size_t i = 0;
    while (i <= text.size()) {
        auto end = text.find(separator, i);
        if (end == std::string_view::npos) end = text.size();
        if (end > i) items.emplace_back(text.substr(i, end - i));
        i = end + 1;
    }
    return items;
}

std::vector<std::string> parse_paths(std::string_view line, std::uint64_t line_number, std::string_view what,
                                     const guix_hook_limits& limits) {
    std::vector<std::string> paths;
    std::size_t i = 0;
    while (i < line.size()) {
        if (line[i] == ' ') {
            ++i;
            continue;
        }
        auto end = line.find(' ', i);
        if (end == std::string_view::npos) end = line.size();
        auto path = line.substr(i, end - i);
        if (path.front() != '/')
            bad_line(line_number, fmt::format("{}: absolute store paths separated by spaces", what), path);
        if (path.size() > limits.max_path_length)
            throw failure(errc::too_large, fmt::format("guix build hook, line {}: a path of {} bytes exceeds the "
                                                       "limit of {}", line_number, path.size(), limits.max_path_length));
        for (char c : path)
            if (!graph(c)) bad_line(line_number, fmt::format("{}: printable store paths", what), path);
        if (paths.size() >= limits.max_paths)
            throw failure(errc::too_large, fmt::format("guix build hook, line {}: more than {} paths", line_number,
                                                       limits.max_paths));
        paths.emplace_back(path);
        i = end;
    }
    return paths;
}

std::optional<std::uint64_t> to_unsigned(std::string_view text) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return n;
}

}  // namespace

guix_hook_args parse_guix_hook_args(std::span<const std::string_view> operands) {
    if (operands.size() != 4)
        throw failure(errc::bad_input,
                      fmt::format("guix offload: expected 4 operands (SYSTEM MAX-SILENT-TIME PRINT-BUILD-TRACE "
                                  "BUILD-TIMEOUT), got {}", operands.size()));
    auto number = [&](std::size_t i, std::string_view name) {
        auto n = to_unsigned(operands[i]);
        if (!n)
            throw failure(errc::bad_input, fmt::format("guix offload: {} (operand {}): expected an unsigned integer, "
                                                       "got '{}'", name, i + 1, shown(operands[i])));
        return *n;
    };
    guix_hook_args args;
    args.system = std::string(operands[0]);
    if (args.system.empty() || !std::all_of(args.system.begin(), args.system.end(), system_char))
        throw failure(errc::bad_input, fmt::format("guix offload: SYSTEM (operand 1): expected [a-z0-9_-]+, got '{}'",
                                                   shown(operands[0])));
    args.max_silent_time = number(1, "MAX-SILENT-TIME");
    auto trace = operands[2];
    if (trace == "1" || trace == "true")
        args.print_build_trace = true;
    else if (trace == "0" || trace == "false")
        args.print_build_trace = false;
    else
        throw failure(errc::bad_input, fmt::format("guix offload: PRINT-BUILD-TRACE (operand 3): expected 1, 0, true "
                                                   "or false, got '{}'", shown(trace)));
    args.build_timeout = number(3, "BUILD-TIMEOUT");
    return args;
}

guix_build_request parse_guix_request_line(std::string_view line, std::uint64_t n) {
    constexpr std::string_view form = "'<0|1> <system> <drv-path> <features>'";
    guix_build_request request;
    if (line.size() < 2 || (line[0] != '0' && line[0] != '1') || line[1] != ' ')
        bad_line(n, fmt::format("{} starting with '0 ' or '1 '", form), line);
    request.am_willing = line[0] == '1';
    auto rest = line.substr(2);

    auto system_end = rest.find(' ');
    auto system = rest.substr(0, system_end);
    if (system_end == std::string_view::npos || system.empty() ||
        !std::all_of(system.begin(), system.end(), system_char))
        bad_line(n, fmt::format("{} with a system of [a-z0-9_-]+ then a space", form), line);
    request.system = std::string(system);
    rest = rest.substr(system_end + 1);

    auto drv_end = rest.find(' ');
    auto drv = rest.substr(0, drv_end);
    if (drv_end == std::string_view::npos || drv.size() < 6 || drv.front() != '/' || !drv.ends_with(".drv") ||
        !std::all_of(drv.begin(), drv.end(), graph))
        bad_line(n, fmt::format("{} with an absolute .drv path then a space", form), line);
    request.drv_path = std::string(drv);
    rest = rest.substr(drv_end + 1);

    if (!std::all_of(rest.begin(), rest.end(), graph))
        bad_line(n, fmt::format("{} ending in comma-separated features (no spaces)", form), line);
    request.features = split(rest, ',');
    return request;
}

guix_hook_decoder::result guix_hook_decoder::decode_request(std::string_view bytes, bool at_eof) {
    auto newline = bytes.find('\n');
    if (newline == std::string_view::npos) {
        if (bytes.size() > limits_.max_line)
            throw failure(errc::too_large, fmt::format("guix build hook, line {}: longer than {} bytes", line_ + 1,
                                                       limits_.max_line));
        if (!at_eof) return {};
        if (bytes.empty()) {
            state_ = state::done;
            return {guix_hook_end{}, 0};
        }
        newline = bytes.size();  // a last line without '\n'
    }
    auto consumed = std::min(newline + 1, bytes.size());
    auto request = parse_guix_request_line(bytes.substr(0, newline), line_ + 1);
    if (request.features.size() > limits_.max_features)
        throw failure(errc::too_large, fmt::format("guix build hook, line {}: more than {} features", line_ + 1,
                                                   limits_.max_features));
    ++line_;
    state_ = state::awaiting_reply;
    return {std::move(request), consumed};
}

guix_hook_decoder::result guix_hook_decoder::decode_paths(std::string_view bytes, bool at_eof) {
    auto first = bytes.find('\n');
    auto second = first == std::string_view::npos ? first : bytes.find('\n', first + 1);
    auto partial = first == std::string_view::npos ? bytes : bytes.substr(first + 1);
    if (second == std::string_view::npos) {
        if (partial.size() > limits_.max_line)
            throw failure(errc::too_large, fmt::format("guix build hook, line {}: longer than {} bytes",
                                                       line_ + (first == std::string_view::npos ? 1 : 2),
                                                       limits_.max_line));
        if (!at_eof) return {};
        if (first == std::string_view::npos)
            throw failure(errc::truncated, fmt::format("guix build hook, line {}: input ended before the inputs and "
                                                       "outputs lines that follow '# accept'", line_ + 1));
        second = bytes.size();  // the outputs line without '\n'
    }
    guix_accepted_paths paths;
    paths.inputs = parse_paths(bytes.substr(0, first), line_ + 1, "inputs line", limits_);
    paths.outputs = parse_paths(bytes.substr(first + 1, second - first - 1), line_ + 2, "outputs line", limits_);
    line_ += 2;
    state_ = state::done;
    return {std::move(paths), std::min(second + 1, bytes.size())};
}

guix_hook_decoder::result guix_hook_decoder::decode(std::string_view bytes) {
    switch (state_) {
    case state::requests: return decode_request(bytes, false);
    case state::accepted_paths: return decode_paths(bytes, false);
    case state::awaiting_reply: return {};
    case state::done:
        if (bytes.empty()) return {};
        throw failure(errc::bad_input, fmt::format("guix build hook, line {}: unexpected input after the outputs line",
                                                   line_ + 1));
    }
    return {};
}

guix_hook_decoder::result guix_hook_decoder::decode_eof(std::string_view bytes) {
    switch (state_) {
    case state::requests: return decode_request(bytes, true);
    case state::accepted_paths: return decode_paths(bytes, true);
    case state::awaiting_reply: return {};
    case state::done:
        if (!bytes.empty()) return decode(bytes);
        return {guix_hook_end{}, 0};
    }
    return {};
}

void guix_hook_decoder::reply(hook_reply r) {
    if (state_ != state::awaiting_reply) return;
    state_ = r == hook_reply::accept ? state::accepted_paths : state::requests;
}

std::string encode_guix_reply(hook_reply r) {
    if (r == hook_reply::decline_permanently)
        throw failure(errc::unsupported, "guix build hook: the Guix daemon has no 'decline-permanently' reply");
    return fmt::format("# {}\n", reply_word(r));
}

std::string guix_build_remote_trace(std::string_view drv_path, std::string_view machine) {
    return fmt::format("@ build-remote {} {}\n", drv_path, machine);
}

}  // namespace ferry::protocol
