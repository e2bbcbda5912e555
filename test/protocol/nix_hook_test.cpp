#include <boost/test/unit_test.hpp>

#include "byte_script.hpp"
#include "ferry/protocol/nix_hook.hpp"
#include "ferry/protocol/nix_log.hpp"

using namespace ferry::protocol;
using namespace ferry_test;
using ferry::errc;
using ferry::failure;

namespace {

std::string setting(std::string_view name, std::string_view value) { return u64(1) + str(name) + str(value); }

std::string preamble() {
    return setting("builders", "ssh://b1 x86_64-linux") + setting("max-silent-time", "30") +
           setting("system", "x86_64-linux") + setting("system-features", "kvm big-parallel") +
           setting("extra-platforms", "i686-linux") + u64(0);
}

std::string try_request(std::uint64_t willing, std::string_view platform, std::string_view drv,
                        const std::vector<std::string>& features) {
    return str("try") + u64(willing) + str(platform) + str(drv) + strs(features);
}

const std::string drv = "/nix/store/ckh63aqcazwqnclhqapdyivkks9nw1zp-ferry-capture.drv";

// A decoder that has read preamble() and is waiting for a request.
nix_hook_decoder at_requests() {
    nix_hook_decoder d;
    auto p = preamble();
    auto r = d.decode(p);
    BOOST_REQUIRE(std::holds_alternative<nix_settings>(r.msg));
    return d;
}

nix_hook_decoder at_paths() {
    auto d = at_requests();
    auto t = try_request(1, "x86_64-linux", drv, {});
    BOOST_REQUIRE(std::holds_alternative<nix_build_request>(d.decode(t).msg));
    d.reply(hook_reply::accept);
    return d;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(nix_hook)

BOOST_AUTO_TEST_CASE(preamble_decodes_to_typed_settings) {
    nix_hook_decoder d;
    auto bytes = preamble() + "trailing";
    auto r = d.decode(bytes);
    BOOST_TEST(r.consumed == preamble().size());
    auto& s = std::get<nix_settings>(r.msg);
    BOOST_TEST(s.size() == 5u);
    BOOST_TEST(s.builders() == "ssh://b1 x86_64-linux");
    BOOST_TEST(s.max_silent_time() == 30u);
    BOOST_TEST(s.build_timeout() == 0u);  // absent: Nix's default
    BOOST_TEST(s.store() == "auto");
    BOOST_TEST(s.enforce_determinism());
    BOOST_TEST((s.system_features() == std::vector<std::string>{"kvm", "big-parallel"}));
    BOOST_TEST((s.extra_platforms() == std::vector<std::string>{"i686-linux"}));
    BOOST_TEST((d.current_state() == nix_hook_decoder::state::requests));
    BOOST_TEST(d.stream_offset() == preamble().size());
}

BOOST_AUTO_TEST_CASE(every_prefix_of_the_preamble_needs_more) {
    check_every_prefix_needs_more(preamble(), [] { return nix_hook_decoder(); });
}

BOOST_AUTO_TEST_CASE(request_then_decline_then_another_request_then_other_word) {
    auto d = at_requests();
    auto t1 = try_request(0, "aarch64-linux", drv, {"kvm", "big"});
    auto r = d.decode(t1 + "x");
    BOOST_TEST(r.consumed == t1.size());
    auto req = std::get<nix_build_request>(r.msg);
    BOOST_TEST(!req.am_willing);
    BOOST_TEST(req.platform == "aarch64-linux");
    BOOST_TEST(req.drv_path == drv);
    BOOST_TEST((req.required_features == std::vector<std::string>{"big", "kvm"}));

    // Nothing is read before the hook answered.
    auto t2 = try_request(1, "x86_64-linux", drv, {});
    BOOST_TEST(d.decode(t2).need_more());
    d.reply(hook_reply::decline);
    auto r2 = d.decode(t2);
    BOOST_TEST(std::get<nix_build_request>(r2.msg).am_willing);
    d.reply(hook_reply::postpone);

    auto r3 = d.decode(str("exit"));
    BOOST_TEST(std::get<nix_hook_end>(r3.msg).reason.find("'exit'") != std::string::npos);
    BOOST_TEST((d.current_state() == nix_hook_decoder::state::done));
}

BOOST_AUTO_TEST_CASE(every_prefix_of_a_request_needs_more) {
    check_every_prefix_needs_more(try_request(1, "x86_64-linux", drv, {"kvm"}), at_requests);
}

BOOST_AUTO_TEST_CASE(eof_between_requests_is_the_end_and_inside_one_is_truncation) {
    auto d = at_requests();
    BOOST_TEST(std::holds_alternative<nix_hook_end>(d.decode_eof("").msg));
    auto d2 = at_requests();
    auto t = try_request(1, "x86_64-linux", drv, {});
    BOOST_CHECK_EXCEPTION(d2.decode_eof(std::string_view(t).substr(0, 20)), failure,
                          failure_with(errc::truncated, "a build request"));
    nix_hook_decoder d3;
    BOOST_CHECK_EXCEPTION(d3.decode_eof(setting("a", "b")), failure,
                          failure_with(errc::truncated, "the settings preamble"));
}

BOOST_AUTO_TEST_CASE(paths_after_accept) {
    auto d = at_paths();
    auto bytes = strs({"/nix/store/a-x", "/nix/store/b-y"}) + strs({"dev", "out"});
    auto r = d.decode(bytes);
    BOOST_TEST(r.consumed == bytes.size());
    auto& p = std::get<nix_accepted_paths>(r.msg);
    BOOST_TEST((p.inputs == std::vector<std::string>{"/nix/store/a-x", "/nix/store/b-y"}));
    BOOST_TEST((p.wanted_outputs == std::vector<std::string>{"dev", "out"}));
    BOOST_TEST(std::holds_alternative<nix_hook_end>(d.decode_eof("").msg));
    check_every_prefix_needs_more(bytes, at_paths);
    auto d2 = at_paths();
    BOOST_CHECK_EXCEPTION(d2.decode_eof(strs({"/nix/store/a-x"})), failure,
                          failure_with(errc::truncated, "after accept"));
    auto d3 = at_paths();
    BOOST_TEST(d3.decode(bytes + "junk").consumed == bytes.size());
    BOOST_CHECK_EXCEPTION(d3.decode("junk"), failure, failure_with(errc::bad_input, "4 unexpected bytes at offset"));
}

BOOST_AUTO_TEST_CASE(decline_permanently_ends_the_conversation) {
    auto d = at_requests();
    d.decode(try_request(1, "x86_64-linux", drv, {}));
    d.reply(hook_reply::decline_permanently);
    BOOST_TEST((d.current_state() == nix_hook_decoder::state::done));
}

BOOST_AUTO_TEST_CASE(huge_lengths_and_counts_are_refused_before_allocating) {
    nix_hook_decoder d;
    BOOST_CHECK_EXCEPTION(d.decode(u64(1) + u64(1ull << 60)), failure,
                          failure_with(errc::too_large, "settings preamble: string of 1152921504606846976 bytes at offset 8"));
    auto d2 = at_requests();
    auto huge_set = str("try") + u64(1) + str("x86_64-linux") + str(drv) + u64(1ull << 60);
    BOOST_CHECK_EXCEPTION(d2.decode(huge_set), failure, failure_with(errc::too_large, "build request: list of"));
    auto d3 = at_paths();
    BOOST_CHECK_EXCEPTION(d3.decode(u64(~0ull)), failure, failure_with(errc::too_large, "after accept"));
    nix_hook_limits small;
    small.max_settings = 2;
    nix_hook_decoder d4(small);
    BOOST_CHECK_EXCEPTION(d4.decode(preamble()), failure, failure_with(errc::too_large, "more than 2 settings"));
}

BOOST_AUTO_TEST_CASE(malformed_preamble_is_refused_with_its_offset) {
    nix_hook_decoder d;
    BOOST_CHECK_EXCEPTION(d.decode(setting("a", "b") + u64(2)), failure,
                          failure_with(errc::bad_input, "expected 1 (another setting) or 0 (end) at offset 40, got 2"));
    auto bad_padding = u64(1) + u64(1) + std::string("a\0\0\0\0\0\0\x01", 8);
    nix_hook_decoder d2;
    BOOST_CHECK_EXCEPTION(d2.decode(bad_padding), failure, failure_with(errc::bad_input, "non-zero padding"));
}

BOOST_AUTO_TEST_CASE(typed_settings_refuse_bad_values_naming_the_setting) {
    nix_settings s;
    s.set("max-silent-time", "-5");
    s.set("builders-use-substitutes", "maybe");
    s.set("timeout", "12x");
    s.set("keep-failed", "yes");
    BOOST_CHECK_EXCEPTION(s.max_silent_time(), failure, failure_with(errc::bad_input, "'max-silent-time'"));
    BOOST_CHECK_EXCEPTION(s.build_timeout(), failure, failure_with(errc::bad_input, "'timeout'"));
    BOOST_CHECK_EXCEPTION(s.builders_use_substitutes(), failure,
                          failure_with(errc::bad_input, "'builders-use-substitutes'"));
    BOOST_TEST(s.keep_failed());
}

BOOST_AUTO_TEST_CASE(can_build_locally_follows_build_remote) {
    nix_settings s;
    s.set("system", "x86_64-linux");
    s.set("extra-platforms", "i686-linux");
    s.set("system-features", "kvm nixos-test");
    nix_build_request r{true, "x86_64-linux", drv, {"kvm"}};
    BOOST_TEST(s.can_build_locally(r));
    r.platform = "i686-linux";
    BOOST_TEST(s.can_build_locally(r));
    r.platform = "builtin";
    BOOST_TEST(s.can_build_locally(r));
    r.platform = "aarch64-linux";
    BOOST_TEST(!s.can_build_locally(r));
    r.platform = "x86_64-linux";
    r.required_features = {"big-parallel"};
    BOOST_TEST(!s.can_build_locally(r));
    r.required_features = {};
    r.am_willing = false;
    BOOST_TEST(!s.can_build_locally(r));
}

BOOST_AUTO_TEST_CASE(reply_lines_are_exact) {
    BOOST_TEST(encode_nix_accept("ssh://b1") == "# accept\nssh://b1\n");
    BOOST_TEST(encode_nix_reply(hook_reply::decline) == "# decline\n");
    BOOST_TEST(encode_nix_reply(hook_reply::postpone) == "# postpone\n");
    BOOST_TEST(encode_nix_reply(hook_reply::decline_permanently) == "# decline-permanently\n");
    BOOST_CHECK_THROW(encode_nix_reply(hook_reply::accept), std::invalid_argument);
    BOOST_CHECK_EXCEPTION(encode_nix_accept("a\nb"), failure, failure_with(errc::bad_input, "line break"));
}

// Bytes recorded from Nix 2.8's nix-build (test/protocol/data/README.md).
BOOST_AUTO_TEST_CASE(captured_nix_2_8_decline_session) {
    auto bytes = data_file("nix-hook-decline.bin");
    nix_hook_decoder d;
    std::string_view rest = bytes;
    auto r = d.decode(rest);
    auto& s = std::get<nix_settings>(r.msg);
    BOOST_TEST(s.size() == 91u);
    BOOST_TEST(s.builders() == "ssh://x x86_64-linux");
    BOOST_TEST(s.system() == "x86_64-linux");
    BOOST_TEST(s.get("build-hook").value() == "/tmp/cap-ferry/hook.sh");
    BOOST_TEST(s.get("max-jobs").value() == "0");
    BOOST_TEST(s.max_silent_time() == 0u);
    BOOST_TEST(s.build_timeout() == 0u);
    BOOST_TEST(s.max_log_size() == 0u);
    BOOST_TEST(s.store() == "auto");
    BOOST_TEST(!s.builders_use_substitutes());
    BOOST_TEST(s.enforce_determinism());
    BOOST_TEST((s.system_features() == std::vector<std::string>{"benchmark", "big-parallel", "kvm", "nixos-test"}));
    BOOST_TEST(s.extra_platforms().size() == 4u);
    rest.remove_prefix(r.consumed);
    auto r2 = d.decode(rest);
    BOOST_TEST((std::get<nix_build_request>(r2.msg) ==
                nix_build_request{false, "x86_64-linux", drv, {"big-parallel", "kvm"}}));
    BOOST_TEST(r2.consumed == rest.size());
    BOOST_TEST(!s.can_build_locally(std::get<nix_build_request>(r2.msg)));  // am-willing 0 (max-jobs 0)
    d.reply(hook_reply::decline);
    BOOST_TEST(std::holds_alternative<nix_hook_end>(d.decode_eof("").msg));
}

BOOST_AUTO_TEST_CASE(every_prefix_of_the_captured_preamble_and_request_needs_more) {
    auto bytes = data_file("nix-hook-decline.bin");
    nix_hook_decoder probe;
    auto preamble_size = probe.decode(bytes).consumed;
    BOOST_REQUIRE(preamble_size > 0u && preamble_size < bytes.size());
    check_every_prefix_needs_more(bytes.substr(0, preamble_size), [] { return nix_hook_decoder(); });
    auto request = bytes.substr(preamble_size);
    check_every_prefix_needs_more(request, [&] {
        nix_hook_decoder d;
        d.decode(std::string_view(bytes).substr(0, preamble_size));
        return d;
    });
}

BOOST_AUTO_TEST_CASE(captured_nix_2_8_accept_session_fed_in_small_chunks) {
    // Like an I/O loop: bytes arrive 13 at a time, decode after each.
    auto bytes = data_file("nix-hook-accept.bin");
    nix_hook_decoder d;
    std::string buffer;
    std::vector<nix_hook_decoder::message> messages;
    for (std::size_t i = 0; i < bytes.size(); i += 13) {
        buffer += bytes.substr(i, 13);
        for (;;) {
            auto r = d.decode(buffer);
            if (r.need_more()) break;
            buffer.erase(0, r.consumed);
            if (std::holds_alternative<nix_build_request>(r.msg)) d.reply(hook_reply::accept);
            messages.push_back(std::move(r.msg));
        }
    }
    BOOST_TEST(buffer.empty());
    BOOST_REQUIRE(messages.size() == 3u);
    BOOST_TEST(std::get<nix_settings>(messages[0]).size() == 91u);
    BOOST_TEST(std::get<nix_build_request>(messages[1]).drv_path == drv);
    BOOST_TEST((std::get<nix_accepted_paths>(messages[2]) ==
                nix_accepted_paths{{"/nix/store/qb39jmb71ryypcky14ckn0cnrb2m8pdi-ferry-capture-builder.sh"}, {"out"}}));
    BOOST_TEST(std::holds_alternative<nix_hook_end>(d.decode_eof("").msg));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(nix_log)

BOOST_AUTO_TEST_CASE(lines_match_nix_2_8_json_logger) {
    // Key order and spacing as nlohmann::json::dump(-1) in Nix's JSONLogger.
    BOOST_TEST(nix_log_start(7, nix_verbosity::talkative, nix_activity::copy_path, "copying 'x'",
                             {std::string("/nix/store/x"), std::string("local"), std::string("ssh://b1")}) ==
               "@nix {\"action\":\"start\",\"fields\":[\"/nix/store/x\",\"local\",\"ssh://b1\"],\"id\":7,"
               "\"level\":4,\"text\":\"copying 'x'\",\"type\":100}\n");
    BOOST_TEST(nix_log_start(8, nix_verbosity::info, nix_activity::build, "building",
                             {std::string("/nix/store/a.drv"), std::string("b1"), std::uint64_t(1), std::uint64_t(1)},
                             7) ==
               "@nix {\"action\":\"start\",\"fields\":[\"/nix/store/a.drv\",\"b1\",1,1],\"id\":8,\"level\":3,"
               "\"parent\":7,\"text\":\"building\",\"type\":105}\n");
    BOOST_TEST(nix_log_stop(7) == "@nix {\"action\":\"stop\",\"id\":7}\n");
    BOOST_TEST(nix_log_result(9, nix_result::progress, {std::uint64_t(1), std::uint64_t(3), std::uint64_t(0),
                                                         std::uint64_t(0)}) ==
               "@nix {\"action\":\"result\",\"fields\":[1,3,0,0],\"id\":9,\"type\":105}\n");
    BOOST_TEST(nix_log_msg(nix_verbosity::error, "line 1\nline \"2\"") ==
               "@nix {\"action\":\"msg\",\"level\":0,\"msg\":\"line 1\\nline \\\"2\\\"\"}\n");
    // Invalid UTF-8 is replaced, never an exception in the middle of a build.
    BOOST_TEST(nix_log_msg(nix_verbosity::warn, "bad \xff") ==
               "@nix {\"action\":\"msg\",\"level\":1,\"msg\":\"bad \xef\xbf\xbd\"}\n");
}

// The exact lines a real nix-build 2.8.0 accepted from a hook (data/README.md).
BOOST_AUTO_TEST_CASE(lines_accepted_by_a_real_nix_2_8_daemon_are_reproduced) {
    std::string s = encode_nix_accept("ssh://ferry-test");
    s += nix_log_start(42, nix_verbosity::info, nix_activity::copy_paths, "copying 2 paths");
    s += nix_log_result(42, nix_result::progress,
                        {std::uint64_t(1), std::uint64_t(2), std::uint64_t(0), std::uint64_t(0)});
    s += nix_log_start(43, nix_verbosity::talkative, nix_activity::copy_path, "copying path 'x' to 'ssh://ferry-test'",
                       {std::string("/nix/store/x"), std::string("local"), std::string("ssh://ferry-test")});
    s += nix_log_result(43, nix_result::progress,
                        {std::uint64_t(100), std::uint64_t(200), std::uint64_t(0), std::uint64_t(0)});
    s += nix_log_stop(43);
    s += nix_log_stop(42);
    s += nix_log_msg(nix_verbosity::error, "ferry-marker: remote build failed \xff");
    BOOST_TEST(s == data_file("nix-log-lines-accepted.txt"));
}

BOOST_AUTO_TEST_CASE(encoded_lines_pass_the_daemon_rules) {
    validate_nix_log_line(nix_log_start(1, nix_verbosity::info, nix_activity::copy_paths, "", {}));
    validate_nix_log_line(nix_log_result(1, nix_result::set_expected, {std::uint64_t(100), std::uint64_t(5)}));
    validate_nix_log_line(nix_log_result(1, nix_result::build_log_line, {std::string("hello")}));
    validate_nix_log_line(nix_log_stop(1));
    validate_nix_log_line(nix_log_msg(nix_verbosity::error, "x"));
}

BOOST_AUTO_TEST_CASE(lines_the_daemon_would_fail_on_are_refused) {
    auto bad = [](std::string line, std::string why) {
        BOOST_CHECK_EXCEPTION(validate_nix_log_line(line), failure, failure_with(errc::bad_input, why));
    };
    bad("@nix {\"action\":\"result\",\"id\":1,\"type\":105,\"fields\":[-1]}", "neither a string");
    bad("@nix {\"action\":\"result\",\"id\":1,\"type\":105,\"fields\":[1.5]}", "neither a string");
    bad("@nix {\"action\":\"start\",\"id\":\"1\",\"level\":0,\"type\":0,\"text\":\"\"}", "\"id\" is not an unsigned");
    bad("@nix {\"action\":\"start\",\"id\":1,\"level\":0,\"type\":0}", "no \"text\"");
    bad("@nix {\"action\":\"msg\",\"level\":0,\"msg\":5}", "\"msg\" is not a string");
    bad("@nix {\"action\":", "not valid JSON");
    bad("# accept", "does not start");
}

BOOST_AUTO_TEST_SUITE_END()
