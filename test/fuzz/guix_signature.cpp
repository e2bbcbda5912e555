// libFuzzer target: what a Guix build machine sends ferry about signatures — the
// signature text of an exported item (libgcrypt S-expressions in any syntax) and
// whole signed export bundles through guix_signed_bundle_filter. Byte 0 picks the
// mode (even: one signature text; odd: a bundle) and, in bundle mode, the feed
// chunk size. Invariants: only ferry::failure escapes; a lone signature text is
// never "valid" (it would have to sign its own hash); the filter passes on no
// more than it was fed. The bundle seeds carry libgcrypt's genuine signature of
// the ACL's key, so mutations start from the path that verifies.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "ferry/store/guix_signature.hpp"
#include "ferry/util/error.hpp"

namespace {

// A key made by libgcrypt (test/store/guix_signature_test.cpp).
const ferry::store::guix_acl& acl() {
    static const auto a = ferry::store::parse_guix_acl(
        "(acl (entry (public-key (ecc (curve Ed25519) "
        "(q #BEA7C091AE9F9D0FD0AC415511730797290885A33BC0210DD20AA2233BB49A93#))) (tag (guix import))))",
        "fuzz-acl");
    return a;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    if (data[0] % 2 == 0) {
        try {
            auto check = ferry::store::check_guix_signature(input, ferry::store::sha256_of(input), acl());
            if (check.status == ferry::store::signature_status::valid) std::abort();
        } catch (...) {
            std::abort();  // check_guix_signature reports, it does not throw
        }
        try {
            (void)ferry::store::parse_sexp(input, "fuzz");
        } catch (const ferry::failure&) {
        }
        return 0;
    }
    const std::size_t chunk = std::size_t{1} << ((data[0] >> 1) & 0x0f);
    std::size_t passed = 0;
    ferry::store::guix_signed_bundle_filter filter(acl(), [&](std::string_view b) { passed += b.size(); }, "fuzz");
    try {
        for (std::size_t i = 0; i < input.size(); i += chunk) filter.feed(input.substr(i, chunk));
        filter.finish();
    } catch (const ferry::failure&) {
    }
    if (passed > input.size()) std::abort();
    return 0;
}
