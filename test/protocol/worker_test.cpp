// Byte scripts for the daemon worker protocol client, both dialects, written from
// the daemons' sources: Nix tag 2.8.1 (src/libstore/daemon.cc, remote-store.cc,
// path-info.cc, src/libutil/serialise.cc) and Guix 43770a9d8ac
// (nix/nix-daemon/nix-daemon.cc, nix/libstore/local-store.cc, guix/store.scm).
#include <boost/test/unit_test.hpp>

#include "byte_script.hpp"
#include "ferry/protocol/worker.hpp"

using namespace ferry::protocol::worker;
using namespace ferry_test;
using ferry::errc;
using ferry::failure;

namespace {

const std::string nix_path = "/nix/store/n459321dw3a4anpv54kdpzx9bixfxk0s-ferry-worker-test";
const std::string nix_drv = "/nix/store/alv7xn8kb7fn2m8bp19npf8jah87wg9i-ferry-worker-test.drv";
const std::string guix_path = "/gnu/store/6fbh8phmp3izay6c0dpggpxhcjn4xlm5-hello-2.12.1";
const std::string hash16 = "b025803c3adbcf34a6dce6c54bf9be18b8dcc316ee050f6ebbd96fdccf35ec20";

std::string hello_from(std::uint64_t version) { return u64(server_magic) + u64(version); }

// The end of an operation's stderr stream (stopWork: daemon.cc:115, nix-daemon.cc:224).
const std::string last = u64(stderr_code::last);

std::string log(std::string_view text) { return u64(stderr_code::next) + str(text); }
std::string write(std::string_view data) { return u64(stderr_code::write) + str(data); }

// Nix's structured error, serialise.cc:354-369: "Error", level, name, msg, havePos
// 0, traces (havePos 0 + hint each).
std::string nix_error(std::string_view msg, std::vector<std::string> traces = {}) {
    auto out = u64(stderr_code::error) + str("Error") + u64(0) + str("Error") + str(msg) + u64(0) + u64(traces.size());
    for (const auto& t : traces) out += u64(0) + str(t);
    return out;
}

// Guix's error frame, nix-daemon.cc:226-227: message, status.
std::string guix_error(std::string_view msg, std::uint64_t status = 1) {
    return u64(stderr_code::error) + str(msg) + u64(status);
}

template <class T>
T decode_one(worker_client& c, std::string_view& rest) {
    auto r = c.decode(rest);
    BOOST_TEST_REQUIRE(!r.need_more(), "need more with " << rest.size() << " bytes left");
    BOOST_TEST_REQUIRE(std::holds_alternative<T>(r.msg), "unexpected message " << r.msg.index());
    rest.remove_prefix(r.consumed);
    return std::get<T>(std::move(r.msg));
}

// A client after the whole handshake with a daemon of `version`.
worker_client connected(std::uint64_t version) {
    worker_client c;
    c.hello();
    std::string script = hello_from(version);
    std::string_view rest = script;
    decode_one<server_hello>(c, rest);
    c.finish_handshake();
    std::string tail = (dialect_of(version) == dialect::nix && (version & 0xff) >= 33 ? str("2.8.1") : "") + last;
    rest = tail;
    if (tail.size() > last.size()) decode_one<daemon_version>(c, rest);
    decode_one<done>(c, rest);
    BOOST_REQUIRE(rest.empty());
    return c;
}

template <class Request>
auto connected_with(std::uint64_t version, Request request) {
    return [=] {
        auto c = connected(version);
        request(c);
        return c;
    };
}

}  // namespace

BOOST_AUTO_TEST_SUITE(worker_protocol)

