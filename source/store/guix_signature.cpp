#include "ferry/store/guix_signature.hpp"

#include <openssl/bn.h>
#include <openssl/err.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include <fmt/core.h>

#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store {

// ---------------------------------------------------------------- S-expressions

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

// ------------------------------------------------- ECDSA over twisted Edwards25519

struct bn_free {
    void operator()(BIGNUM* b) const { BN_free(b); }
};
struct ctx_free {
    void operator()(BN_CTX* c) const { BN_CTX_free(c); }
};
using bn = std::unique_ptr<BIGNUM, bn_free>;

bn make_bn() {
    bn b(BN_new());
    if (!b) throw failure(errc::no_space, "BN_new");
    return b;
}
bn bn_dec(const char* s) {
    BIGNUM* b = nullptr;
    if (!BN_dec2bn(&b, s)) throw failure(errc::no_space, "BN_dec2bn");
    return bn(b);
}
bn bn_bytes(std::string_view big_endian) {
    bn b(BN_bin2bn(reinterpret_cast<const unsigned char*>(big_endian.data()), static_cast<int>(big_endian.size()),
                   nullptr));
    if (!b) throw failure(errc::no_space, "BN_bin2bn");
    return b;
}

struct point {
    bn x, y;
};

// Ed25519's domain (RFC 7748 / 8032): -x^2 + y^2 = 1 + d x^2 y^2 over p = 2^255 - 19,
// base point G, prime order n of G.
struct edwards25519 {
    std::unique_ptr<BN_CTX, ctx_free> ctx{BN_CTX_new()};
    bn p = bn_dec("57896044618658097711785492504343953926634992332820282019728792003956564819949");
    bn d = bn_dec("37095705934669439343138083508754565189542113879843219016388785533085940283555");
    bn n = bn_dec("7237005577332262213973186563042994240857116359379907606001950938285454250989");
    point g{bn_dec("15112221349535400772501151409588531511454012693041857206046113283949847762202"),
            bn_dec("46316835694926478169428394003475163141307993866256225615783033603165251855960")};

