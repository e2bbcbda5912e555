// ferry's own Guix signatures, checked by libgcrypt (the library `guix
// authenticate` verifies with), and `ferry test` against a Guix machine on a real
// sshd test host. The machine's `guix` is a TEST SHIM on top of Nix 2.8's
// nix-store whose `archive --import` first verifies every item's signature with
// libgcrypt (ferry-test-guix-sign import-verify) against the machine's "ACL" (the
// local key's .pub), as a real `guix archive --import` refuses items not signed by
// a key of its ACL; so a pass proves the machine accepted ferry's signature.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/hosts/test_host.hpp"
#include "ferry/io/child_process.hpp"
#include "ferry/store/guix_signature.hpp"
#include "ferry/store/hash.hpp"
#include "guix/daemon_play.hpp"

namespace fs = std::filesystem;
using namespace guix_test;
using namespace ferry::hosts;

namespace {

const fs::path signer = fs::path(FERRY_BINARY_DIR) / "ferry-test-guix-sign";

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void keygen(const fs::path& dir) {
    fs::create_directories(dir);
    BOOST_TEST_REQUIRE(std::system((signer.string() + " keygen " + dir.string()).c_str()) == 0);
}

// Exit status of `ferry-test-guix-sign verify PUB HASH SIGFILE`.
int libgcrypt_verify(const fs::path& pub, const std::string& hash_hex, const std::string& signature,
                     const fs::path& dir) {
    std::ofstream(dir / "sig") << signature;
    auto cmd = fmt::format("{} verify {} {} {} 2>/dev/null", signer.string(), pub.string(), hash_hex,
                           (dir / "sig").string());
    int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void write_exec(const fs::path& p, const std::string& text) {
    std::ofstream(p) << text;
    ::chmod(p.c_str(), 0755);
}

// TEST SHIM for `guix` on the build machine: what `ferry test` runs there.
std::string remote_shim(const fs::path& acl_pub, const fs::path& keys) {
    return fmt::format(
        "#!/bin/sh\n"
        "# TEST SHIM standing in for `guix` on a build machine, on top of Nix 2.8's nix-store.\n"
        "d=${{0%/*}}\n"
        "case \"$1 $2\" in\n"
        "'--version ') echo 'guix (GNU Guix) TEST SHIM'; exit 0 ;;\n"
        "'archive --missing')\n"
        "  while IFS= read -r p; do /usr/bin/nix-store --check-validity \"$p\" >/dev/null 2>&1 || echo \"$p\"; done\n"
        "  exit 0 ;;\n"
        "# Like guix-daemon's importPath: every item signed by a key of the ACL, or nothing.\n"
        "'archive --import')\n"
        "  t=$(mktemp) || exit 1\n"
        "  {0} import-verify {1} > \"$t\" && /usr/bin/nix-store --import < \"$t\" >/dev/null; s=$?; rm -f \"$t\"\n"
        "  [ $s = 0 ] && echo import-verified >> \"$d/calls\"; exit $s ;;\n"
        "'archive --export') shift 2; /usr/bin/nix-store --export \"$@\" | {0} export {2}/signing-key.sec "
        "{2}/signing-key.pub; exit $? ;;\n"
        "'gc --delete') shift 2; echo deleted >> \"$d/calls\"; exec /usr/bin/nix-store --delete \"$@\" >/dev/null 2>&1 ;;\n"
        "esac\n"
        "echo \"guix: TEST SHIM: unsupported: $*\" >&2; exit 2\n",
        signer.string(), acl_pub.string(), keys.string());
}

struct ferry_run {
    int status = -1;
    std::string out, err;
};

// A Guix machine on a test host; the local side's keys in t/etc (the machine
// authorizes the local key; the local ACL authorizes the machine's key).
struct guix_machine_setup {
    test_host host = test_host::start(temporary_directory("ferry-guix-test-host"), "guixtest");
    temp_dir t;

    guix_machine_setup() {
        const auto etc = t.path / "etc";
        const auto remote_keys = host.directory() / "guix-key";
        keygen(etc);
        keygen(remote_keys);
        // The machine's ACL: the local key as it is now.
        fs::copy_file(etc / "signing-key.pub", host.directory() / "acl.pub");
        write_exec(host.directory() / "guix-shim", remote_shim(host.directory() / "acl.pub", remote_keys));
        std::ofstream(etc / "acl") << "(acl (entry " << slurp(remote_keys / "signing-key.pub")
                                   << " (tag (guix import))))\n";
        std::ofstream(etc / "machines.scm") << fmt::format(
            "(list (build-machine\n"
            "       (name \"127.0.0.1\")\n"
            "       (port {})\n"
            "       (systems (list \"x86_64-linux\"))\n"
            "       (user \"root\")\n"
            "       (private-key \"{}\")\n"
            "       (host-key \"{}\")))\n",
            host.port(), host.client_key().string(), host.host_key_line());
        fs::create_directories(t.path / "state");
        std::ofstream(t.path / "ferry.conf") << fmt::format(
            "state-dir = {}\n[machine 127.0.0.1]\nguix-program = {}\nremote-state-dir = /nix/var/nix\n",
            (t.path / "state").string(), (host.directory() / "guix-shim").string());
    }

    ferry_run ferry_test() {
        std::vector<std::string> argv{"/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root",
                                      "NIX_STORE_DIR=/nix/store", "GUIX_STATE_DIRECTORY=/nix/var/nix",
                                      "GUIX_CONFIGURATION_DIRECTORY=" + (t.path / "etc").string(),
                                      "FERRY_CONFIG=" + (t.path / "ferry.conf").string(), ferry_binary(), "test",
                                      (t.path / "etc/machines.scm").string(), "--timeout", "60"};
        asio::io_context io(1);
        auto fut = asio::co_spawn(io, ferry::io::run_process(argv), asio::use_future);
        io.run();
        auto r = fut.get();
        return {r.status, r.out, r.err};
    }

    std::string remote_calls() const { return slurp(host.directory() / "calls"); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(guix_signing)

BOOST_AUTO_TEST_CASE(libgcrypt_accepts_ferrys_signatures) {
    temp_dir t;
    keygen(t.path);  // as `guix archive --generate-key`, by libgcrypt
    const std::string secret = slurp(t.path / "signing-key.sec");
    const auto pub = t.path / "signing-key.pub";
    // Several, each with a fresh k.
    for (int i = 0; i < 4; ++i) {
        const auto hash = ferry::store::sha256_of("item " + std::to_string(i));
        const std::string hex = ferry::store::to_base16(hash);
        const std::string sig = ferry::store::sign_guix_hash(hash, secret, (t.path / "signing-key.sec").string());
        BOOST_TEST_INFO(sig);
        BOOST_TEST(libgcrypt_verify(pub, hex, sig, t.path) == 0);
        // ferry's verifier agrees, with libgcrypt's .pub in the ACL.
        auto acl = ferry::store::parse_guix_acl("(acl (entry " + slurp(pub) + " (tag (guix import))))", "acl");
        BOOST_TEST((ferry::store::check_guix_signature(sig, hash, acl).status ==
                    ferry::store::signature_status::valid));
        // Another hash: refused by libgcrypt; the signature rewritten to claim it: refused too.
        const std::string other = ferry::store::to_base16(ferry::store::sha256_of("tampered " + std::to_string(i)));
        BOOST_TEST(libgcrypt_verify(pub, other, sig, t.path) != 0);
        std::string forged = sig, upper = hex;
        for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        auto at = forged.find(upper);
        BOOST_TEST_REQUIRE(at != std::string::npos);
        forged.replace(at, hex.size(), other);
        BOOST_TEST(libgcrypt_verify(pub, other, forged, t.path) != 0);
    }
    // Another key: its .pub does not accept the signature.
    keygen(t.path / "other");
    const auto hash = ferry::store::sha256_of("item");
    const std::string sig = ferry::store::sign_guix_hash(hash, secret);
    BOOST_TEST(libgcrypt_verify(t.path / "other/signing-key.pub", ferry::store::to_base16(hash), sig, t.path) != 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(guix_ferry_test)

BOOST_AUTO_TEST_CASE(passes_against_a_guix_machine_that_checks_signatures) {
    guix_machine_setup s;
    auto r = s.ferry_test();
    BOOST_TEST_MESSAGE("ferry test: " << r.out << r.err);
    BOOST_TEST(r.status == 0, r.out << r.err);
    BOOST_TEST(r.out == "✔ 127.0.0.1\n", r.out << r.err);
    // The machine's import verified ferry's signature with libgcrypt, and the
    // item was deleted there afterwards.
    const auto calls = s.remote_calls();
    BOOST_TEST(calls.find("import-verified") != std::string::npos, calls);
    BOOST_TEST(calls.find("deleted") != std::string::npos, calls);
    std::string listing;
    s.host.run("ls /nix/store", &listing);
    BOOST_TEST(listing.find("ferry-test-") == std::string::npos, listing);
}

BOOST_AUTO_TEST_CASE(without_a_signing_key_import_fails_naming_the_file) {
    guix_machine_setup s;
    const auto key = s.t.path / "etc/signing-key.sec";
    fs::remove(key);
    auto r = s.ferry_test();
    BOOST_TEST(r.status == 1, r.out << r.err);
    BOOST_TEST(r.out.starts_with("✗ 127.0.0.1: import: cannot read the local signing key " + key.string()), r.out);
    BOOST_TEST(s.remote_calls().find("import-verified") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_key_the_machine_does_not_authorize_fails_the_import) {
    guix_machine_setup s;
    // The local key replaced by a fresh one the machine's ACL does not hold.
    keygen(s.t.path / "etc");
    auto r = s.ferry_test();
    BOOST_TEST(r.status == 1, r.out << r.err);
    BOOST_TEST(r.out.starts_with("✗ 127.0.0.1: import: "), r.out);
    BOOST_TEST(r.out.find("unauthorized public key") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(outputs_the_local_acl_does_not_authorize_fail_the_export) {
    guix_machine_setup s;
    std::ofstream(s.t.path / "etc/acl") << "(acl)\n";
    auto r = s.ferry_test();
    BOOST_TEST(r.status == 1, r.out << r.err);
    BOOST_TEST(r.out.starts_with("✗ 127.0.0.1: export: "), r.out);
    BOOST_TEST(r.out.find("unauthorized public key") != std::string::npos, r.out);
}

// A machines.scm machine with Nix and no Guix is checked as the hook drives it:
// nix-store --serve (store, import of a fresh item registered by ferry in the
// throwaway Guix-schema store, export back); the guix shim is never run.
BOOST_AUTO_TEST_CASE(a_machine_with_nix_and_no_guix_is_checked_through_nix_store) {
    guix_machine_setup s;
    std::ofstream(s.t.path / "ferry.conf") << fmt::format("state-dir = {}\n", (s.t.path / "state").string());
    auto r = s.ferry_test();
    BOOST_TEST_MESSAGE("ferry test: " << r.out << r.err);
    BOOST_TEST(r.status == 0, r.out << r.err);
    BOOST_TEST(r.out == "✔ 127.0.0.1\n", r.out << r.err);
    BOOST_TEST(!fs::exists(s.host.directory() / "calls"));  // no guix shim ran
    std::string listing;
    s.host.run("ls /nix/store", &listing);
    BOOST_TEST(listing.find("ferry-test-") == std::string::npos, listing);  // cleaned up there
}

BOOST_AUTO_TEST_SUITE_END()
