// TEST SHIM: signs export bundles as a Guix build machine's daemon does, so the
// Guix offload test's remote `guix archive --export` (itself a shim over
// nix-store --export, which writes unsigned items) hands ferry signed items.
// It signs with libgcrypt, the library `guix authenticate` uses, with a key made
// as `guix archive --generate-key` makes it — so ferry's verifier
// (store/guix_signature.hpp) is checked against the real signer, not itself.
//
//   ferry-test-guix-sign keygen DIR           writes DIR/signing-key.{sec,pub}
//   ferry-test-guix-sign export SEC PUB       stdin bundle -> stdout, each item signed
//   ferry-test-guix-sign verify PUB HASHHEX SIGFILE
//                                             exit 0 iff gcry_pk_verify accepts the
//                                             signature text in SIGFILE for the SHA-256
//                                             HASHHEX, made by the key PUB (as guix/pki.scm
//                                             checks: key, hash, then the signature)
//   ferry-test-guix-sign import-verify PUB    stdin bundle -> stdout unchanged, only if
//                                             EVERY item is signed by PUB (a remote
//                                             `guix archive --import` whose ACL is PUB);
//                                             else nothing is written, exit 1
#include <gcrypt.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "ferry/protocol/export_bundle.hpp"
#include "ferry/store/guix_signature.hpp"
#include "ferry/store/hash.hpp"

namespace bundle = ferry::protocol::export_bundle;

