#include "ferry/store/derivation.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "ferry/protocol/wire.hpp"
#include "ferry/store/store_path.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store {

const derivation_output* derivation::output(std::string_view name) const {
    for (const auto& o : outputs)
        if (o.name == name) return &o;
    return nullptr;
}

namespace {

class aterm_reader {
public:
    aterm_reader(std::string_view text, std::string_view origin) : text_(text), origin_(origin) {}

    [[noreturn]] void fail(const std::string& what) const {
        std::size_t line = 1, column = 1;
        for (std::size_t i = 0; i < pos_ && i < text_.size(); ++i) {
            if (text_[i] == '\n') {
                ++line;
                column = 1;
            } else {
                ++column;
            }
        }
        throw failure(errc::bad_input,
                      fmt::format("{}: offset {} (line {}, column {}): {}", origin_, pos_, line, column, what));
    }

    void expect(std::string_view token) {
        if (text_.substr(pos_, token.size()) != token) {
            auto got = text_.substr(pos_, std::min<std::size_t>(token.size() + 8, 24));
            fail(fmt::format("expected '{}', found '{}'", token, got.empty() ? "end of input" : std::string(got)));
        }
        pos_ += token.size();
    }

    bool peek(char c) const { return pos_ < text_.size() && text_[pos_] == c; }

    std::string string() {
        expect("\"");
        std::string out;
        for (;;) {
            if (pos_ >= text_.size()) fail("unterminated string");
            char c = text_[pos_++];
            if (c == '"') return out;
            if (c == '\\') {
                if (pos_ >= text_.size()) fail("unterminated escape");
                char e = text_[pos_++];
                out.push_back(e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e);
            } else {
                out.push_back(c);
            }
        }
    }

    // [ item, item, ... ]
    template <typename F>
    void list(F&& item) {
        expect("[");
        if (peek(']')) {
            ++pos_;
            return;
        }
        for (;;) {
            item();
            if (peek(']')) {
                ++pos_;
                return;
            }
            expect(",");
        }
    }

    std::vector<std::string> strings() {
        std::vector<std::string> out;
        list([&] { out.push_back(string()); });
        return out;
    }

    bool at_end() const { return pos_ == text_.size(); }

private:
    std::string_view text_;
    std::string_view origin_;
    std::size_t pos_ = 0;
};

void print_escaped(std::string& out, std::string_view s) {
    out.push_back('"');
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default: out.push_back(c);
        }
    }
    out.push_back('"');
}

// Nix prints store paths and output names without escaping (printUnquotedString).
void print_unquoted(std::string& out, std::string_view s) {
    out.push_back('"');
    out.append(s);
    out.push_back('"');
}

template <typename F>
void print_list(std::string& out, const std::vector<std::string>& items, F print) {
    out.push_back('[');
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out.push_back(',');
        print(out, items[i]);
    }
    out.push_back(']');
}

}  // namespace

derivation parse_derivation(std::string_view text, std::string_view origin, std::size_t max_size) {
    if (text.size() > max_size)
        throw failure(errc::too_large, fmt::format("{}: {} bytes exceed the limit of {}", origin, text.size(), max_size));
    aterm_reader r(text, origin);
    derivation drv;
    r.expect("Derive(");
    r.list([&] {
        derivation_output o;
        r.expect("(");
        o.name = r.string();
        r.expect(",");
        o.path = r.string();
        r.expect(",");
        o.hash_algo = r.string();
        r.expect(",");
        o.hash = r.string();
        r.expect(")");
        drv.outputs.push_back(std::move(o));
    });
    r.expect(",");
    r.list([&] {
        r.expect("(");
        auto path = r.string();
        r.expect(",");
        auto outputs = r.strings();
        r.expect(")");
        drv.input_drvs.emplace_back(std::move(path), std::move(outputs));
    });
    r.expect(",");
    drv.input_srcs = r.strings();
    r.expect(",");
    drv.platform = r.string();
    r.expect(",");
    drv.builder = r.string();
    r.expect(",");
    drv.args = r.strings();
    r.expect(",");
    r.list([&] {
        r.expect("(");
        auto name = r.string();
        r.expect(",");
        auto value = r.string();
        r.expect(")");
        drv.env.emplace_back(std::move(name), std::move(value));
    });
    r.expect(")");
    if (!r.at_end()) r.fail("trailing characters after the derivation");
    return drv;
}

derivation read_derivation(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string text(std::istreambuf_iterator<char>(in), {});
    if (!in.good() && !in.eof())
        throw failure(errc::bad_input, fmt::format("cannot read the derivation {}: {}", path, std::strerror(errno)));
    return parse_derivation(text, path);
}

std::string print_derivation(const derivation& drv) {
    std::string s = "Derive([";
    for (std::size_t i = 0; i < drv.outputs.size(); ++i) {
        const auto& o = drv.outputs[i];
        if (i) s.push_back(',');
        s.push_back('(');
        print_unquoted(s, o.name);
        s.push_back(',');
        print_unquoted(s, o.path);
        s.push_back(',');
        print_unquoted(s, o.hash_algo);
        s.push_back(',');
        print_unquoted(s, o.hash);
        s.push_back(')');
    }
    s += "],[";
    for (std::size_t i = 0; i < drv.input_drvs.size(); ++i) {
        if (i) s.push_back(',');
        s.push_back('(');
        print_unquoted(s, drv.input_drvs[i].first);
        s.push_back(',');
        print_list(s, drv.input_drvs[i].second, print_unquoted);
        s.push_back(')');
    }
    s += "],";
    print_list(s, drv.input_srcs, print_unquoted);
    s.push_back(',');
    print_escaped(s, drv.platform);
    s.push_back(',');
    print_escaped(s, drv.builder);
    s.push_back(',');
    print_list(s, drv.args, print_escaped);
    s += ",[";
    for (std::size_t i = 0; i < drv.env.size(); ++i) {
        if (i) s.push_back(',');
        s.push_back('(');
        print_escaped(s, drv.env[i].first);
        s.push_back(',');
        print_escaped(s, drv.env[i].second);
        s.push_back(')');
    }
    s += "])";
    return s;
}

void append_basic_derivation(std::string& out, const derivation& drv, std::vector<std::string> input_srcs) {
    namespace wire = protocol::wire;
    wire::append_u64(out, drv.outputs.size());
    for (const auto& o : drv.outputs) {
        wire::append_string(out, o.name);
        wire::append_string(out, o.path);
        wire::append_string(out, o.hash_algo);
        wire::append_string(out, o.hash);
    }
    std::sort(input_srcs.begin(), input_srcs.end(), store_path_less{});
    input_srcs.erase(std::unique(input_srcs.begin(), input_srcs.end()), input_srcs.end());
    wire::append_strings(out, input_srcs);
    wire::append_string(out, drv.platform);
    wire::append_string(out, drv.builder);
    wire::append_strings(out, drv.args);
    wire::append_u64(out, drv.env.size());
    for (const auto& [k, v] : drv.env) {
        wire::append_string(out, k);
        wire::append_string(out, v);
    }
}

std::string serialize_basic_derivation(const derivation& drv, const std::vector<std::string>& input_srcs) {
    std::string out;
    append_basic_derivation(out, drv, input_srcs);
    return out;
}

}  // namespace ferry::store
