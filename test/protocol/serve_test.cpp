#include <boost/test/unit_test.hpp>

#include "byte_script.hpp"
#include "ferry/protocol/serve.hpp"

using namespace ferry::protocol::serve;
using namespace ferry_test;
using ferry::errc;
using ferry::failure;

namespace {

const std::string src = "/nix/store/n459321dw3a4anpv54kdpzx9bixfxk0s-ferry-serve-builder.sh";
const std::string out_path = "/nix/store/zp4l4k2k0kggdfjq3nk5697s4gi1isi3-ferry-serve-capture";
const std::string drv_path = "/nix/store/alv7xn8kb7fn2m8bp19npf8jah87wg9i-ferry-serve-capture.drv";

const std::string hello_reply = u64(server_magic) + u64(0x207);

// A client whose hello was answered with `version`.
serve_client connected(std::uint64_t version = 0x207) {
    serve_client c;
    c.hello();
    auto r = c.decode(u64(server_magic) + u64(version));
    BOOST_REQUIRE(std::holds_alternative<server_hello>(r.msg));
    return c;
}

// The derivation of test/protocol/data/capture-tools/drv2.nix, as build-remote sent it.
basic_derivation capture_drv() {
    basic_derivation d;
    d.outputs["out"] = {out_path, "", ""};
    d.input_srcs = {src};
    d.platform = "x86_64-linux";
    d.builder = "/bin/sh";
    d.args = {src};
    d.env = {{"builder", "/bin/sh"}, {"name", "ferry-serve-capture"}, {"out", out_path}, {"system", "x86_64-linux"}};
    return d;
}

template <class T>
T decode_one(serve_client& c, std::string_view& rest) {
    auto r = c.decode(rest);
    BOOST_TEST_REQUIRE(!r.need_more());
    BOOST_TEST_REQUIRE(std::holds_alternative<T>(r.msg));
    rest.remove_prefix(r.consumed);
    return std::get<T>(std::move(r.msg));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(serve_protocol)

// Bytes recorded between Nix 2.8's build-remote and `nix-store --serve --write`
// (test/protocol/data/README.md). Our encoders must produce the client's bytes
// exactly and decode the server's.
BOOST_AUTO_TEST_CASE(captured_build_session_requests_are_reproduced_byte_for_byte) {
    auto captured = data_file("serve-build.req");
    serve_client c;
    std::string mine = c.hello();
    c.decode(hello_reply);
    mine += c.query_valid_paths({src}, false, false);
    add_to_store_nar_request add;
    add.path = src;
    add.nar_hash = "b025803c3adbcf34a6dce6c54bf9be18b8dcc316ee050f6ebbd96fdccf35ec20";
    add.registration_time = 1795463364;
    add.nar_size = 136;
    add.ca = "text:sha256:12d6wxxy067w6fyx9lqiw6z46vvr5xz4av98a3ysr2sdqmkdx19g";
    mine += c.add_to_store_nar(add);
    BOOST_REQUIRE(captured.size() >= mine.size() + 136);
    BOOST_TEST(captured.substr(0, mine.size()) == mine);
    auto nar = captured.substr(mine.size(), 136);
    BOOST_TEST(nar.substr(8, 13) == "nix-archive-1");
    mine += nar;
    build_options options;  // the capture's settings: all 0, enforce-determinism true
    mine += c.build_derivation(drv_path, capture_drv(), options);
    mine += c.query_path_infos({out_path});
    mine += c.dump_store_path(out_path);
    BOOST_TEST(mine == captured);
    BOOST_TEST(c.pending() == 5u);
}

BOOST_AUTO_TEST_CASE(captured_build_session_replies_decode) {
    auto bytes = data_file("serve-build.rep");
    serve_client c;
    c.hello();
    c.query_valid_paths({src}, false, false);
    c.decode(std::string_view(bytes).substr(0, 16));  // hello, so add_to_store_nar knows the version
    add_to_store_nar_request add;
    add.path = src;
    add.nar_size = 136;
    c.add_to_store_nar(add);
    c.build_derivation(drv_path, capture_drv(), {});
    c.query_path_infos({out_path});
    c.dump_store_path(out_path);
    std::string_view rest = std::string_view(bytes).substr(16);
    BOOST_TEST(*c.server_version() == 0x207u);

    BOOST_TEST(decode_one<valid_paths>(c, rest).paths.empty());
    decode_one<import_done>(c, rest);
    auto br = decode_one<build_result>(c, rest);
    BOOST_TEST((br.status == build_status::built));
    BOOST_TEST(br.error_msg.empty());
    BOOST_TEST(br.times_built == 1u);
    BOOST_TEST(!br.is_non_deterministic);
    BOOST_TEST(br.start_time == 0x6b0498c4u);
    BOOST_TEST(br.stop_time >= br.start_time);
    BOOST_REQUIRE(br.built_outputs.size() == 1u);
    BOOST_TEST(br.built_outputs[0].id ==
               "sha256:81fac558299fc37fdd5821277106e88fbdc776a3c5f3f04cb16deacee73615dc!out");
    BOOST_TEST(br.built_outputs[0].out_path == "zp4l4k2k0kggdfjq3nk5697s4gi1isi3-ferry-serve-capture");
    BOOST_TEST(hook_exit_code(br.status) == 0);

    auto infos = decode_one<path_infos>(c, rest).infos;
    BOOST_REQUIRE(infos.size() == 1u);
    BOOST_TEST(infos[0].path == out_path);
    BOOST_TEST(infos[0].deriver == drv_path);
    BOOST_TEST(infos[0].references.empty());
    BOOST_TEST(infos[0].nar_size == 120u);
    BOOST_TEST(infos[0].download_size == 120u);
    BOOST_TEST(infos[0].nar_hash == "sha256:1w03pr4qg0b90iyafwig798pf1qjm8bfj4vlb1n9jpbcc8vz7ihd");
    BOOST_TEST(infos[0].ca.empty());
    BOOST_TEST(infos[0].sigs.empty());

    auto r = c.decode(rest);
    BOOST_TEST(std::holds_alternative<nar_follows>(r.msg));
    BOOST_TEST(r.consumed == 0u);
    BOOST_TEST(rest.size() == 120u);  // exactly the NAR, which the NAR codec reads
    BOOST_TEST(rest.substr(8, 13) == "nix-archive-1");
    BOOST_TEST(c.pending() == 0u);
}

BOOST_AUTO_TEST_CASE(captured_failed_build_maps_to_exit_100) {
    auto bytes = data_file("serve-fail.rep");
    serve_client c;
    c.hello();
    std::string_view rest = bytes;
    decode_one<server_hello>(c, rest);
    c.query_valid_paths({src}, false, false);
    c.import_paths();  // build-remote sent AddToStoreNar: the same u64 1 answers it
    c.build_derivation(drv_path, capture_drv(), {});
    BOOST_TEST(decode_one<valid_paths>(c, rest).paths.empty());
    decode_one<import_done>(c, rest);
    auto br = decode_one<build_result>(c, rest);
    BOOST_TEST((br.status == build_status::permanent_failure));
    BOOST_TEST(br.error_msg.find("failed with exit code 126") != std::string::npos);
    BOOST_TEST(br.built_outputs.empty());
    BOOST_TEST(hook_exit_code(br.status) == 100);
    BOOST_TEST(to_string(br.status) == "PermanentFailure");
    BOOST_TEST(rest.empty());
}

BOOST_AUTO_TEST_CASE(captured_queries_reproduce_and_decode) {
    auto req = data_file("serve-query.req");
    auto rep = data_file("serve-query.rep");
    const std::string bogus = "/nix/store/00000000000000000000000000000000-missing";
    serve_client c;
    std::string mine = c.hello();
    mine += c.query_valid_paths({out_path, bogus, src}, false, false);
    mine += c.query_closure({out_path}, false);
    mine += c.query_path_infos({bogus, src});
    mine += c.export_paths({src});
    BOOST_TEST(mine == req);

    std::string_view rest = rep;
    decode_one<server_hello>(c, rest);
    BOOST_TEST((decode_one<valid_paths>(c, rest).paths == std::vector<std::string>{src, out_path}));
    BOOST_TEST((decode_one<valid_paths>(c, rest).paths == std::vector<std::string>{out_path}));
    auto infos = decode_one<path_infos>(c, rest).infos;
    BOOST_REQUIRE(infos.size() == 1u);  // the missing path is left out
    BOOST_TEST(infos[0].path == src);
    BOOST_TEST(infos[0].deriver.empty());
    BOOST_TEST(infos[0].nar_size == 136u);
    BOOST_TEST(infos[0].ca == "text:sha256:12d6wxxy067w6fyx9lqiw6z46vvr5xz4av98a3ysr2sdqmkdx19g");
    auto r = c.decode(rest);
    BOOST_TEST(std::holds_alternative<bundle_follows>(r.msg));
    BOOST_TEST(rest.substr(0, 8) == u64(1));  // the export bundle's first item
}

BOOST_AUTO_TEST_CASE(every_prefix_of_each_captured_reply_needs_more) {
    auto bytes = data_file("serve-build.rep");
    // the handshake
    for (std::size_t n = 0; n < 16; ++n) {
        serve_client c;
        c.hello();
        auto r = c.decode(std::string_view(bytes).substr(0, n));
        BOOST_TEST_REQUIRE(r.need_more());
        BOOST_TEST_REQUIRE(r.consumed == 0u);
    }
    auto reply_at = [&](std::size_t from, std::size_t length, auto make) {
        for (std::size_t n = 0; n < length; ++n) {
            auto c = connected();
            make(c);
            auto r = c.decode(std::string_view(bytes).substr(from, n));
            BOOST_TEST_REQUIRE(r.need_more(), "prefix " << n << " of the reply at " << from);
            BOOST_TEST_REQUIRE(r.consumed == 0u);
        }
        auto c = connected();
        make(c);
        auto r = c.decode(std::string_view(bytes).substr(from, length));
        BOOST_TEST_REQUIRE(!r.need_more());
        BOOST_TEST_REQUIRE(r.consumed == length);
    };
    // Layout of serve-build.rep: hello 16, valid paths 8, import 8, BuildResult, path infos, NAR 120.
    std::size_t build_at = 32, infos_end = bytes.size() - 120;
    // The BuildResult ends where the path infos start: at the out path string.
    auto infos_at = bytes.find(str(out_path), build_at);
    BOOST_REQUIRE(infos_at != std::string::npos);
    reply_at(16, 8, [](serve_client& c) { c.query_valid_paths({}, false, false); });
    reply_at(24, 8, [](serve_client& c) { c.import_paths(); });
    reply_at(build_at, infos_at - build_at, [](serve_client& c) { c.build_derivation(drv_path, capture_drv(), {}); });
    reply_at(infos_at, infos_end - infos_at, [](serve_client& c) { c.query_path_infos({out_path}); });
}

BOOST_AUTO_TEST_CASE(handshake_errors_say_what_came_instead) {
    serve_client c;
    c.hello();
    BOOST_CHECK_EXCEPTION(c.decode("bash: nix-store: command not found\n"), failure,
                          failure_with(errc::bad_input, "handshake: expected the server magic 0x5452eecb, got "
                                                        "0x696e203a68736162 ('bash: nix-store: command not found\\x0a')"));
    serve_client c2;
    c2.hello();
    BOOST_CHECK_EXCEPTION(c2.decode(u64(server_magic) + u64(0x306)), failure,
                          failure_with(errc::unsupported, "0x306; major 0x200 expected"));
    serve_client c3;
    BOOST_CHECK_THROW(c3.query_valid_paths({}, false, false), std::logic_error);  // hello first
    serve_client c4;
    c4.hello();
    BOOST_CHECK_THROW(c4.build_derivation(drv_path, capture_drv(), {}), std::logic_error);  // version unknown
    BOOST_TEST(c4.decode("x").need_more());
    BOOST_CHECK_EXCEPTION(c4.decode("xxxxxxxx"), failure, failure_with(errc::bad_input, "('xxxxxxxx')"));
    serve_client idle;
    BOOST_CHECK_EXCEPTION(idle.decode("x"), failure, failure_with(errc::bad_input, "answer no request"));
}

BOOST_AUTO_TEST_CASE(build_options_and_results_follow_the_server_minor) {
    build_options o;
    o.max_silent_time = 7;
    o.build_timeout = 9;
    o.max_log_size = 11;
    o.nr_repeats = 2;
    o.enforce_determinism = false;
    o.keep_failed = true;
    std::string drv_bytes;
    append_basic_derivation(drv_bytes, capture_drv());
    auto head = u64(8) + str(drv_path) + drv_bytes;
    {
        auto c = connected(0x207);
        BOOST_TEST(c.build_derivation(drv_path, capture_drv(), o) == head + u64(7) + u64(9) + u64(11) + u64(2) +
                                                                      u64(0) + u64(1));
        // minor 7: timesBuilt..stopTime and the built outputs follow.
        auto reply = u64(3) + str("boom") + u64(1) + u64(0) + u64(100) + u64(200) + u64(0);
        auto r = c.decode(reply);
        BOOST_TEST(r.consumed == reply.size());
        auto br = std::get<build_result>(r.msg);
        BOOST_TEST(br.error_msg == "boom");
        BOOST_TEST(br.stop_time == 200u);
    }
    {
        auto c = connected(0x202);
        BOOST_TEST(c.build_derivation(drv_path, capture_drv(), o) == head + u64(7) + u64(9) + u64(11));
        auto reply = u64(8) + str("timed out");
        auto r = c.decode(reply);
        BOOST_TEST(r.consumed == reply.size());
        BOOST_TEST(hook_exit_code(std::get<build_result>(r.msg).status) == 101);
        add_to_store_nar_request add;
        add.path = src;
        add.nar_size = 8;
        BOOST_CHECK_EXCEPTION(c.add_to_store_nar(add), failure, failure_with(errc::unsupported, "needs minor 5"));
    }
    {
        auto c = connected(0x203);  // path infos without narHash/ca/sigs before minor 4
        c.query_path_infos({src});
        auto reply = str(src) + str("") + strs({}) + u64(5) + u64(6) + str("");
        auto r = c.decode(reply);
        BOOST_TEST(r.consumed == reply.size());
        BOOST_TEST(std::get<path_infos>(r.msg).infos.at(0).nar_size == 6u);
    }
}

BOOST_AUTO_TEST_CASE(hostile_replies_are_refused_without_allocating) {
    {
        auto c = connected();
        c.build_derivation(drv_path, capture_drv(), {});
        BOOST_CHECK_EXCEPTION(c.decode(u64(3) + u64(1ull << 60)), failure,
                              failure_with(errc::too_large, "BuildResult: string of 1152921504606846976 bytes"));
    }
    {
        auto c = connected();
        c.build_derivation(drv_path, capture_drv(), {});
        auto reply = u64(0) + str("") + u64(1) + u64(0) + u64(1) + u64(2) + u64(1ull << 40);
        BOOST_CHECK_EXCEPTION(c.decode(reply), failure, failure_with(errc::too_large, "built outputs at offset"));
    }
    {
        auto c = connected();
        c.build_derivation(drv_path, capture_drv(), {});
        auto reply = u64(0) + str("") + u64(1) + u64(0) + u64(1) + u64(2) + u64(1) + str("x!out") + str("{not json");
        BOOST_CHECK_EXCEPTION(c.decode(reply), failure, failure_with(errc::bad_input, "built output 'x!out'"));
    }
    {
        auto c = connected();
        c.query_valid_paths({src}, false, false);
        BOOST_CHECK_EXCEPTION(c.decode(u64(~0ull)), failure, failure_with(errc::too_large, "path set: list of"));
    }
    {
        auto c = connected();
        c.import_paths();
        BOOST_CHECK_EXCEPTION(c.decode(u64(0)), failure, failure_with(errc::remote_failed, "expected 1 (success)"));
    }
    {
        auto c = connected();
        add_to_store_nar_request add;
        add.path = src;
        BOOST_CHECK_EXCEPTION(c.add_to_store_nar(add), failure, failure_with(errc::bad_input, "NAR size of 0"));
    }
}

BOOST_AUTO_TEST_CASE(end_of_stream_names_the_awaited_reply) {
    auto c = connected();
    std::string message;
    BOOST_TEST(!c.end_of_stream(message));
    c.build_derivation(drv_path, capture_drv(), {});
    auto code = c.end_of_stream(message);
    BOOST_TEST((code == errc::truncated));
    BOOST_TEST(message == "nix-store --serve: the server's output ended at offset 16 while waiting for a BuildResult "
                          "(BuildDerivation) (1 replies pending)");
}

BOOST_AUTO_TEST_CASE(status_to_exit_code) {
    const std::vector<std::pair<std::uint64_t, int>> table = {
        {0, 0},   {1, 0},   {2, 0},  {3, 100}, {4, 1},  {5, 100}, {6, 1},   {7, 100},
        {8, 101}, {9, 1},   {10, 1}, {11, 100}, {12, 100}, {13, 0}, {14, 1}, {99, 1},
    };
    for (auto [code, exit] : table) {
        BOOST_TEST(hook_exit_code(static_cast<build_status>(code)) == exit, "status " << code);
        BOOST_TEST(succeeded(static_cast<build_status>(code)) == (exit == 0), "status " << code);
    }
    BOOST_TEST(to_string(static_cast<build_status>(99)) == "Unknown");
    BOOST_TEST(to_string(build_status::timed_out) == "TimedOut");
}

BOOST_AUTO_TEST_SUITE_END()
