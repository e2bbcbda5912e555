// Guix's signed export items, verified as guix-daemon does before it imports one
// (nix/libstore/local-store.cc importPath -> `guix authenticate` verify ->
// guix/pki.scm validate-signature), without Guix or libgcrypt; and made as
// guix-daemon's exportPath signs them (`guix authenticate` sign with
// signing-key.sec), for `ferry test`'s import into a Guix machine.
//
// What is signed (local-store.cc exportPath): the SHA-256 of the item's bytes
// from the first NAR byte through the deriver string, i.e.
//     NAR  u64(0x4558494e)  str(path)  u64(n) str(ref)*n  str(deriver)
// (not the leading u64(1) of the bundle, not the u64(1) signature flag). The
// signature is the text `guix authenticate` returns: libgcrypt's "advanced"
// rendering of
//     (signature (data (flags rfc6979) (hash sha256 #<32 bytes>#))
//                (sig-val (ecdsa (r #..#) (s #..#)))
//                (public-key (ecc (curve Ed25519) (q #<32 bytes>#))))
// Guix's keys (guix archive --generate-key: "(genkey (ecdsa (curve Ed25519)
// (flags rfc6979)))") are ECDSA keys on the Ed25519 curve — NOT EdDSA: libgcrypt
// signs with ECDSA over twisted Edwards25519, the public key in EdDSA's 32-byte
// point encoding, the hash truncated to the order's 253 bits. OpenSSL's EVP
// Ed25519 (RFC 8032 PureEdDSA) cannot check these, so the verification is done
// here with OpenSSL BIGNUM arithmetic (u1*G + u2*Q on the curve, x mod n == r).
// Other key types (RSA of pre-2014 Guix, eddsa-flagged keys) are refused as
// unsupported.
//
// The checks, in pki.scm's %signature-status order: the signature parses and has
// data and public-key (else corrupt); the key is in the ACL (else unauthorized);
// the signed hash equals the item's hash (else mismatch); the ECDSA signature
// verifies (else invalid). The ACL is /etc/guix/acl (GUIX_CONFIGURATION_DIRECTORY):
//     (acl (entry <public-key> (tag (guix import))) ...)
// compared as pki.scm does (canonical-sexp->sexp then equal?: atoms by their
// bytes, whatever their encoding). A missing acl file is, as guix's ensure-acl
// makes it, the machine's own signing-key.pub when that exists, else empty.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/protocol/export_bundle.hpp"
#include "ferry/store/canonical_sexp.hpp"
#include "ferry/store/hash.hpp"

namespace ferry::store {

struct guix_acl {
    std::vector<sexp> keys;  // the (public-key ...) of each entry tagged (guix import)
    std::string origin;      // the file read, for messages ("" = empty ACL)
};
guix_acl parse_guix_acl(std::string_view text, std::string_view file);
guix_acl load_guix_acl(const std::filesystem::path& config_dir);

enum class signature_status { valid, corrupt, unauthorized_key, hash_mismatch, invalid, unsupported };
std::string_view to_string(signature_status s);

struct signature_check {
    signature_status status = signature_status::corrupt;
    std::string detail;  // why, for messages
};

// `hash` is the item's SHA-256 (see above).
signature_check check_guix_signature(std::string_view signature, const sha256_digest& hash, const guix_acl& acl);

// The bytes guix signs after the NAR: u64 magic, path, references, deriver.
std::string guix_signed_trailer(const protocol::export_bundle::item_trailer& t);

// Signs `hash` as `guix authenticate sign` does with signing-key.sec: libgcrypt
// ECDSA on Ed25519 (e = the hash's leftmost 253 bits, a random k), returning
//     (signature (data (flags rfc6979) (hash sha256 #..#))
//                (sig-val (ecdsa (r #..#) (s #..#)))
//                (public-key (ecc (curve Ed25519) (q #..#))))
// with q as the secret key has it (the form check_guix_signature accepts; the
// public key is built from the secret key's q, as libgcrypt renders signing-key.pub).
// `secret_key_text` is (private-key (ecc (curve Ed25519) (flags rfc6979)? (q ..) (d ..))).
// Throws failure(bad_input) "<origin>: <what is wrong> (expected ...)"; messages
// never quote the key.
std::string sign_guix_hash(const sha256_digest& hash, std::string_view secret_key_text,
                           std::string_view origin = "signing key");

// One export-bundle item (u64(1), the NAR, the trailer with flag 1 and the
// signature) signed as guix-daemon's exportPath signs it; `trailer.signature`
// is replaced. Append protocol::export_bundle::append_end after the last item.
std::string guix_signed_export_item(std::string_view nar, protocol::export_bundle::item_trailer trailer,
                                    std::string_view secret_key_text, std::string_view origin = "signing key");

// Sits in front of an importer: feeds it the export bundle, but holds back each
// item's trailer until the item's signature verified, so the importer (which
// registers an item on its trailer's last byte) never registers an item whose
// signature does not verify. feed() throws failure(bad_input) naming the item,
// `origin` and the reason; the importer then removes the half-restored item.
class guix_signed_bundle_filter {
public:
    using sink = std::function<void(std::string_view)>;
    guix_signed_bundle_filter(const guix_acl& acl, sink next, std::string origin);

    void feed(std::string_view bytes);
    void finish();  // throws failure(truncated) unless the bundle ended
    std::size_t verified() const { return verified_; }

private:
    void verify_and_pass(const protocol::export_bundle::item_trailer& t);

    const guix_acl& acl_;
    sink next_;
    std::string origin_;
    protocol::export_bundle::parser parser_;
    sha256 hash_;
    std::string held_;  // trailer bytes not yet passed on
    bool in_trailer_ = false;  // between an item's NAR and its item_end
    std::size_t verified_ = 0;
};

}  // namespace ferry::store