// Version ranges found in the trees' history: Nix 0x114 (2.0), 0x115 (2.3), 0x120
// (2.4), 0x122 (2.8), 0x127 (today); Guix 0x10e, 0x10f, then 0x160 (f9aefa2d5fb,
// 2016) ... 0x163 (6ef61cc4c30, 2018), 0x164 (1e47148f46e, 2023).
BOOST_AUTO_TEST_CASE(dialect_follows_the_version_range_of_each_family) {
    BOOST_TEST((dialect_of(0x115) == dialect::nix));
    BOOST_TEST((dialect_of(0x122) == dialect::nix));
    BOOST_TEST((dialect_of(0x127) == dialect::nix));
    BOOST_TEST((dialect_of(0x160) == dialect::guix));
    BOOST_TEST((dialect_of(0x163) == dialect::guix));
    BOOST_TEST((dialect_of(0x164) == dialect::guix));
    BOOST_CHECK_EXCEPTION(dialect_of(0x10f), failure, failure_with(errc::unsupported, "too old"));
    BOOST_CHECK_EXCEPTION(dialect_of(0x114), failure, failure_with(errc::unsupported, "too old"));
    BOOST_CHECK_EXCEPTION(dialect_of(0x207), failure, failure_with(errc::unsupported, "major 0x100"));
    BOOST_TEST(client_version_for(dialect::nix) == 0x122u);
    BOOST_TEST(client_version_for(dialect::guix) == 0x164u);
}

// Nix 2.8: magic, then server magic + version (daemon.cc:988-990), then the client's
// version, affinity, reserveSpace (remote-store.cc:214-222); the daemon's version
// string for minor >= 33 (daemon.cc:1018), then the startup stderr stream.
BOOST_AUTO_TEST_CASE(nix_handshake_reads_the_daemon_version_string) {
    worker_client c;
    BOOST_TEST(c.hello() == u64(client_magic));
    std::string script = hello_from(0x122) + str("2.8.1") + log("startup note\n") + last;
    std::string_view rest = script;
    auto h = decode_one<server_hello>(c, rest);
    BOOST_TEST(h.version == 0x122u);
    BOOST_TEST((h.dialect == dialect::nix));
    BOOST_TEST(c.finish_handshake() == u64(0x122) + u64(0) + u64(0));
    BOOST_TEST(decode_one<daemon_version>(c, rest).text == "2.8.1");
    BOOST_TEST(decode_one<log_line>(c, rest).text == "startup note\n");
    decode_one<done>(c, rest);
    BOOST_TEST(rest.empty());
    BOOST_TEST(c.pending() == 0u);
    BOOST_TEST(c.stream_offset() == script.size());
}

// A newer Nix daemon (0x126) gets ferry's 0x122: the version in force is 0x122.
BOOST_AUTO_TEST_CASE(newer_nix_daemon_is_spoken_to_at_ferrys_version) {
    worker_client c;
    c.hello();
    std::string script = hello_from(0x126);
    std::string_view rest = script;
    decode_one<server_hello>(c, rest);
    BOOST_TEST(c.finish_handshake().substr(0, 8) == u64(0x122));
    BOOST_TEST(c.effective_version() == 0x122u);
    std::string tail = str("2.24.0") + last;
    rest = tail;
    BOOST_TEST(decode_one<daemon_version>(c, rest).text == "2.24.0");
    decode_one<done>(c, rest);
}

// Nix 2.4 (0x120, minor 32) sends no version string.
BOOST_AUTO_TEST_CASE(nix_before_minor_33_sends_no_version_string) {
    worker_client c;
    c.hello();
    std::string script = hello_from(0x120);
    std::string_view rest = script;
    decode_one<server_hello>(c, rest);
    c.finish_handshake();
    rest = last;
    decode_one<done>(c, rest);
}

