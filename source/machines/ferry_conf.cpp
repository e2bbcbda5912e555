#include <ferry/machines/ferry_conf.hpp>

#include <ferry/util/error.hpp>

#include <array>
#include <charconv>
#include <cmath>
#include <functional>

namespace ferry::machines {
namespace {

constexpr std::array<key_info, 16> keys{{
    {"codec", "codec spec or auto", "auto", true, "transfer codec (see docs/codec.md); auto picks per link"},
    {"compression-threads", "count (0 = auto)", "0", true, "compressor threads per transfer"},
    {"memory-budget", "size", "128M", false, "bound on buffers held by one hook process"},
    {"probe-deadline", "duration", "5s", true, "time allowed for a machine probe (load, disk, link)"},
    {"probe-cache-seconds", "duration", "5", true, "how long a probe result is reused"},
    {"slot-wait", "duration", "2s", false,
     "with every slot taken, wait this long for one before postponing (0 = postpone at once)"},
    {"state-dir", "path", "/var/lib/ferry (guix offload: Guix's state dir)", false, "slot files and caches"},
    {"overload-threshold", "number 0-1 or off", "machine's own (0.8)", true,
     "skip a machine whose normalized load exceeds this"},
    {"min-free-space", "size", "100M", true, "skip a machine with less free store space"},
    {"connect-timeout", "duration", "10s", true, "SSH connect + handshake timeout"},
    {"keepalive-interval", "duration", "30s", true, "SSH keepalive interval"},
    {"log-level", "error|warn|info|debug|trace", "info", false, "hook log verbosity"},
    {"parallel-import-streams", "count or auto", "auto", true, "concurrent store-import streams on the remote"},
    {"guix-program", "command", "guix", true, "the `guix` command on a Guix build machine"},
    {"remote-state-dir", "path", "/var/guix (Nix flavour: /nix/var/nix)", true,
     "machines.scm machines: the machine's state directory (GC roots)"},
    {"remote-flavour", "auto|guix|nix", "auto", true,
     "machines.scm machines: drive the machine through `guix` or through `nix-store --serve`"},
}};

std::string_view trim(std::string_view s) {
    constexpr std::string_view blanks = " \t\r";
    auto b = s.find_first_not_of(blanks);
    if (b == std::string_view::npos) return {};
    return s.substr(b, s.find_last_not_of(blanks) - b + 1);
}

std::optional<unsigned> parse_count(std::string_view s) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// Applies key=value to `s`; returns the expected-type text on failure, "" on success.
std::string apply(settings& s, const std::string& key, std::string_view value) {
    auto size = [&](std::uint64_t& out) -> std::string {
        auto v = parse_size(value);
        if (!v) return "a size (integer with optional K, M or G suffix)";
        out = *v;
        return "";
    };
    auto duration = [&](std::chrono::milliseconds& out) -> std::string {
        auto v = parse_duration(value);
        if (!v) return "a duration (number with optional s, m or h suffix)";
        out = *v;
        return "";
    };
    auto count_or_auto = [&](unsigned& out) -> std::string {
        if (value == "auto") { out = 0; return ""; }
        auto v = parse_count(value);
        if (!v) return "a non-negative integer or auto";
        out = *v;
        return "";
    };
    if (key == "codec") {
        if (value.empty()) return "a codec spec or auto";
        s.codec = std::string(value);
        return "";
    }
    if (key == "compression-threads") return count_or_auto(s.compression_threads);
    if (key == "memory-budget") return size(s.memory_budget);
    if (key == "probe-deadline") return duration(s.probe_deadline);
    if (key == "probe-cache-seconds") return duration(s.probe_cache);
    if (key == "slot-wait") return duration(s.slot_wait);
    if (key == "state-dir") {
        if (value.empty() || value.front() != '/') return "an absolute path";
        s.state_dir = std::string(value);
        return "";
    }
    if (key == "overload-threshold") {
        if (value == "off" || value == "#f") {
            s.overload_threshold.reset();
            s.overload_threshold_off = true;
            return "";
        }
        double v = 0;
        auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (ec != std::errc{} || p != value.data() + value.size() || !(v >= 0.0 && v <= 1.0))
            return "a number from 0 to 1, or off";
        s.overload_threshold = v;
        s.overload_threshold_off = false;
        return "";
    }
    if (key == "min-free-space") return size(s.min_free_space);
    if (key == "connect-timeout") return duration(s.connect_timeout);
    if (key == "keepalive-interval") return duration(s.keepalive_interval);
    if (key == "log-level") {
        static constexpr std::array<std::string_view, 5> names{"error", "warn", "info", "debug", "trace"};
        for (std::size_t i = 0; i < names.size(); ++i)
            if (value == names[i]) { s.level = static_cast<log_level>(i); return ""; }
        return "one of error, warn, info, debug, trace";
    }
    if (key == "parallel-import-streams") return count_or_auto(s.parallel_import_streams);
    if (key == "guix-program") {
        if (value.empty()) return "a command";
        s.guix_program = std::string(value);
        return "";
    }
    if (key == "remote-flavour") {
        if (value == "auto") s.flavour = remote_flavour::auto_detect;
        else if (value == "guix") s.flavour = remote_flavour::guix;
        else if (value == "nix") s.flavour = remote_flavour::nix;
        else return "one of auto, guix, nix";
        return "";
    }
    if (key == "remote-state-dir") {
        if (value.empty() || value.front() != '/') return "an absolute path";
        s.remote_state_dir = std::string(value);
        return "";
    }
    return "?";
}

const key_info* find_key(std::string_view name) {
    for (const auto& k : key_table())
        if (k.name == name) return &k;
    return nullptr;
}

[[noreturn]] void fail(const std::string& file, int line, const std::string& what) {
    throw failure(errc::bad_input, file + ":" + std::to_string(line) + ": " + what);
}

}  // namespace

std::span<const key_info> key_table() { return {keys.data(), keys.size()}; }

std::optional<std::uint64_t> parse_size(std::string_view s) {
    if (s.empty()) return std::nullopt;
    std::uint64_t mult = 1;
    switch (s.back()) {
        case 'K': case 'k': mult = 1ull << 10; break;
        case 'M': case 'm': mult = 1ull << 20; break;
        case 'G': case 'g': mult = 1ull << 30; break;
        default: break;
    }
    if (mult != 1) s.remove_suffix(1);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    if (v > UINT64_MAX / mult) return std::nullopt;
    return v * mult;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) {
    if (s.empty()) return std::nullopt;
    double mult = 1000;
    switch (s.back()) {
        case 's': s.remove_suffix(1); break;
        case 'm': mult = 60e3; s.remove_suffix(1); break;
        case 'h': mult = 3600e3; s.remove_suffix(1); break;
        default: break;
    }
    double v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || !(v >= 0) || v * mult > 1e15)
        return std::nullopt;
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(v * mult)));
}

