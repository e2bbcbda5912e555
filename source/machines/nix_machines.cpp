#include <ferry/machines/nix_machines.hpp>

#include <ferry/util/error.hpp>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ferry::machines {
namespace {

constexpr std::string_view blanks = " \t\r\n";

std::string_view trim(std::string_view s) {
    auto b = s.find_first_not_of(blanks);
    if (b == std::string_view::npos) return {};
    auto e = s.find_last_not_of(blanks);
    return s.substr(b, e - b + 1);
}

std::vector<std::string> split(std::string_view s, std::string_view seps) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < s.size()) {
        auto b = s.find_first_not_of(seps, i);
        if (b == std::string_view::npos) break;
        auto e = s.find_first_of(seps, b);
        if (e == std::string_view::npos) e = s.size();
        out.emplace_back(s.substr(b, e - b));
        i = e;
    }
    return out;
}

[[noreturn]] void fail(const source_position& at, const std::string& what) {
    throw failure(errc::bad_input, at.str() + ": bad machine specification: " + what);
}

// Base64 as Nix 2.8 decodes it (util.cc base64Decode): stops at the first '=', so
// missing padding is accepted; skips '\n'; any other non-alphabet byte is an error.
// OpenSSL's decoder insists on padding, which Nix does not.
std::optional<std::string> base64_decode(std::string_view in) {
    std::string out;
    unsigned bits = 0, acc = 0;
    for (char c : in) {
        if (c == '=') break;
        if (c == '\n') continue;
        int digit;
        if (c >= 'A' && c <= 'Z') digit = c - 'A';
        else if (c >= 'a' && c <= 'z') digit = c - 'a' + 26;
        else if (c >= '0' && c <= '9') digit = c - '0' + 52;
        else if (c == '+') digit = 62;
        else if (c == '/') digit = 63;
        else return std::nullopt;
        acc = (acc << 6 | static_cast<unsigned>(digit)) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return out;
}

std::optional<unsigned> parse_unsigned(std::string_view s) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// Percent-decoding for URI query values (Nix decodes them too).
std::string percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size()) {
            unsigned v = 0;
            auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
            if (ec == std::errc{} && p == s.data() + i + 3) {
                out += static_cast<char>(v);
                i += 2;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

void parse_uri(std::string_view uri, machine& m, const source_position& at) {
    std::string_view rest = uri;
    if (auto q = rest.find('?'); q != std::string_view::npos) {
        for (const auto& param : split(rest.substr(q + 1), "&")) {
            auto eq = param.find('=');
            std::string key = param.substr(0, eq);
            std::string value = eq == std::string::npos ? "" : percent_decode(param.substr(eq + 1));
            if (key == "remote-program") m.remote_program = value;
            else if (key == "remote-store") m.remote_store = value;
            // Other store parameters (compress, max-connections, ...) do not apply to ferry.
        }
        rest = rest.substr(0, q);
    }
    if (auto s = rest.find("://"); s != std::string_view::npos) {
        auto scheme = rest.substr(0, s);
        if (scheme != "ssh" && scheme != "ssh-ng")
            fail(at, "store URI '" + std::string(uri) + "': expected ssh:// or ssh-ng:// (ferry offloads over SSH only)");
        m.scheme = std::string(scheme);
        rest = rest.substr(s + 3);
    } else if (rest.find('/') != std::string_view::npos || rest == "auto" || rest == "daemon" || rest == "local") {
        // Nix would open a local store here; ferry only offloads to SSH hosts.
        fail(at, "store URI '" + std::string(uri) + "': expected ssh://[user@]host[:port] or a host name");
    }
    if (auto a = rest.rfind('@'); a != std::string_view::npos) {
        m.user = std::string(rest.substr(0, a));
        rest = rest.substr(a + 1);
    }
    if (!rest.empty() && rest.front() == '[') {  // [v6addr] or [v6addr]:port
        auto close = rest.find(']');
        if (close == std::string_view::npos) fail(at, "store URI '" + std::string(uri) + "': expected ']' after an IPv6 address");
        m.host = std::string(rest.substr(1, close - 1));
        rest = rest.substr(close + 1);
        if (!rest.empty() && rest.front() != ':') fail(at, "store URI '" + std::string(uri) + "': expected ':port' after ']'");
    } else {
        auto c = rest.find(':');
        m.host = std::string(rest.substr(0, c));
        rest = c == std::string_view::npos ? std::string_view{} : rest.substr(c);
    }
    if (!rest.empty()) {  // ":port"
        auto p = parse_unsigned(rest.substr(1));
        if (!p || *p == 0 || *p > 65535)
            fail(at, "store URI '" + std::string(uri) + "': expected a port number 1-65535 after ':'");
        m.port = static_cast<std::uint16_t>(*p);
    }
    if (m.host.empty()) fail(at, "store URI '" + std::string(uri) + "': expected a host name");
}

struct entry {
    std::string text;
    source_position at;
};

void expand(std::string_view text, const std::string& origin, const nix_parse_options& opt, int depth,
            std::vector<entry>& out) {
    int line_no = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        auto nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        ++line_no;
        std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        // ';' splits first; then '#' cuts the rest of that entry only (Nix 2.8).
        std::size_t epos = 0;
        while (epos <= line.size()) {
            auto semi = line.find(';', epos);
            if (semi == std::string_view::npos) semi = line.size();
            std::string_view e = line.substr(epos, semi - epos);
            epos = semi + 1;
            if (auto h = e.find('#'); h != std::string_view::npos) e = e.substr(0, h);
            e = trim(e);
            if (e.empty()) continue;
            source_position at{origin, line_no, 0};
            if (e.front() == '@') {
                std::string path(trim(e.substr(1)));
                if (depth >= opt.max_include_depth)
                    fail(at, "'@" + path + "': includes nested deeper than " + std::to_string(opt.max_include_depth) +
                                 " (a loop?)");
                auto contents = opt.read(path);
                if (contents) expand(*contents, path, opt, depth + 1, out);
                continue;
            }
            out.push_back({std::string(e), at});
        }
        if (nl == text.size()) break;
    }
}

}  // namespace