// Guix: the same greeting (nix-daemon.cc:797-809), never a version string: 0x163's
// minor 0x63 is not Nix's minor 99. ferry announces Guix's own 0x164 (store.scm:453).
BOOST_AUTO_TEST_CASE(guix_handshake_expects_no_version_string) {
    worker_client c;
    c.hello();
    std::string script = hello_from(0x163) + last;
    std::string_view rest = script;
    auto h = decode_one<server_hello>(c, rest);
    BOOST_TEST((h.dialect == dialect::guix));
    BOOST_TEST(c.finish_handshake() == u64(0x164) + u64(0) + u64(0));
    decode_one<done>(c, rest);
    BOOST_TEST(rest.empty());

    // A version string here would be read as a stderr code: 5 is none.
    worker_client d;
    d.hello();
    std::string wrong = hello_from(0x163);
    std::string_view w = wrong;
    decode_one<server_hello>(d, w);
    d.finish_handshake();
    BOOST_CHECK_EXCEPTION(d.decode(str("1.4.0")), failure,
                          failure_with(errc::bad_input, "unknown stderr message code 0x5"));
}

BOOST_AUTO_TEST_CASE(handshake_failures_name_what_arrived) {
    worker_client c;
    c.hello();
    BOOST_CHECK_EXCEPTION(c.decode("bash: nix-daemon: command not"), failure,
                          failure_with(errc::bad_input, "bash: nix-da"));
    worker_client old;
    old.hello();
    BOOST_CHECK_EXCEPTION(old.decode(hello_from(0x10f)), failure, failure_with(errc::unsupported, "0x10f"));
    worker_client early;
    early.hello();
    early.decode(hello_from(0x122));
    BOOST_CHECK_EXCEPTION(early.decode(last), failure, failure_with(errc::bad_input, "before the client sent"));
    BOOST_CHECK_THROW(worker_client().query_path_info(nix_path), std::logic_error);
}

BOOST_AUTO_TEST_CASE(every_prefix_of_the_handshakes_needs_more) {
    auto fresh = [] {
        worker_client c;
        c.hello();
        return c;
    };
    check_every_prefix_needs_more(hello_from(0x122), fresh);
    check_every_prefix_needs_more(hello_from(0x163), fresh);
    auto after_hello = [](std::uint64_t v) {
        return [v] {
            worker_client c;
            c.hello();
            c.decode(hello_from(v));
            c.finish_handshake();
            return c;
        };
    };
    check_every_prefix_needs_more(str("2.8.1"), after_hello(0x122));
    check_every_prefix_needs_more(last, after_hello(0x163));
}

// Nix 2.8 ExportPath (daemon.cc:496-505): path, an ignored flag, then the export
// data as STDERR_WRITE pieces (TunnelSink, daemon.cc:155-164), log and activity
// messages between them, STDERR_LAST, u64 1.
BOOST_AUTO_TEST_CASE(nix_export_streams_data_then_one) {
    auto c = connected(0x122);
    BOOST_TEST(c.export_path(nix_path, true) == u64(16) + str(nix_path) + u64(1));
    auto start_activity = u64(stderr_code::start_activity) + u64(7) + u64(3) + u64(100) +
                          str("copying path") + u64(2) + u64(0) + u64(42) + u64(1) + str("field") + u64(0);
    auto result = u64(stderr_code::result) + u64(7) + u64(105) + u64(1) + u64(0) + u64(10);
    auto stop_activity = u64(stderr_code::stop_activity) + u64(7);
    std::string script = log("exporting\n") + write("nix-archive-1 part one") + start_activity + result +
                         write("second part") + stop_activity + last + u64(1);
    std::string_view rest = script;
    BOOST_TEST(decode_one<log_line>(c, rest).text == "exporting\n");
    BOOST_TEST(decode_one<data_chunk>(c, rest).bytes == "nix-archive-1 part one");
    auto a = decode_one<activity>(c, rest);
    BOOST_TEST(a.id == 7u);
    BOOST_TEST(a.text == "copying path");
    BOOST_TEST(decode_one<activity>(c, rest).code == stderr_code::result);
    BOOST_TEST(decode_one<data_chunk>(c, rest).bytes == "second part");
    decode_one<activity>(c, rest);
    decode_one<done>(c, rest);
    BOOST_TEST(rest.empty());
    BOOST_TEST(c.pending() == 0u);

    auto exporting = connected_with(0x122, [](worker_client& w) { w.export_path(nix_path, true); });
    for (const auto& message : {log("exporting\n"), write("nix-archive-1 part one"), start_activity, result,
                                stop_activity, last + u64(1)})
        check_every_prefix_needs_more(message, exporting);
}

