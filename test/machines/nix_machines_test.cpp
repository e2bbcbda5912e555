#include <ferry/machines/nix_machines.hpp>
#include <ferry/util/error.hpp>

#include <boost/test/unit_test.hpp>

#include <map>

using namespace ferry::machines;

namespace {

nix_parse_options opts(std::map<std::string, std::string> files = {}) {
    nix_parse_options o;
    o.default_system = "x86_64-linux";
    o.read = [files](const std::string& p) -> std::optional<std::string> {
        auto it = files.find(p);
        if (it == files.end()) return std::nullopt;
        return it->second;
    };
    return o;
}

std::string error_of(std::string_view text, const nix_parse_options& o = opts()) {
    try {
        parse_nix_machines(text, "machines", o);
    } catch (const ferry::failure& e) {
        BOOST_TEST((e.code() == ferry::errc::bad_input));
        return e.what();
    }
    return "";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(nix_machines)

BOOST_AUTO_TEST_CASE(full_line) {
    // base64 of "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKey root@b"
    auto ms = parse_nix_machines(
        "ssh://alice@builder:2222 x86_64-linux,i686-linux /k/id 4 3 kvm,big nixos-test "
        "c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUZha2VLZXkgcm9vdEBi extra tokens\n",
        "machines", opts());
    BOOST_REQUIRE_EQUAL(ms.size(), 1u);
    const auto& m = ms[0];
    BOOST_TEST(m.host == "builder");
    BOOST_TEST(m.user == "alice");
    BOOST_TEST(m.port.value() == 2222);
    BOOST_TEST((m.systems == std::vector<std::string>{"x86_64-linux", "i686-linux"}));
    BOOST_TEST(m.identity.value() == "/k/id");
    BOOST_TEST(m.max_jobs == 4u);
    BOOST_TEST(m.speed == 3.0);
    BOOST_TEST((m.supported_features == std::set<std::string>{"kvm", "big"}));
    BOOST_TEST((m.mandatory_features == std::set<std::string>{"nixos-test"}));
    BOOST_TEST(m.host_key == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKey root@b");
    BOOST_TEST(m.origin.str() == "machines:1");
    BOOST_TEST((m.kind == flavour::nix));
}

BOOST_AUTO_TEST_CASE(defaults_and_dashes) {
    auto ms = parse_nix_machines("bare-host - - - 0 - -", "m", opts());
    BOOST_REQUIRE_EQUAL(ms.size(), 1u);
    BOOST_TEST(ms[0].host == "bare-host");
    BOOST_TEST(ms[0].user.empty());
    BOOST_TEST(!ms[0].port.has_value());
    BOOST_TEST((ms[0].systems == std::vector<std::string>{"x86_64-linux"}));  // the `system` setting
    BOOST_TEST(!ms[0].identity.has_value());
    BOOST_TEST(ms[0].max_jobs == 1u);
    BOOST_TEST(ms[0].speed == 1.0);  // speed 0 -> 1
    BOOST_TEST(ms[0].host_key.empty());
}

BOOST_AUTO_TEST_CASE(semicolon_splits_before_comment) {
    // Nix 2.8 splits on ';' first, so a '#' comment ends at the next ';'.
    auto ms = parse_nix_machines("a # comment;b\n# whole line\n  c ; ; d#x\n", "m", opts());
    BOOST_REQUIRE_EQUAL(ms.size(), 4u);
    BOOST_TEST(ms[0].host == "a");
    BOOST_TEST(ms[1].host == "b");
    BOOST_TEST(ms[2].host == "c");
    BOOST_TEST(ms[3].host == "d");
    BOOST_TEST(ms[2].origin.line == 3);
}

BOOST_AUTO_TEST_CASE(includes) {
    auto o = opts({{"/etc/nix/machines", "x\n@/inner\n"}, {"/inner", "y;z"}});
    auto ms = parse_nix_machines("@/etc/nix/machines; @ /missing ;w", "<builders>", o);
    BOOST_REQUIRE_EQUAL(ms.size(), 4u);
    BOOST_TEST(ms[0].host == "x");
    BOOST_TEST(ms[0].origin.str() == "/etc/nix/machines:1");
    BOOST_TEST(ms[1].host == "y");
    BOOST_TEST(ms[1].origin.str() == "/inner:1");
    BOOST_TEST(ms[2].host == "z");
    BOOST_TEST(ms[3].host == "w");
    BOOST_TEST(ms[3].origin.str() == "<builders>:1");
}

BOOST_AUTO_TEST_CASE(include_loop_refused) {
    auto o = opts({{"/loop", "@/loop"}});
    BOOST_TEST(error_of("@/loop", o).find("nested deeper") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(uri_forms) {
    auto ms = parse_nix_machines(
        "ssh-ng://u@h1\nssh://h2?remote-program=/opt/nix/bin/nix-store&remote-store=%2Fother\n"
        "root@h3:22\nssh://[::1]:2200\n",
        "m", opts());
    BOOST_REQUIRE_EQUAL(ms.size(), 4u);
    BOOST_TEST(ms[0].scheme == "ssh-ng");
    BOOST_TEST(ms[0].user == "u");
    BOOST_TEST(ms[0].host == "h1");
    BOOST_TEST(ms[1].remote_program.value() == "/opt/nix/bin/nix-store");
    BOOST_TEST(ms[1].remote_store.value() == "/other");
    BOOST_TEST(ms[2].user == "root");
    BOOST_TEST(ms[2].port.value() == 22);
    BOOST_TEST(ms[3].host == "::1");
    BOOST_TEST(ms[3].port.value() == 2200);
}

BOOST_AUTO_TEST_CASE(host_key_base64_like_nix) {
    // Unpadded base64 is accepted (Nix stops at '=' and needs no padding).
    auto ms = parse_nix_machines("h - - - - - - c3NoLWVkMjU1MTkgQUFBQQ\nh - - - - - - c3NoLWVkMjU1MTkgQUFBQQ==", "m", opts());
    BOOST_REQUIRE_EQUAL(ms.size(), 2u);
    BOOST_TEST(ms[0].host_key == "ssh-ed25519 AAAA");
    BOOST_TEST(ms[1].host_key == "ssh-ed25519 AAAA");
}

BOOST_AUTO_TEST_CASE(empty_input) {
    BOOST_TEST(parse_nix_machines("", "m", opts()).empty());
    BOOST_TEST(parse_nix_machines(" \n# c\n;;\n", "m", opts()).empty());
}

BOOST_AUTO_TEST_CASE(errors_name_file_line_and_expectation) {
    auto e = error_of("ok\nh x86_64-linux - 1 1.5\n");
    BOOST_TEST(e.find("machines:2:") == 0);
    BOOST_TEST(e.find("unsigned integer") != std::string::npos);
    BOOST_TEST(error_of("h - - many").find("column 4 (max jobs)") != std::string::npos);
    BOOST_TEST(error_of("h - - - - - - not*base64").find("column 8") != std::string::npos);
    BOOST_TEST(error_of("- x86_64-linux").find("column 1") != std::string::npos);
    BOOST_TEST(error_of("local").find("expected ssh://") != std::string::npos);
    BOOST_TEST(error_of("http://h").find("expected ssh://") != std::string::npos);
    BOOST_TEST(error_of("ssh://h:99999").find("port number") != std::string::npos);
    BOOST_TEST(error_of("ssh://u@").find("host name") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(can_build_rules) {
    auto m = parse_nix_machines("h x86_64-linux - 1 1 kvm,big nixos-test", "m", opts())[0];
    BOOST_TEST(m.can_build("x86_64-linux", {"nixos-test"}));
    BOOST_TEST(m.can_build("x86_64-linux", {"nixos-test", "kvm"}));
    BOOST_TEST(!m.can_build("x86_64-linux", {}));                  // mandatory not required
    BOOST_TEST(!m.can_build("x86_64-linux", {"nixos-test", "gpu"}));  // unsupported
    BOOST_TEST(!m.can_build("aarch64-linux", {"nixos-test"}));
    BOOST_TEST(m.can_build("builtin", {"nixos-test"}));            // builtin matches any machine
}

BOOST_AUTO_TEST_CASE(line_api) {
    auto m = parse_nix_machine_line("ssh://bob@b x86_64-linux", {"--machine", 0, 0}, "aarch64-linux");
    BOOST_TEST(m.display_name() == "bob@b");
}

BOOST_AUTO_TEST_SUITE_END()
