// The probe command and its parser: pure functions, no I/O.
#include <algorithm>
#include <charconv>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "ferry/schedule/probe.hpp"
#include "ferry/util/error.hpp"

namespace ferry::schedule {

namespace {

constexpr std::string_view header = "ferry-probe 1";

std::vector<std::string_view> split_words(std::string_view s) {
    std::vector<std::string_view> words;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
        std::size_t start = i;
        while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
        if (i > start) words.push_back(s.substr(start, i - start));
    }
    return words;
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

template <class T>
std::optional<T> to_number(std::string_view s) {
    T value{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return value;
}

[[noreturn]] void bad(std::size_t line, const std::string& what) {
    throw failure(errc::bad_input, fmt::format("probe output line {}: {}", line, what));
}

// "... load average: 0.52, 0.58, 0.59" (Linux, BSD) or "... load averages: 1.52 1.58 1.59"
// (macOS). LC_ALL=C is set by the script; a decimal comma ("0,52,") is still accepted.
void parse_uptime(std::string_view value, std::size_t line, probe_result& r) {
    auto at = value.find("load average");
    if (at == std::string_view::npos) bad(line, "expected 'load average' in the uptime output");
    auto colon = value.find(':', at);
    if (colon == std::string_view::npos) bad(line, "expected ':' after 'load average'");
    std::vector<double> loads;
    for (auto word : split_words(value.substr(colon + 1))) {
        if (!word.empty() && word.back() == ',') word.remove_suffix(1);
        std::string text(word);
        for (char& c : text)
            if (c == ',') c = '.';
        auto v = to_number<double>(text);
        if (!v || *v < 0) bad(line, fmt::format("expected a load average, got '{}'", word));
        loads.push_back(*v);
        if (loads.size() == 3) break;
    }
    if (loads.size() != 3) bad(line, "expected three load averages");
    r.load1 = loads[0];
    r.load5 = loads[1];
    r.load15 = loads[2];
}

// The last line of `df -Pk DIR`: "<fs> <1024-blocks> <used> <available> <capacity>% <mount>".
// The file system and mount point may contain spaces, so look for the
// "number number number N%" run rather than counting columns.
void parse_df(std::string_view value, std::size_t line, probe_result& r) {
    auto words = split_words(value);
    if (words.empty()) return;  // df failed for every directory: unknown
    for (std::size_t k = 3; k < words.size(); ++k) {
        auto cap = words[k];
        if (cap.size() < 2 || cap.back() != '%' || !all_digits(cap.substr(0, cap.size() - 1))) continue;
        if (!all_digits(words[k - 1]) || !all_digits(words[k - 2]) || !all_digits(words[k - 3])) continue;
        auto kib = to_number<std::uint64_t>(words[k - 1]);
        if (!kib || *kib > UINT64_MAX / 1024) bad(line, "free space out of range");
        r.free_bytes = *kib * 1024;
        return;
    }
    bad(line, fmt::format("expected 'df -Pk' columns (blocks used available N%), got '{}'", value));
}

}  // namespace

std::string probe_script(std::string_view store_dir) {
    // The store directory, then its ancestors: a machine without the store yet
    // still reports the space it would have.
    std::string dirs;
    std::string dir(store_dir);
    while (!dir.empty() && dir != "/") {
        dirs += shell_quote(dir) + ' ';
        auto slash = dir.find_last_of('/');
        if (slash == std::string::npos) break;
        dir.resize(slash);
    }
    dirs += "/";
    return fmt::format(
        "LC_ALL=C; export LC_ALL; "
        "printf '%s\\n' '{}'; "
        "printf 'os %s\\n' \"$(uname -s 2>/dev/null)\"; "
        "n=$(getconf _NPROCESSORS_ONLN 2>/dev/null) || n=; "
        "[ -n \"$n\" ] || n=$(sysctl -n hw.ncpu 2>/dev/null) || n=; "
        "[ -n \"$n\" ] || n=$(nproc 2>/dev/null) || n=; "
        "printf 'cores %s\\n' \"$n\"; "
        "printf 'uptime %s\\n' \"$(uptime 2>/dev/null)\"; "
        "for d in {}; do if o=$(df -Pk \"$d\" 2>/dev/null); then "
        "printf 'df %s\\n' \"$(printf '%s\\n' \"$o\" | tail -n 1)\"; break; fi; done; "
        "for t in nix-store zstd xz guix; do "
        "command -v \"$t\" >/dev/null 2>&1 && printf 'tool %s\\n' \"$t\"; done; "
        "printf 'end\\n'",
        header, dirs);
}

std::string probe_command(std::string_view store_dir) {
    return "sh -c " + shell_quote(probe_script(store_dir));
}

probe_result parse_probe_output(std::string_view output) {
    std::vector<std::string_view> lines;
    for (std::size_t pos = 0; pos < output.size();) {
        auto nl = output.find('\n', pos);
        auto line = output.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? output.size() : nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        lines.push_back(line);
    }
    // Login banners or shell noise may precede the header: skip them.
    auto first = std::find(lines.begin(), lines.end(), header);
    if (first == lines.end())
        throw failure(errc::bad_input, fmt::format("probe output: expected a line '{}', got {} lines without it",
                                                   header, lines.size()));
    // Decide truncation before looking at the lines, so a cut line is reported
    // as truncation rather than as a malformed value.
    auto last = std::find(first, lines.end(), std::string_view("end"));
    if (last == lines.end())
        throw failure(errc::truncated,
                      fmt::format("probe output truncated after line {}: expected 'end'", lines.size()));
    for (auto it = last + 1; it != lines.end(); ++it)
        if (!it->empty()) bad(static_cast<std::size_t>(it - lines.begin()) + 1, "unexpected text after 'end'");

    probe_result r;
    bool seen_cores = false, seen_uptime = false;
    for (auto it = first + 1; it != last; ++it) {
        const std::size_t line_no = static_cast<std::size_t>(it - lines.begin()) + 1;
        std::string_view line = *it;
        auto space = line.find(' ');
        std::string_view key = line.substr(0, space);
        std::string_view value = space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
        if (key == "os") {
            r.os = std::string(value);
        } else if (key == "cores") {
            auto n = to_number<unsigned>(value);
            if (!n || *n == 0) bad(line_no, fmt::format("expected a positive number of cores, got '{}'", value));
            r.cores = *n;
            seen_cores = true;
        } else if (key == "uptime") {
            parse_uptime(value, line_no, r);
            seen_uptime = true;
        } else if (key == "df") {
            parse_df(value, line_no, r);
        } else if (key == "tool") {
            if (value == "nix-store") r.has_nix_store = true;
            else if (value == "zstd") r.has_zstd = true;
            else if (value == "xz") r.has_xz = true;
            else if (value == "guix") r.has_guix = true;
        }
        // Unknown keys are ignored: a newer script may report more.
    }
    if (!seen_cores) throw failure(errc::bad_input, "probe output: no 'cores' line");
    if (!seen_uptime) throw failure(errc::bad_input, "probe output: no 'uptime' line");
    return r;
}

}  // namespace ferry::schedule
