#include <ferry/machines/sexpr.hpp>

#include <ferry/util/error.hpp>

#include <cctype>
#include <charconv>
#include <cstdlib>

namespace ferry::machines::sexpr {
namespace {

constexpr int max_depth = 256;

class reader {
public:
    reader(std::string_view text, const std::string& file) : s_(text), file_(file) {}

    std::vector<datum> all() {
        std::vector<datum> out;
        for (;;) {
            skip_atmosphere();
            if (i_ >= s_.size()) return out;
            out.push_back(read(0));
        }
    }

private:
    std::string_view s_;
    const std::string& file_;
    std::size_t i_ = 0;
    int line_ = 1, col_ = 1;

    source_position here() const { return {file_, line_, col_}; }

    [[noreturn]] void fail(const source_position& at, const std::string& what) const {
        throw failure(errc::bad_input, at.str() + ": " + what);
    }

    char peek(std::size_t ahead = 0) const { return i_ + ahead < s_.size() ? s_[i_ + ahead] : '\0'; }
    bool more(std::size_t ahead = 0) const { return i_ + ahead < s_.size(); }

    void advance() {
        if (s_[i_] == '\n') { ++line_; col_ = 1; }
        else ++col_;
        ++i_;
    }

    void skip_atmosphere() {
        while (more()) {
            char c = peek();
            if (std::isspace(static_cast<unsigned char>(c))) { advance(); continue; }
            if (c == ';') { while (more() && peek() != '\n') advance(); continue; }
            if (c == '#' && peek(1) == '|') { skip_block_comment(); continue; }
            if (c == '#' && peek(1) == ';') {
                advance(); advance();
                skip_atmosphere();
                if (!more()) fail(here(), "expected a datum after '#;', got end of file");
                (void)read(0);
                continue;
            }
            return;
        }
    }

    void skip_block_comment() {
        auto start = here();
        int nest = 0;
        do {
            if (!more()) fail(start, "unterminated block comment '#|': expected '|#'");
            if (peek() == '#' && peek(1) == '|') { advance(); advance(); ++nest; }
            else if (peek() == '|' && peek(1) == '#') { advance(); advance(); --nest; }
            else advance();
        } while (nest > 0);
    }

    static bool delimiter(char c) {
        return std::isspace(static_cast<unsigned char>(c)) || c == '(' || c == ')' || c == '[' || c == ']' ||
               c == '"' || c == ';';
    }

    datum read(int depth) {
        if (depth > max_depth) fail(here(), "nesting deeper than " + std::to_string(max_depth) + " levels");
        skip_atmosphere();
        if (!more()) fail(here(), "expected a datum, got end of file");
        auto at = here();
        char c = peek();
        if (c == '(' || c == '[') return read_list(at, c == '(' ? ')' : ']', depth);
        if (c == ')' || c == ']') fail(at, std::string("unexpected '") + c + "'");
        if (c == '"') return read_string(at);
        if (c == '\'') {
            advance();
            datum q;
            q.type = kind::list;
            q.at = at;
            datum sym;
            sym.type = kind::symbol;
            sym.at = at;
            sym.text = "quote";
            q.items.push_back(std::move(sym));
            q.items.push_back(read(depth + 1));
            return q;
        }
        if (c == '`' || c == ',')
            fail(at, "quasiquote/unquote is not supported in machines.scm data; expected '(...) or (list ...)");
        return read_atom(at);
    }

    datum read_list(const source_position& at, char close, int depth) {
        advance();
        datum d;
        d.type = kind::list;
        d.at = at;
        for (;;) {
            skip_atmosphere();
            if (!more()) fail(at, std::string("unterminated list: expected '") + close + "' before end of file");
            char c = peek();
            if (c == ')' || c == ']') {
                if (c != close) fail(here(), std::string("expected '") + close + "', got '" + c + "'");
                advance();
                return d;
            }
            if (c == '.' && (!more(1) || delimiter(peek(1))))
                fail(here(), "dotted pairs are not supported in machines.scm data");
            d.items.push_back(read(depth + 1));
        }
    }