// Guix ExportPath (nix-daemon.cc:457-475): sign is honoured; 64 KiB TunnelSink
// pieces; STDERR_LAST, 1. No activities exist in Guix.
BOOST_AUTO_TEST_CASE(guix_export_streams_data_then_one) {
    auto c = connected(0x163);
    BOOST_TEST(c.export_path(guix_path, false) == u64(16) + str(guix_path) + u64(0));
    std::string script = log("exporting path `" + guix_path + "'\n") + write(std::string(65536, 'x')) +
                         write("tail") + last + u64(1);
    std::string_view rest = script;
    decode_one<log_line>(c, rest);
    BOOST_TEST(decode_one<data_chunk>(c, rest).bytes.size() == 65536u);
    BOOST_TEST(decode_one<data_chunk>(c, rest).bytes == "tail");
    decode_one<done>(c, rest);
    BOOST_TEST(rest.empty());
    auto exporting = connected_with(0x163, [](worker_client& w) { w.export_path(guix_path, true); });
    check_every_prefix_needs_more(write("tail") , exporting);
    check_every_prefix_needs_more(last + u64(1), exporting);

    auto g = connected(0x164);
    g.export_path(guix_path, true);
    BOOST_CHECK_EXCEPTION(g.decode(u64(stderr_code::start_activity) + u64(1)), failure,
                          failure_with(errc::bad_input, "STDERR_START_ACTIVITY"));
}

// Nix >= 26: structured errors (serialise.cc:354-369); status 1 (Error's default).
BOOST_AUTO_TEST_CASE(nix_structured_error_ends_the_operation) {
    auto c = connected(0x122);
    c.export_path(nix_path, false);
    std::string script = log("note\n") + nix_error("path '" + nix_path + "' is not valid", {"while exporting"});
    std::string_view rest = script;
    decode_one<log_line>(c, rest);
    auto e = decode_one<daemon_error>(c, rest);
    BOOST_TEST(e.message == "path '" + nix_path + "' is not valid");
    BOOST_TEST(e.status == 1u);
    BOOST_TEST((e.traces == std::vector<std::string>{"while exporting"}));
    BOOST_TEST(c.pending() == 0u);
    auto exporting = connected_with(0x122, [](worker_client& w) { w.export_path(nix_path, false); });
    check_every_prefix_needs_more(nix_error("boom", {"a", "b"}), exporting);

    auto bad_pos = u64(stderr_code::error) + str("Error") + u64(0) + str("Error") + str("m") + u64(1);
    BOOST_CHECK_EXCEPTION(exporting().decode(bad_pos), failure, failure_with(errc::unsupported, "havePos"));
    auto bad_type = u64(stderr_code::error) + str("Oops") + u64(0);
    BOOST_CHECK_EXCEPTION(exporting().decode(bad_type), failure, failure_with(errc::bad_input, "'Oops'"));
}

// Nix before minor 26 (e.g. 2.3's 0x115): message + status (daemon.cc:120).
BOOST_AUTO_TEST_CASE(old_nix_error_is_message_and_status) {
    auto c = connected(0x115);
    c.add_temp_root(nix_path);
    std::string script = u64(stderr_code::error) + str("no space") + u64(101);
    std::string_view rest = script;
    auto e = decode_one<daemon_error>(c, rest);
    BOOST_TEST(e.message == "no space");
    BOOST_TEST(e.status == 101u);
}

