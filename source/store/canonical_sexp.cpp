#include "ferry/store/canonical_sexp.hpp"

#include <optional>

#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::store {

const sexp* sexp::find(std::string_view token) const {
    if (!is_list) return nullptr;
    if (!items.empty() && !items[0].is_list && items[0].atom == token) return this;
    for (const auto& i : items)
        if (const auto* f = i.find(token)) return f;
    return nullptr;
}

const std::string* sexp::atom_at(std::size_t i) const {
    if (!is_list || i >= items.size() || items[i].is_list) return nullptr;
    return &items[i].atom;
}

namespace {

constexpr int max_depth = 64;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
// libgcrypt's token characters (sexp.c); a token never starts with a digit.
bool is_token_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("-./_:*+=").find(c) != std::string_view::npos;
}
int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
int base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

class sexp_reader {
public:
    sexp_reader(std::string_view text, std::string_view what) : text_(text), what_(what) {}

    sexp read_top() {
        skip_space();
        if (pos_ >= text_.size() || text_[pos_] != '(') fail("expected '(' starting the expression");
        sexp s = read_list(0);
        skip_space();
        if (pos_ != text_.size()) fail("expected the end after the expression");
        return s;
    }

private:
    [[noreturn]] void fail(std::string_view expected) const {
        throw failure(errc::bad_input, fmt::format("{}: offset {}: {}", what_, pos_, expected));
    }
    void skip_space() {
        while (pos_ < text_.size() && is_space(text_[pos_])) ++pos_;
    }
    char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

    sexp read_list(int depth) {
        if (depth >= max_depth) fail(fmt::format("nesting deeper than {} levels", max_depth));
        ++pos_;  // '('
        sexp list;
        list.is_list = true;
        for (;;) {
            skip_space();
            if (pos_ >= text_.size()) fail("expected ')' before the end");
            char c = text_[pos_];
            if (c == ')') {
                ++pos_;
                return list;
            }
            if (c == '(')
                list.items.push_back(read_list(depth + 1));
            else
                list.items.push_back(read_atom());
        }
    }

    sexp read_atom() {
        sexp a;
        char c = peek();
        if (std::isdigit(static_cast<unsigned char>(c)))
            a.atom = read_verbatim();
        else if (c == '"')
            a.atom = read_quoted();
        else if (c == '#')
            a.atom = read_hex();
        else if (c == '|')
            a.atom = read_base64();
        else if (c == '[')
            fail("display hints ([...]) are not supported");
        else if (is_token_char(c))
            a.atom = read_token();
        else
            fail(fmt::format("expected an atom or a list, got byte 0x{:02x}", static_cast<unsigned char>(c)));
        return a;
    }

    std::string read_verbatim() {
        std::uint64_t n = 0;
        while (std::isdigit(static_cast<unsigned char>(peek()))) {
            n = n * 10 + static_cast<unsigned>(peek() - '0');
            if (n > text_.size()) fail("a length beyond the input");
            ++pos_;
        }
        if (peek() != ':') fail("expected ':' after a length (only the N:bytes form is supported)");
        ++pos_;
        if (n > text_.size() - pos_) fail(fmt::format("a {}-byte string beyond the input's end", n));
        std::string s(text_.substr(pos_, n));
        pos_ += n;
        return s;
    }

    std::string read_token() {
        std::size_t start = pos_;
        while (pos_ < text_.size() && is_token_char(text_[pos_])) ++pos_;
        return std::string(text_.substr(start, pos_ - start));
    }

    std::string read_hex() {
        ++pos_;
        std::string out;
        int high = -1;
        for (;;) {
            if (pos_ >= text_.size()) fail("expected '#' closing a hex string");
            char c = text_[pos_++];
            if (c == '#') break;
            if (is_space(c)) continue;
            int v = hex_value(c);
            if (v < 0) fail("expected a hex digit");
            if (high < 0)
                high = v;
            else {
                out.push_back(static_cast<char>(high * 16 + v));
                high = -1;
            }
        }
        if (high >= 0) fail("a hex string with an odd number of digits");
        return out;
    }

    std::string read_base64() {
        ++pos_;
        std::string out;
        std::uint32_t acc = 0;
        int bits = 0;
        bool padding = false;
        for (;;) {
            if (pos_ >= text_.size()) fail("expected '|' closing a base64 string");
            char c = text_[pos_++];
            if (c == '|') break;
            if (is_space(c)) continue;
            if (c == '=') {
                padding = true;
                continue;
            }
            int v = base64_value(c);
            if (v < 0 || padding) fail("expected a base64 character");
            acc = (acc << 6) | static_cast<std::uint32_t>(v);
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out.push_back(static_cast<char>((acc >> bits) & 0xff));
            }
        }
        return out;
    }

    std::string read_quoted() {
        ++pos_;
        std::string out;
        for (;;) {
            if (pos_ >= text_.size()) fail("expected '\"' closing a string");
            char c = text_[pos_++];
            if (c == '"') return out;
            if (c != '\\') {
                out.push_back(c);
                continue;
            }
            if (pos_ >= text_.size()) fail("expected an escape after '\\'");
            char e = text_[pos_++];
            switch (e) {
            case 'b': out.push_back('\b'); break;
            case 't': out.push_back('\t'); break;
            case 'v': out.push_back('\v'); break;
            case 'n': out.push_back('\n'); break;
            case 'f': out.push_back('\f'); break;
            case 'r': out.push_back('\r'); break;
            case '"': case '\'': case '\\': out.push_back(e); break;
            case '\n':  // a continued line
                if (peek() == '\r') ++pos_;
                break;
            case '\r':
                if (peek() == '\n') ++pos_;
                break;
            case 'x': {
                int h = hex_value(peek());
                int l = pos_ + 1 < text_.size() ? hex_value(text_[pos_ + 1]) : -1;
                if (h < 0 || l < 0) fail("expected two hex digits after \\x");
                out.push_back(static_cast<char>(h * 16 + l));
                pos_ += 2;
                break;
            }
            default: {
                if (e < '0' || e > '7') fail("expected a known escape");
                int v = e - '0';
                for (int i = 0; i < 2; ++i) {
                    char d = peek();
                    if (d < '0' || d > '7') fail("expected three octal digits");
                    v = v * 8 + (d - '0');
                    ++pos_;
                }
                if (v > 255) fail("an octal escape beyond 255");
                out.push_back(static_cast<char>(v));
            }
            }
        }
    }

    std::string_view text_;
    std::string_view what_;
    std::size_t pos_ = 0;
};

}  // namespace

sexp parse_sexp(std::string_view text, std::string_view what) { return sexp_reader(text, what).read_top(); }

}  // namespace ferry::store