    datum read_string(const source_position& at) {
        advance();
        datum d;
        d.type = kind::string;
        d.at = at;
        for (;;) {
            if (!more()) fail(at, "unterminated string: expected '\"' before end of file");
            char c = peek();
            advance();
            if (c == '"') return d;
            if (c != '\\') { d.text += c; continue; }
            if (!more()) fail(at, "unterminated string: expected '\"' before end of file");
            auto esc_at = here();
            char e = peek();
            advance();
            switch (e) {
                case '"': d.text += '"'; break;
                case '\\': d.text += '\\'; break;
                case 'n': d.text += '\n'; break;
                case 't': d.text += '\t'; break;
                case 'r': d.text += '\r'; break;
                case 'a': d.text += '\a'; break;
                case 'f': d.text += '\f'; break;
                case 'v': d.text += '\v'; break;
                case '0': d.text += '\0'; break;
                case '\n':  // line continuation: skip leading blanks of the next line
                    while (more() && (peek() == ' ' || peek() == '\t')) advance();
                    break;
                case 'x': {
                    std::size_t n = 0;
                    while (more(n) && std::isxdigit(static_cast<unsigned char>(peek(n)))) ++n;
                    unsigned v = 0;
                    if (n == 0 || n > 2) fail(esc_at, "bad \\x escape: expected 1-2 hex digits");
                    std::from_chars(s_.data() + i_, s_.data() + i_ + n, v, 16);
                    for (std::size_t k = 0; k < n; ++k) advance();
                    if (peek() == ';') advance();  // R7RS form \xHH;
                    d.text += static_cast<char>(v);
                    break;
                }
                default: fail(esc_at, std::string("unknown string escape '\\") + e + "'");
            }
        }
    }

    datum read_atom(const source_position& at) {
        std::size_t b = i_;
        while (more() && !delimiter(peek())) advance();
        if (i_ == b) {  // read() and skip_atmosphere() consume every delimiter; guard against looping anyway
            fail(at, "unexpected character");
        }
        std::string tok(s_.substr(b, i_ - b));
        datum d;
        d.at = at;
        d.text = tok;
        if (tok == "#t" || tok == "#true" || tok == "#f" || tok == "#false") {
            d.type = kind::boolean;
            d.boolean = tok[1] == 't';
            return d;
        }
        if (tok.front() == '#') fail(at, "unsupported syntax '" + tok + "'; expected a string, number, #t/#f or list");
        if (auto n = parse_number(tok)) {
            d.type = kind::number;
            d.number = *n;
            d.exact = tok.find_first_of(".eE") == std::string::npos;
            return d;
        }
        d.type = kind::symbol;
        return d;
    }

    static std::optional<double> parse_number(const std::string& tok) {
        // Scheme numbers must contain a digit and may start with + - . or a digit.
        if (tok.find_first_of("0123456789") == std::string::npos) return std::nullopt;
        char c = tok.front();
        if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.')) return std::nullopt;
        std::string t = tok.front() == '+' ? tok.substr(1) : tok;
        double v = 0;
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        if (ec != std::errc{} || p != t.data() + t.size()) {
            // "2." is a Scheme inexact 2; from_chars accepts it, but check anyway.
            return std::nullopt;
        }
        return v;
    }
};

}  // namespace

std::string datum::show(std::size_t max) const {
    std::string s;
    switch (type) {
        case kind::string: s = "\"" + text + "\""; break;
        case kind::number:
        case kind::boolean:
        case kind::symbol: s = text; break;
        case kind::list:
            if (items.size() == 2 && items[0].is_symbol("quote")) {
                s = "'" + items[1].show(max);
                break;
            }
            s = "(";
            for (std::size_t k = 0; k < items.size() && s.size() < max; ++k) {
                if (k) s += ' ';
                s += items[k].show(max);
            }
            s += ")";
    }
    if (s.size() > max) s = s.substr(0, max - 3) + "...";
    return s;
}

std::vector<datum> read_all(std::string_view text, const std::string& file) {
    return reader(text, file).all();
}

}  // namespace ferry::machines::sexpr