    void check(int ok) const {
        if (!ok) throw failure(errc::no_space, "OpenSSL BIGNUM arithmetic failed");
    }
    bn mul(const BIGNUM* a, const BIGNUM* b, const BIGNUM* m) const {
        auto r = make_bn();
        check(BN_mod_mul(r.get(), a, b, m, ctx.get()));
        return r;
    }
    bn inv(const BIGNUM* a, const BIGNUM* m) const {
        auto r = make_bn();
        check(BN_mod_inverse(r.get(), a, m, ctx.get()) != nullptr);
        return r;
    }
    // The Edwards addition law (complete: d is not a square mod p).
    point add(const point& a, const point& b) const {
        auto x1y2 = mul(a.x.get(), b.y.get(), p.get());
        auto y1x2 = mul(a.y.get(), b.x.get(), p.get());
        auto y1y2 = mul(a.y.get(), b.y.get(), p.get());
        auto x1x2 = mul(a.x.get(), b.x.get(), p.get());
        auto t = mul(d.get(), mul(x1x2.get(), y1y2.get(), p.get()).get(), p.get());
        auto one = make_bn();
        check(BN_one(one.get()));
        auto num_x = make_bn(), num_y = make_bn(), den_x = make_bn(), den_y = make_bn();
        check(BN_mod_add(num_x.get(), x1y2.get(), y1x2.get(), p.get(), ctx.get()));
        check(BN_mod_add(num_y.get(), y1y2.get(), x1x2.get(), p.get(), ctx.get()));
        check(BN_mod_add(den_x.get(), one.get(), t.get(), p.get(), ctx.get()));
        check(BN_mod_sub(den_y.get(), one.get(), t.get(), p.get(), ctx.get()));
        return {mul(num_x.get(), inv(den_x.get(), p.get()).get(), p.get()),
                mul(num_y.get(), inv(den_y.get(), p.get()).get(), p.get())};
    }
    point multiply(const BIGNUM* k, const point& a) const {
        point r{make_bn(), make_bn()};
        check(BN_one(r.y.get()));  // the neutral element (0, 1)
        for (int i = BN_num_bits(k) - 1; i >= 0; --i) {
            r = add(r, r);
            if (BN_is_bit_set(k, i)) r = add(r, a);
        }
        return r;
    }
    bool on_curve(const point& a) const {
        auto xx = mul(a.x.get(), a.x.get(), p.get());
        auto yy = mul(a.y.get(), a.y.get(), p.get());
        auto lhs = make_bn(), rhs = make_bn(), one = make_bn();
        check(BN_one(one.get()));
        check(BN_mod_sub(lhs.get(), yy.get(), xx.get(), p.get(), ctx.get()));
        auto dxy = mul(d.get(), mul(xx.get(), yy.get(), p.get()).get(), p.get());
        check(BN_mod_add(rhs.get(), one.get(), dxy.get(), p.get(), ctx.get()));
        return BN_cmp(lhs.get(), rhs.get()) == 0;
    }
    // libgcrypt's Ed25519 public key q: 32 bytes (EdDSA encoding: y little-endian,
    // x's low bit in the top bit), or 0x40 + those 32, or 0x04 + x + y big-endian.
    std::optional<point> decode(std::string_view q) const {
        if (q.size() == 33 && static_cast<unsigned char>(q[0]) == 0x40) q.remove_prefix(1);
        if (q.size() == 65 && q[0] == 0x04) {
            point a{bn_bytes(q.substr(1, 32)), bn_bytes(q.substr(33, 32))};
            if (BN_cmp(a.x.get(), p.get()) >= 0 || BN_cmp(a.y.get(), p.get()) >= 0 || !on_curve(a)) return std::nullopt;
            return a;
        }
        if (q.size() != 32) return std::nullopt;
        std::string be(q.rbegin(), q.rend());
        const bool sign = (static_cast<unsigned char>(be[0]) & 0x80) != 0;
        be[0] = static_cast<char>(static_cast<unsigned char>(be[0]) & 0x7f);
        auto y = bn_bytes(be);
        if (BN_cmp(y.get(), p.get()) >= 0) return std::nullopt;
        auto one = make_bn();
        check(BN_one(one.get()));
        auto yy = mul(y.get(), y.get(), p.get());
        auto u = make_bn(), v = make_bn();
        check(BN_mod_sub(u.get(), yy.get(), one.get(), p.get(), ctx.get()));
        check(BN_mod_add(v.get(), mul(d.get(), yy.get(), p.get()).get(), one.get(), p.get(), ctx.get()));
        auto xx = mul(u.get(), inv(v.get(), p.get()).get(), p.get());
        bn x;
        if (BN_is_zero(xx.get())) {
            x = make_bn();
        } else {
            ERR_set_mark();
            x.reset(BN_mod_sqrt(nullptr, xx.get(), p.get(), ctx.get()));
            ERR_pop_to_mark();  // "not a square" is an answer here, not an error to keep
            if (!x) return std::nullopt;
        }
        if (BN_is_zero(x.get()) && sign) return std::nullopt;
        if (BN_is_odd(x.get()) != sign) check(BN_sub(x.get(), p.get(), x.get()));
        point a{std::move(x), std::move(y)};
        if (!on_curve(a)) return std::nullopt;
        return a;
    }
};

