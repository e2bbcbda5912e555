#include "ed25519_ecdsa.hpp"

namespace ferry::store::ed25519 {

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

// libgcrypt ecc_verify + _gcry_ecc_ecdsa_verify for an Ed25519 key without the
// eddsa flag: e = the hash's leftmost nbits(n) = 253 bits; r, s in [1, n-1];
// X = (e/s) G + (r/s) Q; valid iff X.x mod n == r.
bool ecdsa_verify(const sha256_digest& hash, std::string_view r_bytes, std::string_view s_bytes, std::string_view q) {
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

// libgcrypt _gcry_ecc_ecdsa_sign with a random k: r = (kG).x mod n,
// s = k^-1 (e + r d) mod n, again while r or s is 0.
std::pair<bn, bn> ecdsa_sign(const sha256_digest& hash, const BIGNUM* d, const edwards25519& c) {
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

}  // namespace ferry::store::ed25519
