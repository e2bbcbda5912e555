#include <ferry/machines/guix_machines.hpp>
#include <ferry/machines/sexpr.hpp>
#include <ferry/util/error.hpp>

#include <boost/test/unit_test.hpp>

using namespace ferry::machines;

namespace {

std::string error_of(std::string_view text) {
    try {
        parse_guix_machines(text, "/etc/guix/machines.scm");
    } catch (const ferry::failure& e) {
        BOOST_TEST((e.code() == ferry::errc::bad_input));
        return e.what();
    }
    return "";
}

// The Guix manual's example (doc/guix.texi, "Daemon Offload Setup").
constexpr const char* manual_example = R"((list (build-machine
        (name "eightysix.example.org")
        (systems (list "x86_64-linux" "i686-linux"))
        (host-key "ssh-ed25519 AAAAC3Nza...")
        (user "bob")
        (speed 2.))     ;incredibly fast!

      (build-machine
        (name "armeight.example.org")
        (systems (list "aarch64-linux"))
        (host-key "ssh-rsa AAAAB3Nza...")
        (user "alice")

        ;; Remember 'guix offload' is spawned by
        ;; 'guix-daemon' as root.
        (private-key "/root/.ssh/identity-for-guix")))
)";

// What gnu/services/base.scm writes for (build-machines (list ...)) in guix-configuration.
constexpr const char* generated = R"(((@ (srfi srfi-1) append-map)
 (lambda (entry) (if (build-machine? entry) (list entry) entry))
 (list (build-machine (name "a.example") (systems (list "x86_64-linux")) (user "offload")
                      (host-key "ssh-ed25519 AAAA a") (port 2222) (overload-threshold #f)
                       (features '("kvm" "big")) (parallel-builds 4) (compression "none")
                       (compression-level 0) (daemon-socket "/run/guix.sock"))
       (list (build-machine (name "b.example") (system "aarch64-linux") (user "u")
                            (host-key "ssh-rsa BBBB b")))))
)";

}  // namespace

BOOST_AUTO_TEST_SUITE(guix_machines)

BOOST_AUTO_TEST_CASE(manual_example_parses) {
    auto ms = parse_guix_machines(manual_example, "/etc/guix/machines.scm");
    BOOST_REQUIRE_EQUAL(ms.size(), 2u);
    BOOST_TEST(ms[0].host == "eightysix.example.org");
    BOOST_TEST((ms[0].systems == std::vector<std::string>{"x86_64-linux", "i686-linux"}));
    BOOST_TEST(ms[0].speed == 2.0);
    BOOST_TEST(ms[0].user == "bob");
    BOOST_TEST(ms[0].port.value() == 22);
    BOOST_TEST(ms[0].overload_threshold.value() == 0.8);
    BOOST_TEST(ms[0].compression == "zlib@openssh.com,zlib");
    BOOST_TEST(ms[0].compression_level == 3);
    BOOST_TEST(ms[0].daemon_socket == "/var/guix/daemon-socket/socket");
    BOOST_TEST(ms[0].max_jobs == 1u);
    BOOST_TEST(!ms[0].identity.has_value());
    BOOST_TEST(ms[0].origin.str() == "/etc/guix/machines.scm:1:7");
    BOOST_TEST((ms[0].kind == flavour::guix));
    BOOST_TEST(ms[1].identity.value() == "/root/.ssh/identity-for-guix");
    BOOST_TEST(ms[1].host_key == "ssh-rsa AAAAB3Nza...");
    BOOST_TEST(ms[1].origin.line == 8);
}