std::optional<std::string> read_file_if_exists(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR) return std::nullopt;
        throw failure(errc::bad_input, "cannot read machines file '" + path + "': " + std::strerror(err));
    }
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

machine parse_nix_machine_line(std::string_view line, const source_position& at, const std::string& default_system) {
    auto cols = split(line, " \t\r\n");
    auto is_set = [&](std::size_t i) { return cols.size() > i && cols[i] != "-"; };
    machine m;
    m.kind = flavour::nix;
    m.origin = at;
    if (!is_set(0)) fail(at, "expected a store URI in column 1, got '" + std::string(line) + "'");
    parse_uri(cols[0], m, at);
    if (is_set(1)) m.systems = split(cols[1], ",");
    else m.systems = {default_system};
    if (is_set(2)) m.identity = cols[2];
    if (is_set(3)) {
        auto v = parse_unsigned(cols[3]);
        if (!v) fail(at, "column 4 (max jobs) is '" + cols[3] + "', expected an unsigned integer");
        m.max_jobs = *v;
    }
    if (is_set(4)) {
        auto v = parse_unsigned(cols[4]);
        if (!v) fail(at, "column 5 (speed factor) is '" + cols[4] + "', expected an unsigned integer (as Nix 2.8)");
        m.speed = *v == 0 ? 1.0 : static_cast<double>(*v);
    }
    if (is_set(5)) for (auto& f : split(cols[5], ",")) m.supported_features.insert(f);
    if (is_set(6)) for (auto& f : split(cols[6], ",")) m.mandatory_features.insert(f);
    if (is_set(7)) {
        auto key = base64_decode(cols[7]);
        if (!key) fail(at, "column 8 (host key) is not valid base64; expected base64 of an OpenSSH public key line");
        m.host_key = std::string(trim(*key));
    }
    // Columns past the 8th are ignored, as Nix does.
    return m;
}

std::vector<machine> parse_nix_machines(std::string_view text, const std::string& origin,
                                        const nix_parse_options& options) {
    std::vector<entry> entries;
    expand(text, origin, options, 0, entries);
    std::vector<machine> out;
    out.reserve(entries.size());
    for (const auto& e : entries) out.push_back(parse_nix_machine_line(e.text, e.at, options.default_system));
    return out;
}

}  // namespace ferry::machines
