// Guix signature checks against a vector made by libgcrypt itself
// (test/store/make_guix_signature_vector.py: a key as `guix archive
// --generate-key` makes it, the item's hash signed as guix/pki.scm asks), so a
// pass means ferry agrees with the library guix-daemon trusts, not with itself.
#include <boost/test/unit_test.hpp>

#include <string>
#include <utility>
#include <vector>

#include "ferry/protocol/export_bundle.hpp"
#include "ferry/protocol/nar.hpp"
#include "ferry/store/guix_signature.hpp"
#include "ferry/util/error.hpp"

namespace bundle = ferry::protocol::export_bundle;
using ferry::store::check_guix_signature;
using ferry::store::signature_status;

namespace {

const std::string vector_key =
    "(public-key (ecc (curve Ed25519) "
    "(q #BEA7C091AE9F9D0FD0AC415511730797290885A33BC0210DD20AA2233BB49A93#)))";
const std::string vector_hash = "AEB9CB3B71087AD0B4DA98B49FD71E3F7B2858610634CBA5ACA64144A5123587";
const std::string vector_r = "0DA66266BA28699A6AFE8B1301BBC6B01BA8663F0E53117F8B1022C3A53F405C";
const std::string vector_s = "04FB62C55020A63D2E63E2D801B91ECA3F5F2DB6DB1C5369EA5480EA7A90A287";

std::string signature_text(const std::string& hash = vector_hash, const std::string& r = vector_r,
                           const std::string& s = vector_s, const std::string& key = vector_key) {
    return "(signature (data (flags rfc6979) (hash sha256 #" + hash + "#) ) (sig-val (ecdsa (r #" + r + "#) (s #" + s +
           "#) ) ) " + key + " )";
}

// The item the generator signed: one regular file, one reference, a deriver.
const bundle::item_trailer vector_trailer{"/gnu/store/0123456789abcdfghijklmnpqrsvwxyz-ferry-vector",
                                          {"/gnu/store/zyxwvsrqpnmlkjihgfdcba9876543210-dep"},
                                          "/gnu/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-ferry-vector.drv",
                                          std::nullopt};

std::string vector_nar() { return ferry::protocol::nar::regular_file_nar("hello from guix\n"); }

ferry::store::sha256_digest vector_item_hash() {
    ferry::store::sha256 h;
    h.update(vector_nar());
    h.update(ferry::store::guix_signed_trailer(vector_trailer));
    return h.finish();
}

ferry::store::guix_acl acl_of(const std::string& key) {
    return ferry::store::parse_guix_acl("(acl (entry " + key + " (tag (guix import))))", "test-acl");
}

std::string flip_last_hex_digit(std::string hex) {
    hex.back() = hex.back() == '0' ? '1' : '0';
    return hex;
}

std::string one_item_bundle(const std::string& signature) {
    std::string out;
    bundle::append_item_begin(out);
    out += vector_nar();
    auto t = vector_trailer;
    t.signature = signature;
    bundle::append_item_trailer(out, t);
    bundle::append_end(out);
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(guix_signature)

BOOST_AUTO_TEST_CASE(item_hash_is_what_guix_signs) {
    // The generator hashed the same item in Python: equal digests mean the
    // trailer layout (magic, path, references, deriver) is guix's.
    BOOST_TEST(ferry::store::to_base16(vector_item_hash()) == "aeb9cb3b71087ad0b4da98b49fd71e3f7b2858610634cba5aca64144a5123587");
}

BOOST_AUTO_TEST_CASE(libgcrypt_signature_verifies) {
    auto check = check_guix_signature(signature_text(), vector_item_hash(), acl_of(vector_key));
    BOOST_TEST_INFO(check.detail);
    BOOST_TEST((check.status == signature_status::valid));
}

BOOST_AUTO_TEST_CASE(key_outside_the_acl_is_unauthorized) {
    const std::string other_key =
        "(public-key (ecc (curve Ed25519) "
        "(q #0F383DCD3FF331706124328B9BA6E0AFEDB7DF9C9C1D31F788049DA5EA744612#)))";
    auto check = check_guix_signature(signature_text(), vector_item_hash(), acl_of(other_key));
    BOOST_TEST((check.status == signature_status::unauthorized_key));
    auto empty = check_guix_signature(signature_text(), vector_item_hash(), ferry::store::guix_acl{});
    BOOST_TEST((empty.status == signature_status::unauthorized_key));
}

BOOST_AUTO_TEST_CASE(other_item_is_a_hash_mismatch) {
    auto other = ferry::store::sha256_of("some other item");
    auto check = check_guix_signature(signature_text(), other, acl_of(vector_key));
    BOOST_TEST((check.status == signature_status::hash_mismatch));
}

BOOST_AUTO_TEST_CASE(altered_signature_is_invalid) {
    // The signed hash still matches the item, but r, s or the hash inside the
    // signature no longer fit together.
    const auto acl = acl_of(vector_key);
    const auto hash = vector_item_hash();
    for (const auto& text : {signature_text(vector_hash, flip_last_hex_digit(vector_r)),
                             signature_text(vector_hash, vector_r, flip_last_hex_digit(vector_s)),
                             signature_text(vector_hash, vector_s, vector_r)}) {
        auto check = check_guix_signature(text, hash, acl);
        BOOST_TEST_INFO(text);
        BOOST_TEST((check.status == signature_status::invalid));
    }
}

BOOST_AUTO_TEST_CASE(garbage_is_corrupt_and_rsa_unsupported) {
    const auto acl = acl_of(vector_key);
    const auto hash = vector_item_hash();
    for (const std::string text : {"", "(signature", "not a sexp", "(signature (sig-val (ecdsa (r #00#) (s #00#))))"}) {
        BOOST_TEST_INFO(text);
        BOOST_TEST((check_guix_signature(text, hash, acl).status == signature_status::corrupt));
    }
    const std::string rsa_key = "(public-key (rsa (n #00C3#) (e #010001#)))";
    auto rsa = check_guix_signature(
        "(signature (data (flags pkcs1) (hash sha256 #" + vector_hash + "#)) (sig-val (rsa (s #0102#))) " + rsa_key + ")",
        hash, acl_of(rsa_key));
    BOOST_TEST((rsa.status == signature_status::unsupported));
}

BOOST_AUTO_TEST_CASE(sexp_syntaxes_parse_to_the_same_atoms) {
    // canonical, token, quoted string, hex and base64 spellings of "data"
    auto a = ferry::store::parse_sexp("(4:data)", "t");
    auto b = ferry::store::parse_sexp("(data)", "t");
    auto c = ferry::store::parse_sexp("( \"data\" )", "t");
    auto d = ferry::store::parse_sexp("(#64617461#)", "t");
    auto e = ferry::store::parse_sexp("(|ZGF0YQ==|)", "t");
    BOOST_TEST((a == b && b == c && c == d && d == e));
    BOOST_CHECK_THROW(ferry::store::parse_sexp("(data", "t"), ferry::failure);
    BOOST_CHECK_THROW(ferry::store::parse_sexp("(data))", "t"), ferry::failure);
    BOOST_CHECK_THROW(ferry::store::parse_sexp(std::string(100, '(') + std::string(100, ')'), "t"), ferry::failure);
}

BOOST_AUTO_TEST_CASE(filter_passes_a_signed_item_whole) {
    const auto acl = acl_of(vector_key);
    std::string passed;
    ferry::store::guix_signed_bundle_filter filter(acl, [&](std::string_view b) { passed += b; }, "test bundle");
    const auto bytes = one_item_bundle(signature_text());
    // Byte by byte: the held-back trailer must survive any chunking.
    for (char c : bytes) filter.feed(std::string_view(&c, 1));
    filter.finish();
    BOOST_TEST(filter.verified() == 1u);
    BOOST_TEST(passed == bytes);
}

BOOST_AUTO_TEST_CASE(filter_holds_back_the_trailer_of_a_bad_item) {
    const auto acl = acl_of(vector_key);
    std::string passed;
    ferry::store::guix_signed_bundle_filter filter(acl, [&](std::string_view b) { passed += b; }, "test bundle");
    const auto bytes = one_item_bundle(signature_text(vector_hash, flip_last_hex_digit(vector_r)));
    try {
        filter.feed(bytes);
        BOOST_FAIL("a bad signature was accepted");
    } catch (const ferry::failure& e) {
        const std::string what = e.what();
        BOOST_TEST_INFO(what);
        BOOST_TEST(what.find("test bundle") != std::string::npos);
        BOOST_TEST(what.find("ferry-vector") != std::string::npos);
        BOOST_TEST(what.find("invalid signature") != std::string::npos);
    }
    // The importer registers on the trailer's last byte: it must never have seen it.
    BOOST_TEST(passed.size() < bytes.size() - 8);
    BOOST_TEST(passed.find("ferry-vector") == std::string::npos);
    BOOST_TEST(filter.verified() == 0u);
}

// --- signing (ferry signs the items `ferry test` sends to a Guix machine) -----
// A key as libgcrypt renders `guix archive --generate-key`'s: d a plain scalar,
// q = dG in EdDSA's encoding with libgcrypt's 0x40 prefix. (Made in Python from
// d = SHA-256("ferry test key") mod n; test_guix checks ferry's signatures with
// libgcrypt itself.)
const std::string test_d = "00F7A9BC3C4033C925B3CEFA5EBBA81E77CA7DF06D8375E37FA37432A1E0B8CB";
const std::string test_q = "40A1309D2ABEFD95B7DEE7E55455777EFA73182EB519E3EEC9F872901999076730";
const std::string test_secret =
    "(private-key (ecc (curve Ed25519) (flags rfc6979) (q #" + test_q + "#) (d #" + test_d + "#)))\n";
const std::string test_public = "(public-key (ecc (curve Ed25519) (q #" + test_q + "#)))";

BOOST_AUTO_TEST_CASE(ferry_signature_verifies_and_fits_only_its_hash) {
    const auto hash = vector_item_hash();
    const auto sig = ferry::store::sign_guix_hash(hash, test_secret);
    BOOST_TEST_INFO(sig);
    auto check = check_guix_signature(sig, hash, acl_of(test_public));
    BOOST_TEST_INFO(check.detail);
    BOOST_TEST((check.status == signature_status::valid));
    BOOST_TEST(sig.find("(data (flags rfc6979) (hash sha256 #" + vector_hash + "#))") != std::string::npos);
    BOOST_TEST(sig.find(test_d) == std::string::npos);  // the secret never leaves
    // A fresh k each time: another signature of the same hash, also valid.
    const auto again = ferry::store::sign_guix_hash(hash, test_secret);
    BOOST_TEST(again != sig);
    BOOST_TEST((check_guix_signature(again, hash, acl_of(test_public)).status == signature_status::valid));
    // Another item's hash: mismatch; the signature text rewritten to claim it: invalid.
    auto other = ferry::store::sha256_of("some other item");
    BOOST_TEST((check_guix_signature(sig, other, acl_of(test_public)).status == signature_status::hash_mismatch));
    std::string forged = sig;
    forged.replace(forged.find(vector_hash), vector_hash.size(), ferry::store::to_base16(other));
    BOOST_TEST((check_guix_signature(forged, other, acl_of(test_public)).status == signature_status::invalid));
    // libgcrypt's d is clamped like an X25519 scalar, above n: d + 4n is the same key.
    const std::string big_d = "40F7A9BC3C4033C925B3CEFA5EBBA81ECB46656AF961E93CDFED009C15B8087F";
    const auto big = ferry::store::sign_guix_hash(
        hash, "(private-key (ecc (curve Ed25519) (q #" + test_q + "#) (d #" + big_d + "#)))");
    BOOST_TEST((check_guix_signature(big, hash, acl_of(test_public)).status == signature_status::valid));
    // Another machine's ACL: unauthorized.
    BOOST_TEST((check_guix_signature(sig, hash, acl_of(vector_key)).status == signature_status::unauthorized_key));
}

BOOST_AUTO_TEST_CASE(signed_export_item_passes_the_filter) {
    std::string bytes = ferry::store::guix_signed_export_item(vector_nar(), vector_trailer, test_secret);
    bundle::append_end(bytes);
    const auto acl = acl_of(test_public);
    std::string passed;
    ferry::store::guix_signed_bundle_filter filter(acl, [&](std::string_view b) { passed += b; }, "test bundle");
    filter.feed(bytes);
    filter.finish();
    BOOST_TEST(filter.verified() == 1u);
    BOOST_TEST(passed == bytes);
}

BOOST_AUTO_TEST_CASE(bad_secret_keys_are_named_not_quoted) {
    const auto hash = vector_item_hash();
    const std::string wrong_q = "(private-key (ecc (curve Ed25519) (q #" + vector_key.substr(vector_key.find('#') + 1, 64) +
                                "#) (d #" + test_d + "#)))";
    const std::vector<std::pair<std::string, std::string>> cases{
        {"", "not an S-expression"},
        {"(private-key (ecc (curve Ed25519) (q #" + test_q + "#) (d #" + test_d + "#)", "not an S-expression"},
        {test_public, "not a (private-key"},
        {"(private-key (rsa (n #00C3#) (e #010001#) (d #" + test_d + "#)))", "RSA keys are not supported"},
        {"(private-key (ecc (curve NIST P-256) (q #04#) (d #" + test_d + "#)))", "not on the Ed25519 curve"},
        {"(private-key (ecc (curve Ed25519) (flags eddsa) (q #" + test_q + "#) (d #" + test_d + "#)))", "EdDSA"},
        {"(private-key (ecc (curve Ed25519) (q #" + test_q + "#)))", "no (d ...)"},
        {"(private-key (ecc (curve Ed25519) (q #" + test_q + "#) (d #00#)))", "d is 0 modulo the group order"},
        {wrong_q, "q is not d times the base point"},
    };
    for (const auto& [text, expected] : cases) {
        try {
            ferry::store::sign_guix_hash(hash, text, "/etc/guix/signing-key.sec");
            BOOST_ERROR("accepted: " << expected);
        } catch (const ferry::failure& e) {
            const std::string what = e.what();
            BOOST_TEST_INFO(what);
            BOOST_TEST(what.starts_with("/etc/guix/signing-key.sec: "));
            BOOST_TEST(what.find(expected) != std::string::npos);
            BOOST_TEST(what.find(test_d) == std::string::npos);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
