// The Guix build machine's command texts (pure functions), including quoting, and
// the verdict read from `guix build`.
#include <boost/test/unit_test.hpp>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/hook/guix_offload.hpp"
#include "ferry/remote/guix_remote.hpp"
#include "ferry/util/error.hpp"

using namespace ferry::remote;
using ferry::codec::codec_kind;
using ferry::codec::codec_spec;

namespace {
const std::string a = "/gnu/store/0123456789abcdfghijklmnpqrsvwxyz-a";
const std::string b = "/gnu/store/zyxwvsrqpnmlkjihgfdcba9876543210-b.drv";
}  // namespace

BOOST_AUTO_TEST_SUITE(guix_remote_commands)

BOOST_AUTO_TEST_CASE(stock_commands) {
    guix_remote_options o;
    BOOST_TEST(guix_missing_command(o) == "guix archive --missing");
    BOOST_TEST(guix_import_command(o, codec_kind::none) == "guix archive --import");
    BOOST_TEST(guix_import_command(o, codec_kind::zstd) == "sh -c 'zstd -dc | guix archive --import'");
    BOOST_TEST(guix_import_command(o, codec_kind::xz) == "sh -c 'xz -dc | guix archive --import'");
    BOOST_TEST(guix_export_command(o, {a, b}, codec_spec{codec_kind::none, 0}) ==
               "guix archive --export " + a + " " + b);
    BOOST_TEST(guix_build_command(o, "/var/guix/gcroots/ferry-1/result", 3600, 0, b) ==
               "guix build -r /var/guix/gcroots/ferry-1/result --max-silent-time=3600 --timeout=0 " + b);
}

BOOST_AUTO_TEST_CASE(compressed_export_reports_a_failed_export) {
    guix_remote_options o;
    auto cmd = guix_export_command(o, {a}, codec_spec{codec_kind::zstd, 1}, 2);
    BOOST_TEST(cmd.rfind("sh -c '{ guix archive --export " + a + " || echo ", 0) == 0, cmd);
    BOOST_TEST(cmd.find("ferry: export failed (status $?)") != std::string::npos, cmd);
    BOOST_TEST(cmd.find("| zstd -1") != std::string::npos, cmd);
}

BOOST_AUTO_TEST_CASE(quoting_of_a_program_path_with_spaces_and_quotes) {
    guix_remote_options o;
    o.guix_program = "/opt/my guix/it's guix";
    BOOST_TEST(guix_missing_command(o) == "'/opt/my guix/it'\\''s guix' archive --missing");
    // Inside sh -c the whole script is quoted once more.
    BOOST_TEST(guix_import_command(o, codec_kind::zstd) ==
               "sh -c 'zstd -dc | '\\''/opt/my guix/it'\\''\\'\\'''\\''s guix'\\'' archive --import'");
    BOOST_TEST(guix_build_command(o, "/r oot", 1, 2, b) ==
               "'/opt/my guix/it'\\''s guix' build -r '/r oot' --max-silent-time=1 --timeout=2 " + b);
}

BOOST_AUTO_TEST_CASE(paths_outside_the_store_are_refused) {
    guix_remote_options o;
    BOOST_CHECK_THROW(guix_export_command(o, {"/gnu/store/x; rm -rf /"}, codec_spec{codec_kind::none, 0}),
                      ferry::failure);
    BOOST_CHECK_THROW(guix_build_command(o, "/r", 0, 0, "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a.drv"),
                      ferry::failure);
}

BOOST_AUTO_TEST_CASE(local_exporter_passes_paths_as_positional_parameters) {
    auto argv = local_export_argv("/usr/bin/guix", {a, b}, codec_spec{codec_kind::zstd, 3});
    BOOST_REQUIRE(argv.size() == 6u);
    BOOST_TEST(argv[0] == "/bin/sh");
    BOOST_TEST(argv[2] == "exec \"$0\" archive --export \"$@\"");
    BOOST_TEST(argv[3] == "/usr/bin/guix");
    BOOST_TEST(argv[4] == a);
    BOOST_TEST(argv[5] == b);
}

BOOST_AUTO_TEST_CASE(build_verdicts) {
    using v = guix_build_verdict;
    BOOST_TEST((classify_guix_build(0, "") == v::built));
    BOOST_TEST((classify_guix_build(1, "guix build: error: build of `/gnu/store/x.drv' failed\n") == v::failed));
    BOOST_TEST((classify_guix_build(1, "building /gnu/store/x.drv...\n/gnu/store/x.drv timed out after 5 seconds of "
                                       "silence\nguix build: error: build of `/gnu/store/x.drv' failed\n") ==
                v::timed_out));
    BOOST_TEST((classify_guix_build(255, "ssh: connection lost") == v::transient));
    BOOST_TEST((classify_guix_build(127, "sh: guix: not found") == v::transient));
    BOOST_TEST((classify_guix_build(1, "guix build: error: failed to connect to `/var/guix/daemon-socket/socket'") ==
                v::failed));  // offload.scm also maps every store-protocol-error to 100
    BOOST_TEST((classify_guix_build(1, "Backtrace: ...") == v::transient));
}

// Which way a machines.scm machine is driven: forced by ferry.conf, else a
// configured guix-program means Guix, else the probe's tools decide.
BOOST_AUTO_TEST_CASE(remote_flavour_from_conf_and_probe) {
    using ferry::hook::remote_flavour_for;
    using ferry::machines::remote_flavour;
    ferry::machines::settings conf;
    ferry::schedule::probe_result nix_only, both, neither;
    nix_only.has_nix_store = true;
    both.has_nix_store = both.has_guix = true;
    BOOST_TEST((remote_flavour_for(conf, nix_only) == remote_flavour::nix));
    BOOST_TEST((remote_flavour_for(conf, both) == remote_flavour::guix));
    BOOST_TEST((remote_flavour_for(conf, neither) == remote_flavour::guix));   // guix then names what is missing
    BOOST_TEST((remote_flavour_for(conf, std::nullopt) == remote_flavour::guix));
    conf.guix_program = "/opt/guix/bin/guix";  // not on PATH, so the probe cannot see it
    BOOST_TEST((remote_flavour_for(conf, nix_only) == remote_flavour::guix));
    conf.flavour = remote_flavour::nix;
    BOOST_TEST((remote_flavour_for(conf, both) == remote_flavour::nix));
}

BOOST_AUTO_TEST_SUITE_END()