// libgcrypt ecc_verify + _gcry_ecc_ecdsa_verify for an Ed25519 key without the
// eddsa flag: e = the hash's leftmost nbits(n) = 253 bits; r, s in [1, n-1];
// X = (e/s) G + (r/s) Q; valid iff X.x mod n == r.
bool ecdsa_ed25519_verify(const sha256_digest& hash, std::string_view r_bytes, std::string_view s_bytes,
                          std::string_view q) {
    edwards25519 c;
    auto key = c.decode(q);
    if (!key) return false;
    auto r = bn_bytes(r_bytes), s = bn_bytes(s_bytes);
    for (const BIGNUM* v : {r.get(), s.get()})
        if (BN_is_zero(v) || BN_is_negative(v) || BN_cmp(v, c.n.get()) >= 0) return false;
    auto e = bn_bytes(std::string_view(reinterpret_cast<const char*>(hash.data()), hash.size()));
    c.check(BN_rshift(e.get(), e.get(), static_cast<int>(hash.size() * 8) - BN_num_bits(c.n.get())));
    auto w = c.inv(s.get(), c.n.get());
    auto u1 = c.mul(e.get(), w.get(), c.n.get());
    auto u2 = c.mul(r.get(), w.get(), c.n.get());
    auto x = c.add(c.multiply(u1.get(), c.g), c.multiply(u2.get(), *key));
    auto v = make_bn();
    c.check(BN_nnmod(v.get(), x.x.get(), c.n.get(), c.ctx.get()));
    return BN_cmp(v.get(), r.get()) == 0;
}

bool has_flag(const sexp* s, std::string_view flag);

// ------------------------------------------------------------------ signing

// libgcrypt prints an MPI atom (%M) as its big-endian bytes, with a leading 0 when
// the top bit is set (so it does not read as negative).
std::string mpi_atom(const BIGNUM* v) {
    std::string bytes(static_cast<std::size_t>(BN_num_bytes(v)), '\0');
    BN_bn2bin(v, reinterpret_cast<unsigned char*>(bytes.data()));
    if (bytes.empty() || (static_cast<unsigned char>(bytes[0]) & 0x80) != 0) bytes.insert(bytes.begin(), '\0');
    return bytes;
}