BOOST_AUTO_TEST_CASE(generated_form_parses) {
    auto ms = parse_guix_machines(generated, "m.scm");
    BOOST_REQUIRE_EQUAL(ms.size(), 2u);
    BOOST_TEST(ms[0].port.value() == 2222);
    BOOST_TEST(!ms[0].overload_threshold.has_value());
    BOOST_TEST((ms[0].supported_features == std::set<std::string>{"kvm", "big"}));
    BOOST_TEST(ms[0].max_jobs == 4u);
    BOOST_TEST(ms[0].compression == "none");
    BOOST_TEST(ms[0].compression_level == 0);
    BOOST_TEST(ms[0].daemon_socket == "/run/guix.sock");
    BOOST_TEST((ms[1].systems == std::vector<std::string>{"aarch64-linux"}));  // old `system` field
    // machine-matches?: system listed and required ⊆ features.
    BOOST_TEST(ms[0].can_build("x86_64-linux", {"kvm"}));
    BOOST_TEST(!ms[0].can_build("x86_64-linux", {"gpu"}));
    BOOST_TEST(!ms[1].can_build("x86_64-linux", {}));
}

BOOST_AUTO_TEST_CASE(empty_lists_and_modules) {
    BOOST_TEST(parse_guix_machines("'()", "m").empty());
    BOOST_TEST(parse_guix_machines("(list)", "m").empty());
    BOOST_TEST(parse_guix_machines("; nothing yet\n#| block #| nested |# |#\n(list)", "m").empty());
    BOOST_TEST(parse_guix_machines("(use-modules (guix scripts offload))\n(list)", "m").empty());
    BOOST_TEST(parse_guix_machines(
                   "((@ (srfi srfi-1) append-map) (lambda (e) (if (build-machine? e) (list e) e)) (list))", "m")
                   .empty());
}

BOOST_AUTO_TEST_CASE(reader_syntax) {
    auto ds = sexpr::read_all("\"a\\\"b\\n\\x41;\" 2. 1.5 -3 .5 #t #false sym [x] #;(skipped) 'q", "f");
    BOOST_REQUIRE_EQUAL(ds.size(), 10u);
    BOOST_TEST(ds[0].text == "a\"b\nA");
    BOOST_TEST(ds[1].number == 2.0);
    BOOST_TEST(!ds[1].exact);
    BOOST_TEST(ds[2].number == 1.5);
    BOOST_TEST(ds[3].number == -3.0);
    BOOST_TEST(ds[3].exact);
    BOOST_TEST(ds[4].number == 0.5);
    BOOST_TEST(ds[5].boolean);
    BOOST_TEST(!ds[6].boolean);
    BOOST_TEST(ds[7].is_symbol("sym"));
    BOOST_TEST(ds[8].items.size() == 1u);
    BOOST_TEST(ds[9].items[0].is_symbol("quote"));
    BOOST_TEST(ds[9].at.str() == "f:1:58");
}

// Found by fuzz_machines_scm: a NUL byte was taken for a delimiter and the reader looped,
// growing a list until memory ran out.
BOOST_AUTO_TEST_CASE(nul_byte_is_an_ordinary_character) {
    std::string text("(d\0 n) n)", 9);
    BOOST_CHECK_THROW(sexpr::read_all(text, "f"), ferry::failure);
    auto ds = sexpr::read_all(std::string("(a\0b)", 5), "f");
    BOOST_REQUIRE_EQUAL(ds.size(), 1u);
    BOOST_TEST(ds[0].items.size() == 1u);
}

