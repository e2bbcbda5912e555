#include <boost/test/unit_test.hpp>

#include <array>

#include "byte_script.hpp"
#include "ferry/protocol/guix_hook.hpp"

using namespace ferry::protocol;
using namespace ferry_test;
using ferry::errc;
using ferry::failure;

namespace {

const std::string drv = "/gnu/store/4ig1v2dw3b1w0k6cl1yl1fb8kmb7dpqh-hello-offload.drv";

guix_hook_decoder at_paths() {
    guix_hook_decoder d;
    auto r = d.decode("1 x86_64-linux " + drv + " \n");
    BOOST_REQUIRE(std::holds_alternative<guix_build_request>(r.msg));
    d.reply(hook_reply::accept);
    return d;
}

guix_hook_args args(std::string_view a, std::string_view b, std::string_view c, std::string_view d) {
    std::array<std::string_view, 4> operands{a, b, c, d};
    return parse_guix_hook_args(operands);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(guix_hook)

BOOST_AUTO_TEST_CASE(argv_in_both_daemon_spellings) {
    // As observed from guix-daemon 1.4.0, and the "true"/"false" form of 2025 daemons.
    BOOST_TEST((args("x86_64-linux", "0", "0", "0") == guix_hook_args{"x86_64-linux", 0, false, 0}));
    BOOST_TEST((args("x86_64-linux", "7", "1", "99") == guix_hook_args{"x86_64-linux", 7, true, 99}));
    BOOST_TEST((args("aarch64-linux", "3600", "true", "0") == guix_hook_args{"aarch64-linux", 3600, true, 0}));
    BOOST_TEST(!args("i686-linux", "0", "false", "0").print_build_trace);
}

BOOST_AUTO_TEST_CASE(bad_argv_names_the_operand) {
    BOOST_CHECK_EXCEPTION(args("x86_64-linux", "-1", "0", "0"), failure,
                          failure_with(errc::bad_input, "MAX-SILENT-TIME (operand 2): expected an unsigned integer, got '-1'"));
    BOOST_CHECK_EXCEPTION(args("x86_64-linux", "0", "yes", "0"), failure,
                          failure_with(errc::bad_input, "PRINT-BUILD-TRACE (operand 3)"));
    BOOST_CHECK_EXCEPTION(args("x86_64-linux", "0", "0", "1e3"), failure,
                          failure_with(errc::bad_input, "BUILD-TIMEOUT (operand 4)"));
    BOOST_CHECK_EXCEPTION(args("X86", "0", "0", "0"), failure, failure_with(errc::bad_input, "SYSTEM (operand 1)"));
    std::array<std::string_view, 3> three{"x86_64-linux", "0", "0"};
    BOOST_CHECK_EXCEPTION(parse_guix_hook_args(three), failure, failure_with(errc::bad_input, "expected 4 operands"));
}

BOOST_AUTO_TEST_CASE(request_lines) {
    // Observed: no features = a trailing space; features joined by commas.
    BOOST_TEST((parse_guix_request_line("0 x86_64-linux " + drv + " ", 1) ==
                guix_build_request{false, "x86_64-linux", drv, {}}));
    BOOST_TEST((parse_guix_request_line("1 x86_64-linux " + drv + " kvm,big", 1) ==
                guix_build_request{true, "x86_64-linux", drv, {"kvm", "big"}}));
    BOOST_TEST((parse_guix_request_line("1 i686-linux " + drv + " ,kvm,,", 1).features ==
                std::vector<std::string>{"kvm"}));
}

BOOST_AUTO_TEST_CASE(bad_request_lines_name_the_line_and_the_expected_form) {
    auto bad = [](std::string line, std::string why) {
        BOOST_CHECK_EXCEPTION(parse_guix_request_line(line, 3), failure, failure_with(errc::bad_input, why));
    };
    bad("", "line 3: expected '<0|1> <system> <drv-path> <features>' starting with '0 ' or '1 ', got ''");
    bad("2 x86_64-linux " + drv + " ", "starting with '0 ' or '1 '");
    bad("1 X86 " + drv + " ", "system of [a-z0-9_-]+");
    bad("1 x86_64-linux", "system of [a-z0-9_-]+");
    bad("1 x86_64-linux gnu/store/x.drv ", "absolute .drv path");
    bad("1 x86_64-linux /gnu/store/x-source ", "absolute .drv path");
    bad("1 x86_64-linux " + drv, "absolute .drv path");
    bad("1 x86_64-linux " + drv + " kvm big", "no spaces");
    bad("1 x86_64-linux " + drv + " kvm\t", "got '1 x86_64-linux " + drv + " kvm\\x09'");
}

BOOST_AUTO_TEST_CASE(conversation_with_decline_postpone_and_accept) {
    guix_hook_decoder d;
    std::string script = "0 x86_64-linux " + drv + " \n";
    auto r = d.decode(script + "1 x86");
    BOOST_TEST(r.consumed == script.size());
    BOOST_TEST(!std::get<guix_build_request>(r.msg).am_willing);
    BOOST_TEST(d.decode("1 x86_64-linux " + drv + " kvm\n").need_more());  // before the reply
    d.reply(hook_reply::postpone);
    auto r2 = d.decode("1 x86_64-linux " + drv + " kvm\n");
    BOOST_TEST((std::get<guix_build_request>(r2.msg).features == std::vector<std::string>{"kvm"}));
    d.reply(hook_reply::accept);
    std::string paths = drv + " /gnu/store/abc-hello-accept-builder.sh \n/gnu/store/xyz-hello-accept \n";
    auto r3 = d.decode(paths);
    BOOST_TEST(r3.consumed == paths.size());
    BOOST_TEST((std::get<guix_accepted_paths>(r3.msg) ==
                guix_accepted_paths{{drv, "/gnu/store/abc-hello-accept-builder.sh"}, {"/gnu/store/xyz-hello-accept"}}));
    BOOST_TEST(d.line_number() == 4u);
    BOOST_TEST(std::holds_alternative<guix_hook_end>(d.decode_eof("").msg));
}

BOOST_AUTO_TEST_CASE(every_prefix_needs_more) {
    check_every_prefix_needs_more("1 x86_64-linux " + drv + " kvm,big\n", [] { return guix_hook_decoder(); });
    check_every_prefix_needs_more(drv + " /gnu/store/a-b \n/gnu/store/c-d \n", at_paths);
}

BOOST_AUTO_TEST_CASE(end_of_input) {
    guix_hook_decoder d;
    BOOST_TEST(std::holds_alternative<guix_hook_end>(d.decode_eof("").msg));
    guix_hook_decoder d2;  // a last line without '\n' still counts, as with Guile's read-line
    auto line = "1 x86_64-linux " + drv + " ";
    auto r = d2.decode_eof(line);
    BOOST_TEST(std::holds_alternative<guix_build_request>(r.msg));
    BOOST_TEST(r.consumed == line.size());
    auto d3 = at_paths();
    BOOST_CHECK_EXCEPTION(d3.decode_eof(drv), failure, failure_with(errc::truncated, "line 2: input ended"));
    auto d4 = at_paths();
    auto r4 = d4.decode_eof(drv + " \n/gnu/store/c-d ");
    BOOST_TEST(std::get<guix_accepted_paths>(r4.msg).outputs.size() == 1u);
}

BOOST_AUTO_TEST_CASE(oversized_and_malformed_input) {
    guix_hook_limits small;
    small.max_line = 64;
    guix_hook_decoder d(small);
    BOOST_CHECK_EXCEPTION(d.decode(std::string(65, '1')), failure,
                          failure_with(errc::too_large, "line 1: longer than 64 bytes"));
    small.max_paths = 1;
    guix_hook_decoder d2(small);
    d2.decode("1 x86_64-linux /gnu/store/a.drv \n");
    d2.reply(hook_reply::accept);
    BOOST_CHECK_EXCEPTION(d2.decode("/gnu/store/a /gnu/store/b \n\n"), failure,
                          failure_with(errc::too_large, "line 2: more than 1 paths"));
    auto d3 = at_paths();
    BOOST_CHECK_EXCEPTION(d3.decode("relative/path \n\n"), failure,
                          failure_with(errc::bad_input, "line 2: expected inputs line: absolute store paths"));
    auto d4 = at_paths();
    d4.decode("/gnu/store/a \n/gnu/store/b \n");
    BOOST_CHECK_EXCEPTION(d4.decode("more"), failure, failure_with(errc::bad_input, "line 4: unexpected input"));
    guix_hook_decoder d5;
    BOOST_CHECK_EXCEPTION(d5.decode("garbage\n"), failure, failure_with(errc::bad_input, "line 1: expected"));
}

BOOST_AUTO_TEST_CASE(replies_and_trace_line) {
    BOOST_TEST(encode_guix_reply(hook_reply::accept) == "# accept\n");
    BOOST_TEST(encode_guix_reply(hook_reply::decline) == "# decline\n");
    BOOST_TEST(encode_guix_reply(hook_reply::postpone) == "# postpone\n");
    BOOST_CHECK_EXCEPTION(encode_guix_reply(hook_reply::decline_permanently), failure,
                          failure_with(errc::unsupported, "decline-permanently"));
    BOOST_TEST(guix_build_remote_trace(drv, "eightysix.example.org") ==
               "@ build-remote " + drv + " eightysix.example.org\n");
}

BOOST_AUTO_TEST_SUITE_END()