std::string hex_atom(std::string_view bytes) {
    std::string hex = to_base16(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
    std::transform(hex.begin(), hex.end(), hex.begin(), [](unsigned char c) { return std::toupper(c); });
    return "#" + hex + "#";
}

struct ed25519_secret_key {
    std::string q;  // the public key's atom, as the key file has it
    bn d;
};

// (private-key (ecc (curve Ed25519) (flags rfc6979)? (q #..#) (d #..#))), as
// `guix archive --generate-key` writes signing-key.sec. Messages never quote it.
ed25519_secret_key parse_secret_key(std::string_view text, std::string_view origin, const edwards25519& c) {
    auto bad = [&](std::string_view why) {
        return failure(errc::bad_input,
                       fmt::format("{}: {} (expected a Guix signing key: (private-key (ecc (curve Ed25519) "
                                   "(q ...) (d ...))), as `guix archive --generate-key` makes)",
                                   origin, why));
    };
    sexp key;
    try {
        key = parse_sexp(text, origin);
    } catch (const failure& e) {
        throw bad(fmt::format("not an S-expression ({})", e.what()));
    }
    const sexp* pk = key.atom_at(0) && *key.atom_at(0) == "private-key" ? &key : nullptr;
    const sexp* ecc = pk ? pk->find("ecc") : nullptr;
    const sexp* curve = ecc ? ecc->find("curve") : nullptr;
    const sexp* q = ecc ? ecc->find("q") : nullptr;
    const sexp* d = ecc ? ecc->find("d") : nullptr;
    if (!pk) throw bad("not a (private-key ...)");
    if (!ecc || !curve || !curve->atom_at(1)) throw bad("not an (ecc (curve ...)) key (RSA keys are not supported)");
    if (*curve->atom_at(1) != "Ed25519") throw bad("not on the Ed25519 curve");
    if (has_flag(ecc, "eddsa")) throw bad("an EdDSA-flagged key (Guix's keys are ECDSA on Ed25519)");
    if (!q || !q->atom_at(1) || !d || !d->atom_at(1)) throw bad("no (q ...) or no (d ...)");
    // libgcrypt makes d as X25519 clamps a scalar (bit 254 set, a multiple of 8),
    // so above n: only d mod n matters (G has order n).
    ed25519_secret_key k{*q->atom_at(1), bn_bytes(*d->atom_at(1))};
    c.check(BN_nnmod(k.d.get(), k.d.get(), c.n.get(), c.ctx.get()));
    if (BN_is_zero(k.d.get())) throw bad("d is 0 modulo the group order");
    auto public_point = c.decode(k.q);
    auto derived = c.multiply(k.d.get(), c.g);
    if (!public_point || BN_cmp(public_point->x.get(), derived.x.get()) != 0 ||
        BN_cmp(public_point->y.get(), derived.y.get()) != 0)
        throw bad("its q is not d times the base point");
    return k;
}

// libgcrypt _gcry_ecc_ecdsa_sign with a random k: r = (kG).x mod n,
// s = k^-1 (e + r d) mod n, again while r or s is 0.
std::pair<bn, bn> ecdsa_ed25519_sign(const sha256_digest& hash, const BIGNUM* d, const edwards25519& c) {
    auto e = bn_bytes(std::string_view(reinterpret_cast<const char*>(hash.data()), hash.size()));
    c.check(BN_rshift(e.get(), e.get(), static_cast<int>(hash.size() * 8) - BN_num_bits(c.n.get())));
    for (;;) {
        auto k = make_bn();
        c.check(BN_priv_rand_range(k.get(), c.n.get()));
        if (BN_is_zero(k.get())) continue;
        auto r = make_bn(), s = make_bn();
        c.check(BN_nnmod(r.get(), c.multiply(k.get(), c.g).x.get(), c.n.get(), c.ctx.get()));
        if (BN_is_zero(r.get())) continue;
        c.check(BN_mod_add(s.get(), e.get(), c.mul(r.get(), d, c.n.get()).get(), c.n.get(), c.ctx.get()));
        s = c.mul(c.inv(k.get(), c.n.get()).get(), s.get(), c.n.get());
        if (!BN_is_zero(s.get())) return {std::move(r), std::move(s)};
    }
}

bool has_flag(const sexp* s, std::string_view flag) {
    const sexp* f = s ? s->find("flags") : nullptr;
    if (!f) return false;
    for (std::size_t i = 1; i < f->items.size(); ++i)
        if (const auto* a = f->atom_at(i); a && *a == flag) return true;
    return false;
}

signature_check verdict(signature_status s, std::string detail) { return {s, std::move(detail)}; }

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw failure(errc::bad_input, fmt::format("{}: cannot read", p.string()));
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

sexp parse_sexp(std::string_view text, std::string_view what) { return sexp_reader(text, what).read_top(); }

// ------------------------------------------------------------------------ ACL

guix_acl parse_guix_acl(std::string_view text, std::string_view file) {
    sexp s = parse_sexp(text, file);
    auto bad = [&](std::string_view why) {
        return failure(errc::bad_input,
                       fmt::format("{}: invalid access-control list: {} (expected (acl (entry (public-key ...) "
                                   "(tag (guix import))) ...))",
                                   file, why));
    };
    const std::string* head = s.atom_at(0);
    if (!head || *head != "acl") throw bad("it does not start with 'acl'");
    guix_acl acl;
    acl.origin = std::string(file);
    for (std::size_t i = 1; i < s.items.size(); ++i) {
        const sexp& e = s.items[i];
        // pki.scm matches ('entry subject ('tag ('guix 'import))) for EVERY entry.
        const std::string* eh = e.atom_at(0);
        if (!eh || *eh != "entry" || e.items.size() != 3) throw bad(fmt::format("entry {} is not (entry KEY TAG)", i));
        const sexp& tag = e.items[2];
        const bool import_tag = tag.atom_at(0) && *tag.atom_at(0) == "tag" && tag.items.size() == 2 &&
                                tag.items[1].is_list && tag.items[1].items.size() == 2 &&
                                tag.items[1].atom_at(0) && *tag.items[1].atom_at(0) == "guix" &&
                                tag.items[1].atom_at(1) && *tag.items[1].atom_at(1) == "import";
        if (!import_tag) throw bad(fmt::format("entry {} is not tagged (tag (guix import))", i));
        acl.keys.push_back(e.items[1]);
    }
    return acl;
}

guix_acl load_guix_acl(const std::filesystem::path& config_dir) {
    std::error_code ec;
    const auto file = config_dir / "acl";
    if (std::filesystem::exists(file, ec)) return parse_guix_acl(read_file(file), file.string());
    // guix's ensure-acl: without an acl file, the machine's own public key.
    const auto own = config_dir / "signing-key.pub";
    guix_acl acl;
    if (std::filesystem::exists(own, ec)) {
        acl.keys.push_back(parse_sexp(read_file(own), own.string()));
        acl.origin = own.string();
    }
    return acl;
}

// -------------------------------------------------------------- verification

std::string_view to_string(signature_status s) {
    switch (s) {
    case signature_status::valid: return "valid signature";
    case signature_status::corrupt: return "corrupt signature";
    case signature_status::unauthorized_key: return "unauthorized public key";
    case signature_status::hash_mismatch: return "signed hash does not match the item";
    case signature_status::invalid: return "invalid signature";
    case signature_status::unsupported: return "unsupported signature";
    }
    return "?";
}

signature_check check_guix_signature(std::string_view signature, const sha256_digest& hash, const guix_acl& acl) {
    sexp sig;
    try {
        sig = parse_sexp(signature, "signature");
    } catch (const failure& e) {
        return verdict(signature_status::corrupt, e.what());
    }
    const sexp* data = sig.find("data");
    const sexp* key = sig.find("public-key");
    if (!data || !key) return verdict(signature_status::corrupt, "no (data ...) or no (public-key ...)");
    if (std::find(acl.keys.begin(), acl.keys.end(), *key) == acl.keys.end())
        return verdict(signature_status::unauthorized_key,
                       acl.origin.empty() ? std::string("the ACL is empty") : "the key is not in " + acl.origin);
    const sexp* h = data->find("hash");
    const std::string* algo = h ? h->atom_at(1) : nullptr;
    const std::string* value = h ? h->atom_at(2) : nullptr;
    if (!algo || !value) return verdict(signature_status::corrupt, "no (hash ALGO VALUE) in (data ...)");
    if (*value != std::string_view(reinterpret_cast<const char*>(hash.data()), hash.size()))
        return verdict(signature_status::hash_mismatch,
                       fmt::format("signed {}, item {}", to_base16(reinterpret_cast<const unsigned char*>(value->data()),
                                                                   value->size()),
                                   to_base16(hash)));
    if (*algo != "sha256") return verdict(signature_status::unsupported, "hash algorithm " + *algo);
    const sexp* ecc = key->find("ecc");
    const sexp* curve = ecc ? ecc->find("curve") : nullptr;
    const sexp* q = ecc ? ecc->find("q") : nullptr;
    if (!ecc || !curve || !q || !curve->atom_at(1) || !q->atom_at(1))
        return verdict(signature_status::unsupported, "not an (ecc (curve ...) (q ...)) key (RSA keys are not supported)");
    if (*curve->atom_at(1) != "Ed25519") return verdict(signature_status::unsupported, "curve " + *curve->atom_at(1));
    if (has_flag(key, "eddsa") || has_flag(data, "eddsa"))
        return verdict(signature_status::unsupported, "EdDSA-flagged keys (Guix's keys are ECDSA on Ed25519)");
    const sexp* sv = sig.find("sig-val");
    const sexp* ecdsa = sv ? sv->find("ecdsa") : nullptr;
    const sexp* r = ecdsa ? ecdsa->find("r") : nullptr;
    const sexp* s = ecdsa ? ecdsa->find("s") : nullptr;
    if (!sv) return verdict(signature_status::corrupt, "no (sig-val ...)");
    if (!r || !s || !r->atom_at(1) || !s->atom_at(1))
        return verdict(signature_status::unsupported, "not a (sig-val (ecdsa (r ...) (s ...)))");
    if (!ecdsa_ed25519_verify(hash, *r->atom_at(1), *s->atom_at(1), *q->atom_at(1)))
        return verdict(signature_status::invalid, "ECDSA/Ed25519 verification failed");
    return verdict(signature_status::valid, "");
}

// ------------------------------------------------------------------ signing

std::string sign_guix_hash(const sha256_digest& hash, std::string_view secret_key_text, std::string_view origin) {
    edwards25519 c;
    auto key = parse_secret_key(secret_key_text, origin, c);
    auto [r, s] = ecdsa_ed25519_sign(hash, key.d.get(), c);
    const std::string_view h(reinterpret_cast<const char*>(hash.data()), hash.size());
    return fmt::format("(signature (data (flags rfc6979) (hash sha256 {})) (sig-val (ecdsa (r {}) (s {}))) "
                       "(public-key (ecc (curve Ed25519) (q {}))))",
                       hex_atom(h), hex_atom(mpi_atom(r.get())), hex_atom(mpi_atom(s.get())), hex_atom(key.q));
}

std::string guix_signed_export_item(std::string_view nar, protocol::export_bundle::item_trailer trailer,
                                    std::string_view secret_key_text, std::string_view origin) {
    sha256 h;
    h.update(nar);
    h.update(guix_signed_trailer(trailer));
    trailer.signature = sign_guix_hash(h.finish(), secret_key_text, origin);
    std::string out;
    protocol::export_bundle::append_item_begin(out);
    out.append(nar);
    protocol::export_bundle::append_item_trailer(out, trailer);
    return out;
}

// ------------------------------------------------------------------- filter

std::string guix_signed_trailer(const protocol::export_bundle::item_trailer& t) {
    std::string out;
    protocol::wire::append_u64(out, protocol::export_bundle::export_magic);
    protocol::wire::append_string(out, t.path);
    protocol::wire::append_strings(out, t.references);
    protocol::wire::append_string(out, t.deriver);
    return out;
}

guix_signed_bundle_filter::guix_signed_bundle_filter(const guix_acl& acl, sink next, std::string origin)
    : acl_(acl), next_(std::move(next)), origin_(std::move(origin)) {}

void guix_signed_bundle_filter::feed(std::string_view bytes) {
    using protocol::export_bundle::event_type;
    while (!bytes.empty()) {
        auto st = parser_.next(bytes);
        std::string_view part = bytes.substr(0, st.consumed);
        bytes.remove_prefix(st.consumed);
        const bool item_end = st.ev && st.ev->type == event_type::item_end;
        if (!st.nar_bytes.empty()) {
            // An item's bytes: flag, NAR, trailer. The NAR is a contiguous part of
            // this step; what precedes it passes, what follows it is trailer.
            const auto before = static_cast<std::size_t>(st.nar_bytes.data() - part.data());
            next_(part.substr(0, before + st.nar_bytes.size()));
            hash_.update(st.nar_bytes);
            held_.append(part.substr(before + st.nar_bytes.size()));
            in_trailer_ = true;
        } else if (in_trailer_ || item_end) {
            held_.append(part);  // trailer bytes wait for the verdict
        } else {
            next_(part);  // item flags and the final 0
        }
        if (item_end) verify_and_pass(*st.ev->trailer);
        if (st.consumed == 0 && !st.ev) break;
    }
}

void guix_signed_bundle_filter::verify_and_pass(const protocol::export_bundle::item_trailer& t) {
    hash_.update(guix_signed_trailer(t));
    const auto digest = hash_.finish();
    if (!t.signature)
        throw failure(errc::bad_input,
                      fmt::format("{}: item '{}' lacks a signature (guix-daemon imports only signed items)", origin_,
                                  t.path));
    auto check = check_guix_signature(*t.signature, digest, acl_);
    if (check.status != signature_status::valid)
        throw failure(errc::bad_input,
                      fmt::format("{}: item '{}': {}: {}", origin_, t.path, to_string(check.status), check.detail));
    ++verified_;
    next_(held_);
    held_.clear();
    in_trailer_ = false;
}

void guix_signed_bundle_filter::finish() {
    parser_.finish();
    if (!held_.empty()) throw failure(errc::truncated, fmt::format("{}: the bundle ended inside an item", origin_));
}

}  // namespace ferry::store