BOOST_AUTO_TEST_CASE(reader_errors_have_positions) {
    auto err = [](std::string_view t) {
        try {
            sexpr::read_all(t, "f");
        } catch (const ferry::failure& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    BOOST_TEST(err("(list\n  \"abc").find("f:2:3: unterminated string") == 0);
    BOOST_TEST(err("(a b").find("f:1:1: unterminated list") == 0);
    BOOST_TEST(err("\n )").find("f:2:2: unexpected ')'") == 0);
    BOOST_TEST(err("#| open").find("f:1:1: unterminated block comment") == 0);
    BOOST_TEST(err("\"\\q\"").find("f:1:3: unknown string escape") == 0);
    BOOST_TEST(err("`(a ,b)").find("quasiquote") != std::string::npos);
    BOOST_TEST(err("(a . b)").find("dotted") != std::string::npos);
    BOOST_TEST(err(std::string(1000, '(')).find("nesting deeper") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(unsupported_code_is_rejected_with_position) {
    auto e = error_of("(define (m n) (build-machine (name n)))\n(list (m \"a\"))");
    BOOST_TEST(e.find("/etc/guix/machines.scm:1:1: value (define") == 0);
    e = error_of("(map (lambda (n) n) (list \"a\"))");
    BOOST_TEST(e.find(":1:1: unsupported form '(map ...)'") != std::string::npos);
    BOOST_TEST(e.find("expected (list (build-machine") != std::string::npos);
    e = error_of("(list\n  (build-machine (name host) (systems '()) (user \"u\") (host-key \"k\")))");
    BOOST_TEST(e.find(":2:24: field 'name' is the symbol 'host'; expected a string") != std::string::npos);
    e = error_of("((@ (srfi srfi-1) append-map) (lambda (e) e) (list))");
    BOOST_TEST(e.find(":1:31: append-map") != std::string::npos);
    e = error_of("(list (list (build-machine (name \"a\") (system \"s\") (user \"u\") (host-key \"k\"))))");
    BOOST_TEST(e.find(":1:7: list element") != std::string::npos);
    BOOST_TEST(error_of("\"just a string\"").find("expected a list of build-machine") != std::string::npos);
    BOOST_TEST(error_of("").find(":1:1: no expression") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(field_errors) {
    const std::string head = "(list (build-machine (name \"a\") (systems '(\"x86_64-linux\")) (user \"u\") ";
    auto e = error_of(head + "(host-key \"k\") (colour \"red\")))");
    BOOST_TEST(e.find(":1:88: unknown build-machine field 'colour'") != std::string::npos);
    e = error_of(head + "(host-key \"k\") (port \"22\")))");
    BOOST_TEST(e.find("field 'port' is a string; expected a number") != std::string::npos);
    e = error_of(head + "(host-key \"k\") (port 2.5)))");
    BOOST_TEST(e.find("expected an integer from 1 to 65535") != std::string::npos);
    e = error_of(head + "(host-key \"k\") (speed #t)))");
    BOOST_TEST(e.find("field 'speed' is a boolean") != std::string::npos);
    e = error_of(head + "(host-key \"k\") (features \"kvm\")))");
    BOOST_TEST(e.find("expected a list of strings") != std::string::npos);
    e = error_of(head + "(host-key \"k\") (user \"v\")))");
    BOOST_TEST(e.find("given twice") != std::string::npos);
    e = error_of(head + "))");
    BOOST_TEST(e.find(":1:7: build-machine 'a' lacks the required field 'host-key'") != std::string::npos);
    e = error_of("(list (build-machine (name \"a\") (user \"u\") (host-key \"k\")))");
    BOOST_TEST(e.find("lacks the required field 'systems'") != std::string::npos);
    e = error_of("(list (build-machine (systems '()) (user \"u\") (host-key \"k\")))");
    BOOST_TEST(e.find("lacks the required field 'name'") != std::string::npos);
    e = error_of("(list (build-machine (name \"a\") (systems '()) (host-key \"k\")))");
    BOOST_TEST(e.find("lacks the required field 'user'") != std::string::npos);
    e = error_of("(list (build-machine name))");
    BOOST_TEST(e.find(":1:22: in build-machine") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(guix_machines_more)

BOOST_AUTO_TEST_CASE(unbound_variable) {
    try {
        parse_guix_machines("(list\n  machine1)", "m.scm");
        BOOST_FAIL("accepted a variable");
    } catch (const ferry::failure& e) {
        BOOST_TEST(std::string(e.what()).find("m.scm:2:3: unbound or unsupported variable 'machine1'") == 0);
    }
}

// Every prefix of a valid file either parses or fails with bad_input (never another error).
BOOST_AUTO_TEST_CASE(every_prefix) {
    std::string text = generated;
    int ok = 0;
    for (std::size_t n = 0; n <= text.size(); ++n) {
        try {
            parse_guix_machines(std::string_view(text).substr(0, n), "p.scm");
            ++ok;
        } catch (const ferry::failure& e) {
            BOOST_TEST((e.code() == ferry::errc::bad_input));
        }
    }
    BOOST_TEST(ok >= 1);  // the whole text (and the prefixes ending after its last ')')
}

BOOST_AUTO_TEST_SUITE_END()