BOOST_AUTO_TEST_CASE(guix_error_is_message_and_status) {
    auto c = connected(0x163);
    c.export_path(guix_path, true);
    std::string script = guix_error("cannot sign: no key", 1);
    std::string_view rest = script;
    auto e = decode_one<daemon_error>(c, rest);
    BOOST_TEST(e.message == "cannot sign: no key");
    BOOST_TEST(e.status == 1u);
    check_every_prefix_needs_more(script, connected_with(0x163, [](worker_client& w) { w.export_path(guix_path, true); }));
}

// Nix >= 17: "valid" flag, then path-info.cc:35-43 (base16 hash, minor >= 16:
// ultimate, sigs, ca); an invalid path is a 0 flag (daemon.cc:797-816).
BOOST_AUTO_TEST_CASE(nix_query_path_info_valid_and_invalid) {
    auto c = connected(0x122);
    BOOST_TEST(c.query_path_info(nix_path) == u64(26) + str(nix_path));
    std::string info = str(nix_drv) + str(hash16) + strs({nix_path}) + u64(1795463364) + u64(136) + u64(1) +
                       strs({"cache.example:c2ln"}) + str("text:sha256:12d6");
    std::string script = last + u64(1) + info;
    std::string_view rest = script;
    auto r = decode_one<path_info_reply>(c, rest);
    BOOST_REQUIRE(r.info);
    BOOST_TEST(r.info->deriver == nix_drv);
    BOOST_TEST(r.info->nar_hash == hash16);
    BOOST_TEST((r.info->references == std::vector<std::string>{nix_path}));
    BOOST_TEST(r.info->registration_time == 1795463364u);
    BOOST_TEST(r.info->nar_size == 136u);
    BOOST_TEST(r.info->ultimate);
    BOOST_TEST((r.info->sigs == std::vector<std::string>{"cache.example:c2ln"}));
    BOOST_TEST(r.info->ca == "text:sha256:12d6");
    BOOST_TEST(rest.empty());

    auto querying = connected_with(0x122, [](worker_client& w) { w.query_path_info(nix_path); });
    check_every_prefix_needs_more(script, querying);
    auto q = querying();
    std::string invalid = last + u64(0);
    rest = invalid;
    BOOST_TEST(!decode_one<path_info_reply>(q, rest).info);
    BOOST_CHECK_EXCEPTION(querying().decode(last + u64(2)), failure, failure_with(errc::bad_input, "\"valid\""));
}

// Guix: no flag, no trust fields (nix-daemon.cc:719-729); an invalid path is the
// error "path `P' is not valid" (local-store.cc:616), which ferry reads as "invalid".
BOOST_AUTO_TEST_CASE(guix_query_path_info_valid_and_invalid) {
    auto c = connected(0x163);
    c.query_path_info(guix_path);
    std::string script = last + str("") + str(hash16) + strs({guix_path}) + u64(1700000000) + u64(4096);
    std::string_view rest = script;
    auto r = decode_one<path_info_reply>(c, rest);
    BOOST_REQUIRE(r.info);
    BOOST_TEST(r.info->deriver.empty());
    BOOST_TEST(r.info->nar_hash == hash16);
    BOOST_TEST(r.info->nar_size == 4096u);
    BOOST_TEST(r.info->sigs.empty());
    BOOST_TEST(rest.empty());
    auto querying = connected_with(0x163, [](worker_client& w) { w.query_path_info(guix_path); });
    check_every_prefix_needs_more(script, querying);

    auto q = querying();
    std::string invalid = guix_error("path `" + guix_path + "' is not valid");
    rest = invalid;
    BOOST_TEST(!decode_one<path_info_reply>(q, rest).info);
    auto other = querying();
    std::string failed = guix_error("database is locked");
    rest = failed;
    BOOST_TEST(decode_one<daemon_error>(other, rest).message == "database is locked");
}