namespace {

struct sexp_ptr {
    gcry_sexp_t p = nullptr;
    ~sexp_ptr() { gcry_sexp_release(p); }
};

void check(gcry_error_t err, const char* what) {
    if (err) throw std::runtime_error(std::string(what) + ": " + gcry_strerror(err));
}

sexp_ptr parse(const std::string& text) {
    sexp_ptr s;
    check(gcry_sexp_new(&s.p, text.data(), text.size(), 1), "gcry_sexp_new");
    return s;
}

std::string print(gcry_sexp_t s) {
    std::string out(gcry_sexp_sprint(s, GCRYSEXP_FMT_ADVANCED, nullptr, 0), '\0');
    gcry_sexp_sprint(s, GCRYSEXP_FMT_ADVANCED, out.data(), out.size());
    while (!out.empty() && (out.back() == '\0' || out.back() == '\n')) out.pop_back();
    return out;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    return {std::istreambuf_iterator<char>(in), {}};
}

void keygen(const std::string& dir) {
    sexp_ptr params = parse("(genkey (ecdsa (curve Ed25519) (flags rfc6979)))"), key;
    check(gcry_pk_genkey(&key.p, params.p), "gcry_pk_genkey");
    sexp_ptr pub{gcry_sexp_find_token(key.p, "public-key", 0)}, sec{gcry_sexp_find_token(key.p, "private-key", 0)};
    std::ofstream(dir + "/signing-key.pub") << print(pub.p) << "\n";
    std::ofstream(dir + "/signing-key.sec") << print(sec.p) << "\n";
}

// guix/pki.scm signature-sexp: (signature DATA SIG-VAL PUBLIC-KEY).
std::string sign(const ferry::store::sha256_digest& hash, gcry_sexp_t secret, const std::string& public_key) {
    sexp_ptr data = parse("(data (flags rfc6979) (hash sha256 #" + ferry::store::to_base16(hash) + "#))"), sig;
    check(gcry_pk_sign(&sig.p, data.p, secret), "gcry_pk_sign");
    sexp_ptr whole = parse("(signature " + print(data.p) + " " + print(sig.p) + " " + public_key + ")");
    return print(whole.p);
}

void sign_export(const std::string& secret_file, const std::string& public_file) {
    sexp_ptr secret = parse(read_file(secret_file));
    const std::string public_key = read_file(public_file);
    bundle::parser parser;
    ferry::store::sha256 hash;
    std::string out, in(1 << 16, '\0');
    auto flush = [&] {
        std::fwrite(out.data(), 1, out.size(), stdout);
        out.clear();
    };
    while (!parser.done()) {
        const auto n = std::fread(in.data(), 1, in.size(), stdin);
        if (n == 0) break;
        std::string_view chunk(in.data(), n);
        while (!chunk.empty()) {
            auto st = parser.next(chunk);
            chunk.remove_prefix(st.consumed);
            hash.update(st.nar_bytes);
            out.append(st.nar_bytes);
            if (st.consumed == 0 && !st.ev) break;
            if (!st.ev) continue;
            if (st.ev->type == bundle::event_type::item_begin) bundle::append_item_begin(out);
            if (st.ev->type == bundle::event_type::item_end) {
                auto t = *st.ev->trailer;
                hash.update(ferry::store::guix_signed_trailer(t));
                t.signature = sign(hash.finish(), secret.p, public_key);
                bundle::append_item_trailer(out, t);
            }
            if (st.ev->type == bundle::event_type::end) bundle::append_end(out);
        }
        flush();
    }
    parser.finish();
    std::fflush(stdout);
}

std::string canonical(gcry_sexp_t s) {
    std::string out(gcry_sexp_sprint(s, GCRYSEXP_FMT_CANON, nullptr, 0), '\0');
    out.resize(gcry_sexp_sprint(s, GCRYSEXP_FMT_CANON, out.data(), out.size()));
    return out;
}

// Empty when valid, else why not.
std::string verify(const std::string& public_key, const ferry::store::sha256_digest& hash,
                   const std::string& signature) {
    sexp_ptr pub = parse(public_key), sig;
    if (gcry_sexp_new(&sig.p, signature.data(), signature.size(), 1)) return "corrupt signature";
    sexp_ptr data{gcry_sexp_find_token(sig.p, "data", 0)}, sig_val{gcry_sexp_find_token(sig.p, "sig-val", 0)},
        key{gcry_sexp_find_token(sig.p, "public-key", 0)};
    if (!data.p || !sig_val.p || !key.p) return "corrupt signature";
    if (canonical(key.p) != canonical(pub.p)) return "unauthorized public key";
    sexp_ptr h{gcry_sexp_find_token(data.p, "hash", 0)};
    std::size_t n = 0;
    const char* value = h.p ? gcry_sexp_nth_data(h.p, 2, &n) : nullptr;
    if (!value || std::string(value, n) != std::string(reinterpret_cast<const char*>(hash.data()), hash.size()))
        return "signed hash does not match";
    if (gcry_error_t err = gcry_pk_verify(sig_val.p, data.p, pub.p))
        return std::string("gcry_pk_verify: ") + gcry_strerror(err);
    return {};
}

int verify_file(const std::string& public_file, const std::string& hash_hex, const std::string& signature_file) {
    auto hash = ferry::store::parse_sha256(hash_hex);
    if (!hash) throw std::runtime_error("not a SHA-256 in hex: " + hash_hex);
    std::string why = verify(read_file(public_file), *hash, read_file(signature_file));
    if (why.empty()) return 0;
    std::cerr << "ferry-test-guix-sign (TEST SHIM): " << why << "\n";
    return 1;
}

int import_verify(const std::string& public_file) {
    const std::string public_key = read_file(public_file);
    const std::string input{std::istreambuf_iterator<char>(std::cin), {}};
    bundle::parser parser;
    ferry::store::sha256 hash;
    std::string_view rest = input;
    while (!parser.done()) {
        auto st = parser.next(rest);
        rest.remove_prefix(st.consumed);
        hash.update(st.nar_bytes);
        if (st.consumed == 0 && !st.ev) break;
        if (!st.ev || st.ev->type != bundle::event_type::item_end) continue;
        const auto& t = *st.ev->trailer;
        hash.update(ferry::store::guix_signed_trailer(t));
        std::string why = t.signature ? verify(public_key, hash.finish(), *t.signature) : "not signed";
        if (!why.empty()) {
            std::cerr << "guix archive: error: TEST SHIM: " << t.path << ": " << why << "\n";
            return 1;
        }
    }
    parser.finish();
    std::fwrite(input.data(), 1, input.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) try {
    gcry_check_version(nullptr);
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "keygen" && argc == 3) {
        keygen(argv[2]);
    } else if (cmd == "export" && argc == 4) {
        sign_export(argv[2], argv[3]);
    } else if (cmd == "verify" && argc == 5) {
        return verify_file(argv[2], argv[3], argv[4]);
    } else if (cmd == "import-verify" && argc == 3) {
        return import_verify(argv[2]);
    } else {
        std::cerr << "usage: ferry-test-guix-sign keygen DIR | export SECRET PUBLIC | verify PUBLIC HASHHEX "
                     "SIGFILE | import-verify PUBLIC\n";
        return 2;
    }
    return 0;
} catch (const std::exception& e) {
    std::cerr << "ferry-test-guix-sign (TEST SHIM): " << e.what() << "\n";
    return 1;
}
