#include "ferry/store/guix_signature.hpp"

#include <openssl/bn.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <memory>
#include <utility>

#include <fmt/core.h>

#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"
#include "ed25519_ecdsa.hpp"

namespace ferry::store {

namespace {

using ed25519::bn;
using ed25519::bn_bytes;
using ed25519::edwards25519;

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
    if (!ed25519::ecdsa_verify(hash, *r->atom_at(1), *s->atom_at(1), *q->atom_at(1)))
        return verdict(signature_status::invalid, "ECDSA/Ed25519 verification failed");
    return verdict(signature_status::valid, "");
}

// ------------------------------------------------------------------ signing

std::string sign_guix_hash(const sha256_digest& hash, std::string_view secret_key_text, std::string_view origin) {
    edwards25519 c;
    auto key = parse_secret_key(secret_key_text, origin, c);
    auto [r, s] = ed25519::ecdsa_sign(hash, key.d.get(), c);
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
