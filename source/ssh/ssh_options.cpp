#include "ferry/ssh/ssh_options.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/core.h>

namespace ferry::ssh {

bool ssh_command_options::honours_anything() const {
    return port || user || identity || config_file || known_hosts || connect_timeout || keepalive_interval ||
           keepalive_count_max;
}

namespace {

// ssh's getopt string (OpenSSH 8/9 ssh.c): the letters that take an argument.
constexpr std::string_view letters_with_argument = "BbcDEeFIiJLlmOopQRSWw";
// Flags that only turn off what ferry never does (X11, agent forwarding, a tty,
// stdin, GSSAPI delegation) or quieten ssh's own messages.
constexpr std::string_view harmless_flags = "xaTqnk";

std::vector<std::string_view> words_of(std::string_view text) {
    std::vector<std::string_view> words;
    std::size_t i = 0;
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (i < text.size()) {
        while (i < text.size() && blank(text[i])) ++i;
        std::size_t start = i;
        while (i < text.size() && !blank(text[i])) ++i;
        if (i > start) words.push_back(text.substr(start, i - start));
    }
    return words;
}

std::string lower(std::string_view s) {
    std::string r(s);
    std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return r;
}

std::optional<std::uint64_t> number(std::string_view v, std::uint64_t min, std::uint64_t max) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || n < min || n > max) return std::nullopt;
    return n;
}

class parser {
public:
    ssh_command_options result;

    void option(char letter, std::string_view arg) {
        const std::string shown = fmt::format("-{} {}", letter, arg);
        switch (letter) {
        case 'p': return port(shown, arg);
        case 'l': return set_first(result.user, std::string(arg), shown);
        case 'i': return set_first(result.identity, std::filesystem::path(arg), shown);
        case 'F': return set_first(result.config_file, std::filesystem::path(arg), shown);
        case 'o': return config_option(arg);
        case 'c': return ignore(shown, "ferry chooses its own ciphers");
        case 'J': return ignore(shown, "jump hosts are not supported (ferry connects directly)");
        default: return ignore(shown, "not supported by ferry");
        }
    }
    void flag(char letter) {
        if (harmless_flags.find(letter) != std::string_view::npos) return;
        const std::string shown = fmt::format("-{}", letter);
        if (letter == 'C') return ignore(shown, "ferry compresses with its own codec (ferry.conf codec)");
        ignore(shown, "not supported by ferry");
    }
    void ignore(std::string_view what, std::string_view why) { result.ignored.push_back(fmt::format("{}: {}", what, why)); }

private:
    template <class T>
    void set_first(std::optional<T>& field, T value, std::string_view shown) {
        // As ssh does for -o options: the first value given wins.
        if (field) return ignore(shown, "given before; the first value counts");
        field = std::move(value);
    }
    void port(std::string_view shown, std::string_view v) {
        auto n = number(v, 1, 65535);
        if (!n) return ignore(shown, fmt::format("expected a port 1-65535, got '{}'", v));
        set_first(result.port, static_cast<std::uint16_t>(*n), shown);
    }
    void seconds(std::optional<std::chrono::milliseconds>& field, std::string_view shown, std::string_view v) {
        auto n = number(v, 1, 24 * 3600);
        if (!n) return ignore(shown, fmt::format("expected whole seconds 1-86400, got '{}'", v));
        set_first(field, std::chrono::milliseconds(*n * 1000), shown);
    }
    void config_option(std::string_view arg) {
        const std::string shown = fmt::format("-o {}", arg);
        auto eq = arg.find('=');
        if (eq == std::string_view::npos || eq == 0)
            return ignore(shown, "expected -o Key=Value (NIX_SSHOPTS is split on blanks, so 'Key Value' cannot work)");
        const std::string key = lower(arg.substr(0, eq));
        const std::string_view value = arg.substr(eq + 1);
        if (value.empty()) return ignore(shown, "empty value");
        if (key == "port") return port(shown, value);
        if (key == "user") return set_first(result.user, std::string(value), shown);
        if (key == "identityfile") return set_first(result.identity, std::filesystem::path(value), shown);
        if (key == "userknownhostsfile") return set_first(result.known_hosts, std::filesystem::path(value), shown);
        if (key == "connecttimeout") return seconds(result.connect_timeout, shown, value);
        if (key == "serveraliveinterval") return seconds(result.keepalive_interval, shown, value);
        if (key == "serveralivecountmax") {
            auto n = number(value, 1, 1000);
            if (!n) return ignore(shown, fmt::format("expected a count 1-1000, got '{}'", value));
            return set_first(result.keepalive_count_max, static_cast<int>(*n), shown);
        }
        if (key == "stricthostkeychecking") {
            if (lower(value) == "yes") return;  // ferry's behaviour already
            return ignore(shown, "ferry always checks host keys (the pinned key, else known_hosts); never weakened");
        }
        if (key == "compression") return ignore(shown, "ferry compresses with its own codec (ferry.conf codec)");
        if (key == "proxyjump" || key == "proxycommand")
            return ignore(shown, "proxies are not supported (ferry connects directly)");
        ignore(shown, "not supported by ferry");
    }
};

}  // namespace

ssh_command_options parse_ssh_command_options(std::string_view text) {
    parser p;
    if (text.size() > max_ssh_command_options_size) {
        p.ignore("NIX_SSHOPTS", fmt::format("{} bytes, more than {}: ignored whole", text.size(),
                                            max_ssh_command_options_size));
        return std::move(p.result);
    }
    auto words = words_of(text);
    for (std::size_t w = 0; w < words.size(); ++w) {
        std::string_view word = words[w];
        if (word.size() < 2 || word[0] != '-' || word == "--") {
            p.ignore(word, "not an option (a host or command cannot be given here)");
            continue;
        }
        // getopt: letters after one '-'; a letter with an argument takes the rest
        // of the word, else the next word.
        for (std::size_t i = 1; i < word.size(); ++i) {
            char letter = word[i];
            if (letters_with_argument.find(letter) == std::string_view::npos) {
                p.flag(letter);
                continue;
            }
            std::string_view arg = word.substr(i + 1);
            if (arg.empty()) {
                if (w + 1 == words.size()) {
                    p.ignore(fmt::format("-{}", letter), "missing its argument at the end");
                    break;
                }
                arg = words[++w];
            }
            p.option(letter, arg);
            break;
        }
    }
    return std::move(p.result);
}

void apply_ssh_command_options(const ssh_command_options& o, session_options& s) {
    if (o.port && !s.port) s.port = o.port;
    if (o.user && s.user.empty()) s.user = *o.user;
    if (o.identity && s.identity.empty()) s.identity = *o.identity;
    if (o.config_file && s.config_file.empty()) s.config_file = *o.config_file;
    if (o.known_hosts && s.known_hosts.empty()) s.known_hosts = *o.known_hosts;
    if (o.connect_timeout) s.connect_timeout = std::min(s.connect_timeout, *o.connect_timeout);
    if (o.keepalive_interval) s.keepalive_interval = *o.keepalive_interval;
    if (o.keepalive_count_max) s.keepalive_count_max = *o.keepalive_count_max;
}

}  // namespace ferry::ssh
