// ECDSA over twisted Edwards25519, as libgcrypt does it for Guix's signing keys
// (`(ecdsa (curve Ed25519) (flags rfc6979))`: NOT EdDSA, which OpenSSL's EVP
// Ed25519 implements), with OpenSSL BIGNUM arithmetic. Private to the store
// layer: store/guix_signature.hpp is the interface.
#pragma once

#include <openssl/bn.h>
#include <openssl/err.h>

#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "ferry/store/hash.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store::ed25519 {

struct bn_free {
    void operator()(BIGNUM* b) const { BN_free(b); }
};
struct ctx_free {
    void operator()(BN_CTX* c) const { BN_CTX_free(c); }
};
using bn = std::unique_ptr<BIGNUM, bn_free>;

bn make_bn();
bn bn_dec(const char* s);
bn bn_bytes(std::string_view big_endian);

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

// libgcrypt ecc_verify for an Ed25519 key without the eddsa flag; q is the
// public key's 32-byte point encoding.
bool ecdsa_verify(const sha256_digest& hash, std::string_view r_bytes, std::string_view s_bytes, std::string_view q);

// libgcrypt _gcry_ecc_ecdsa_sign with a random k (d already reduced mod n).
std::pair<bn, bn> ecdsa_sign(const sha256_digest& hash, const BIGNUM* d, const edwards25519& c);

}  // namespace ferry::store::ed25519