// AddTempRoot: path; STDERR_LAST, 1 (daemon.cc:639-645, nix-daemon.cc:516-522).
BOOST_AUTO_TEST_CASE(add_temp_root_in_both_dialects) {
    for (std::uint64_t version : {0x122, 0x163}) {
        auto c = connected(version);
        BOOST_TEST(c.add_temp_root(nix_path) == u64(11) + str(nix_path));
        std::string script = last + u64(1);
        std::string_view rest = script;
        decode_one<done>(c, rest);
        check_every_prefix_needs_more(script, connected_with(version, [](worker_client& w) { w.add_temp_root("/x"); }));
        BOOST_CHECK_EXCEPTION(connected_with(version, [](worker_client& w) { w.add_temp_root("/x"); })().decode(
                                  last + u64(0)),
                              failure, failure_with(errc::bad_input, "expected 1"));
    }
}

BOOST_AUTO_TEST_CASE(pipelined_requests_decode_in_order) {
    auto c = connected(0x122);
    c.add_temp_root(nix_path);
    c.query_path_info(nix_path);
    std::string script = last + u64(1) + last + u64(0);
    std::string_view rest = script;
    BOOST_TEST(c.awaited() == "AddTempRoot of " + nix_path);
    decode_one<done>(c, rest);
    BOOST_TEST(!decode_one<path_info_reply>(c, rest).info);
    BOOST_TEST(c.pending() == 0u);
    BOOST_CHECK_EXCEPTION(c.decode(last), failure, failure_with(errc::bad_input, "answer no request"));
}

BOOST_AUTO_TEST_CASE(huge_lengths_fail_without_allocating) {
    auto exporting = connected_with(0x122, [](worker_client& w) { w.export_path(nix_path, false); });
    const auto huge = u64(std::uint64_t{1} << 60);
    BOOST_CHECK_EXCEPTION(exporting().decode(u64(stderr_code::next) + huge), failure,
                          failure_with(errc::too_large, "1152921504606846976"));
    BOOST_CHECK_EXCEPTION(exporting().decode(u64(stderr_code::write) + huge), failure,
                          failure_with(errc::too_large, "exceeds the limit"));
    BOOST_CHECK_EXCEPTION(exporting().decode(u64(stderr_code::start_activity) + u64(1) + u64(0) + u64(0) + str("") +
                                             huge),
                          failure, failure_with(errc::too_large, "activity fields"));
    auto querying = connected_with(0x122, [](worker_client& w) { w.query_path_info(nix_path); });
    BOOST_CHECK_EXCEPTION(querying().decode(last + u64(1) + str("") + str(hash16) + huge), failure,
                          failure_with(errc::too_large, "list of"));
    auto guix = connected_with(0x163, [](worker_client& w) { w.export_path(guix_path, false); });
    BOOST_CHECK_EXCEPTION(guix().decode(u64(stderr_code::error) + huge), failure,
                          failure_with(errc::too_large, "exceeds the limit"));
}

BOOST_AUTO_TEST_CASE(unknown_and_refused_stderr_codes_fail_clearly) {
    auto exporting = connected_with(0x122, [](worker_client& w) { w.export_path(nix_path, false); });
    BOOST_CHECK_EXCEPTION(exporting().decode(u64(0x12345678)), failure,
                          failure_with(errc::bad_input, "unknown stderr message code 0x12345678"));
    BOOST_CHECK_EXCEPTION(exporting().decode(u64(stderr_code::read) + u64(32768)), failure,
                          failure_with(errc::unsupported, "32768 byte(s) of input"));
    auto rooting = connected_with(0x122, [](worker_client& w) { w.add_temp_root(nix_path); });
    BOOST_CHECK_EXCEPTION(rooting().decode(write("x")), failure, failure_with(errc::bad_input, "no data stream"));
    // The step is named in the message: protocol family and operation.
    BOOST_CHECK_EXCEPTION(rooting().decode(u64(0x99)), failure,
                          failure_with(errc::bad_input, "Nix daemon worker protocol, AddTempRoot of " + nix_path));
}

BOOST_AUTO_TEST_SUITE_END()