std::vector<std::string> ferry_conf::section_names() const {
    std::vector<std::string> out;
    for (const auto& [name, _] : sections_) out.push_back(name);
    return out;
}

settings ferry_conf::for_machine(const std::string& name) const {
    settings s = global_;
    if (auto it = sections_.find(name); it != sections_.end())
        for (const auto& [k, v] : it->second) (void)apply(s, k, v);  // validated when parsed
    return s;
}

ferry_conf parse_ferry_conf(std::string_view text, const std::string& file, const std::string& default_state_dir) {
    ferry_conf conf;
    conf.path_ = file;
    conf.global_.state_dir = default_state_dir;
    std::vector<std::pair<std::string, std::string>>* section = nullptr;
    std::string section_name;
    int line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        ++line_no;
        auto line = trim(text.substr(pos, nl - pos));
        pos = nl + 1;
        if (line.empty() || line.front() == '#' || line.front() == ';') continue;
        if (line.front() == '[') {
            if (line.back() != ']') fail(file, line_no, "expected ']' at the end of a section header");
            auto inner = trim(line.substr(1, line.size() - 2));
            if (inner == "machine") fail(file, line_no, "expected a machine name in [machine NAME]");
            if (inner.substr(0, 8) != "machine " && inner.substr(0, 8) != "machine\t")
                fail(file, line_no, "section '" + std::string(inner) + "': expected [machine NAME]");
            section_name = std::string(trim(inner.substr(8)));
            if (section_name.size() >= 2 && section_name.front() == '"' && section_name.back() == '"')
                section_name = section_name.substr(1, section_name.size() - 2);
            if (section_name.empty()) fail(file, line_no, "expected a machine name in [machine NAME]");
            section = &conf.sections_[section_name];
            continue;
        }
        auto eq = line.find('=');
        if (eq == std::string_view::npos) fail(file, line_no, "expected 'key = value', got '" + std::string(line) + "'");
        std::string key(trim(line.substr(0, eq)));
        auto value = trim(line.substr(eq + 1));
        const key_info* info = find_key(key);
        if (!info) fail(file, line_no, "unknown key '" + key + "' (see docs/configuration.md)");
        if (section && !info->per_machine)
            fail(file, line_no, "key '" + key + "' is global only; move it above the first [machine ...] section");
        settings probe = section ? conf.for_machine(section_name) : conf.global_;
        std::string expected = apply(probe, key, value);
        if (!expected.empty())
            fail(file, line_no, "key '" + key + "': got '" + std::string(value) + "', expected " + expected);
        if (section) section->emplace_back(key, std::string(value));
        else conf.global_ = probe;
    }
    return conf;
}

}  // namespace ferry::machines
