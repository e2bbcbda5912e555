// transfer layer: real closures between a fresh local store and a test host.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <fstream>
#include <set>

#include "remote/fixture.hpp"
#include "ferry/codec/codec_spec.hpp"
#include "ferry/remote/build_machine.hpp"
#include "ferry/remote/serve_connection.hpp"
#include "ferry/store/derivation.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/hash.hpp"
#include "ferry/transfer/receive.hpp"
#include "ferry/transfer/send.hpp"
#include "ferry/ssh/quote.hpp"

using namespace ferry;
using namespace ferry_test;
using namespace std::chrono_literals;
namespace serve = protocol::serve;

BOOST_TEST_GLOBAL_FIXTURE(remote_fixture);

namespace {

// a <- b <- c, and d -> {a, c}: built locally (nix-build), with a compressible
// text file, random bytes, a symlink and an executable in each.
const std::string& closure_root() {
    static std::string root = [] {
        std::string expr = write_expr("closure.nix", fmt::format(R"(let n = "{0}";
  mk = name: deps: size: derivation {{
    name = "ferry-${{name}}-${{n}}"; system = "x86_64-linux"; builder = "/bin/sh";
    args = [ "-c" "/bin/mkdir $out; echo ${{n}} ${{toString deps}} > $out/deps; /usr/bin/seq 1 ${{toString size}} > $out/text; /usr/bin/head -c ${{toString size}} /dev/urandom > $out/blob; /bin/ln -s deps $out/link; /bin/cp /bin/true $out/exe" ];
  }};
  a = mk "a" [] 300000; b = mk "b" [a] 200000; c = mk "c" [b] 100000; d = mk "d" [a c] 50000;
in d)",
                                                                 fx().nonce));
        return local_run("nix-build " + expr + " --no-out-link");
    }();
    return root;
}

std::vector<std::string> closure() { return split_lines(local_run("nix-store -qR " + closure_root())); }

std::string local_hash_base32(const std::string& path) {
    auto info = local_db().query_path_info(path);
    BOOST_REQUIRE(info);
    auto digest = store::parse_sha256(info->nar_hash);
    BOOST_REQUIRE(digest);
    return "sha256:" + store::to_nix_base32(*digest);
}

struct send_outcome {
    std::vector<std::string> missing;
    transfer::transfer_report report;
    std::vector<transfer::progress> progress;
};

// Asks the host which paths of the closure it lacks, then sends those.
send_outcome send_closure(const codec::codec_spec& codec) {
    send_outcome r;
    auto paths = closure();
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        remote::nix_remote_options ro;
        auto c = co_await remote::serve_connection::open(s, ro);
        r.missing = co_await c.query_missing(paths);
        transfer::send_options o;
        o.codec = codec;
        o.server_version = c.server_version();
        o.chunk_size = 256 << 10;  // several chunks even for this small closure
        o.on_progress = [&](const transfer::progress& p) { r.progress.push_back(p); };
        r.report = co_await transfer::send_paths(s, local_db(), r.missing, o);
        co_await c.close();
    });
    return r;
}

void check_on_host(const std::vector<std::string>& paths) {
    for (const auto& p : paths) {
        int valid = -1;
        host_run("nix-store --check-validity " + p, &valid);
        BOOST_TEST(valid == 0, p << " is not valid on the host");
        BOOST_TEST(host_run("nix-store -q --hash " + p) == local_hash_base32(p), p);
        BOOST_TEST(host_run("nix-store -q --references " + p) == local_run("nix-store -q --references " + p), p);
    }
}

void send_test(const std::string& spec) {
    host().wipe_store();
    auto paths = closure();
    BOOST_REQUIRE(paths.size() == 4u);
    auto first = send_closure(codec::parse_codec_spec(spec));
    BOOST_TEST(first.missing.size() == paths.size());
    BOOST_TEST(first.report.paths == paths.size());
    BOOST_TEST(first.report.wire_bytes > 0u);
    BOOST_REQUIRE(!first.progress.empty());
    BOOST_TEST(first.progress.back().items_done == paths.size());
    BOOST_TEST(first.progress.back().bytes_done == first.report.nar_bytes);
    BOOST_TEST_MESSAGE(spec << ": " << first.report.nar_bytes << " NAR bytes as " << first.report.wire_bytes
                            << " wire bytes in " << first.report.seconds() << " s; bottleneck "
                            << first.report.bottleneck());
    if (spec != "none") BOOST_TEST(first.report.wire_bytes < first.report.nar_bytes);
    check_on_host(paths);
    // Everything is there now: nothing is sent.
    auto second = send_closure(codec::parse_codec_spec(spec));
    BOOST_TEST(second.missing.empty());
    BOOST_TEST(second.report.paths == 0u);
    BOOST_TEST(second.report.wire_bytes == 0u);
}

// Fresh paths made on the host only (nix-store --add), for the receive tests.
std::string add_on_host(const std::string& tag, std::size_t kb) {
    std::string dir = (host().directory() / ("src-" + tag)).string();
    host_run(fmt::format("rm -rf {0}; mkdir -p {0}/sub; seq 1 {1} > {0}/text; head -c {2} /dev/urandom > {0}/sub/blob; "
                         "ln -s text {0}/link; echo {3} > {0}/nonce",
                         dir, kb * 100, kb * 1024, fx().nonce + tag));
    return host_run("nix-store --add " + dir);
}

std::vector<std::string> store_listing() {
    auto all = split_lines(local_run("ls -a /nix/store"));
    return all;
}

}  // namespace

BOOST_AUTO_TEST_CASE(send_closure_uncompressed) { send_test("none"); }
BOOST_AUTO_TEST_CASE(send_closure_zstd_1) { send_test("zstd:1"); }
BOOST_AUTO_TEST_CASE(send_closure_xz_0) { send_test("xz:0"); }

BOOST_AUTO_TEST_CASE(send_in_parallel_topological_waves) {
    host().wipe_store();
    // Wave 0 = {a, x, y} (no references inside the set): sent on two streams at
    // once; b, c, d follow wave by wave, each after its references were acknowledged.
    auto paths = closure();
    for (const char* tag : {"x", "y"}) {
        std::string file = (local().directory() / (std::string("wave-") + tag)).string();
        std::ofstream(file) << fx().nonce << tag << std::string(100000, *tag);
        paths.push_back(local_run("nix-store --add " + file));
    }
    std::vector<transfer::progress> progress;
    transfer::transfer_report report;
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        transfer::send_options o;
        o.codec = codec::parse_codec_spec("zstd:1");
        o.streams = 2;
        o.parallel_threshold = 0;
        o.on_progress = [&](const transfer::progress& p) { progress.push_back(p); };
        report = co_await transfer::send_paths(s, local_db(), paths, o);
    });
    BOOST_TEST(report.paths == paths.size());
    BOOST_REQUIRE(!progress.empty());
    BOOST_TEST(progress.back().items_done == paths.size());
    BOOST_TEST(progress.back().items_total == paths.size());
    for (std::size_t i = 1; i < progress.size(); ++i) BOOST_TEST(progress[i].bytes_done >= progress[i - 1].bytes_done);
    check_on_host(paths);
}

BOOST_AUTO_TEST_CASE(a_remote_refusal_names_the_host_and_quotes_its_stderr) {
    host().wipe_store();
    // d without its references: the remote cannot register it.
    std::vector<std::string> only_d{closure_root()};
    for (const char* spec : {"none", "zstd:1"}) {
        std::string message;
        run_async([&]() -> asio::awaitable<void> {
            auto s = co_await ssh::session::connect(host_options());
            transfer::send_options o;
            o.codec = codec::parse_codec_spec(spec);
            try {
                co_await transfer::send_paths(s, local_db(), only_d, o);
            } catch (const std::exception& e) {
                message = e.what();
            }
        });
        BOOST_TEST_MESSAGE(spec << ": " << message);
        BOOST_TEST(message.find("127.0.0.1") != std::string::npos, message);
        BOOST_TEST(message.find("remote stderr") != std::string::npos, message);
        int valid = -1;
        host_run("nix-store --check-validity " + closure_root() + " 2>/dev/null", &valid);
        BOOST_TEST(valid != 0);
    }
}

// The sender does not hash what it sends (the machine does): a local path whose
// bytes changed after registration is refused by the machine's import, and one
// whose size changed is stopped by the sender. Neither becomes valid there.
BOOST_AUTO_TEST_CASE(a_locally_corrupted_path_is_refused_and_never_registered_remotely) {
    host().wipe_store();
    for (const char* change : {"same-size", "longer"}) {
        std::string dir = (local().directory() / (std::string("corrupt-") + change)).string();
        local_run(fmt::format("rm -rf {0}; mkdir -p {0}; seq 1 20000 > {0}/text; echo {1}{2} > {0}/nonce", dir,
                              fx().nonce, change));
        std::string path = local_run("nix-store --add " + dir);
        std::string file = ssh::shell_quote(path + "/text");
        // Store files are read-only; root may still write them (what a bad disk or a stray tool does).
        local_run(std::string(change) == "longer" ? "echo more >> " + file
                                                  : "printf X | dd of=" + file + " bs=1 seek=10 conv=notrunc 2>/dev/null");
        // Put it right again afterwards: the fixture's local store must keep verifying.
        struct repair {
            std::string cmd;
            ~repair() {
                try {
                    local_run(cmd);
                } catch (const std::exception& e) {
                    BOOST_TEST_MESSAGE("could not repair the local store: " << e.what());
                }
            }
        } repaired{"cat " + ssh::shell_quote(dir + "/text") + " > " + file};
        std::string message;
        const std::vector<std::string> only{path};
        run_async([&]() -> asio::awaitable<void> {
            auto s = co_await ssh::session::connect(host_options());
            transfer::send_options o;
            o.codec = codec::parse_codec_spec("none");
            try {
                co_await transfer::send_paths(s, local_db(), only, o);
            } catch (const std::exception& e) {
                message = e.what();
            }
        });
        BOOST_TEST_MESSAGE(change << ": " << message);
        BOOST_TEST(message.find(path) != std::string::npos, message);
        BOOST_TEST(message.find(std::string(change) == "longer" ? "no longer matches its registration"
                                                                : "hash mismatch importing path") != std::string::npos,
                   message);
        // `--check-validity` fails for an invalid path: ask for the valid ones instead.
        // (Nix leaves the refused copy's files behind, invalid, for its GC: its own behaviour.)
        BOOST_TEST(host_run("nix-store --check-validity --print-invalid " + path) == path,
                   path << " became valid on the host");
    }
}

BOOST_AUTO_TEST_CASE(receive_outputs_built_on_the_host) {
    // The closure is on the host (the send tests); build something referencing it there.
    const std::string d = closure_root();
    auto paths = closure();
    std::string expr = write_expr("on_host.nix", fmt::format(R"(let n = "{0}"; d = import {1}; in derivation {{
  name = "ferry-e-${{n}}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out; echo ${{d}} > $out/uses; /usr/bin/seq 1 20000 > $out/text" ]; }})",
                                                             fx().nonce, (local().directory() / "closure.nix").string()));
    std::string drv_path = local_run("nix-instantiate " + expr);
    std::ifstream in(drv_path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto drv = store::parse_derivation(text, drv_path);
    std::string out = drv.outputs.at(0).path;
    BOOST_REQUIRE(!local_db().is_valid(out));

    send_closure(codec::parse_codec_spec("zstd:1"));  // the inputs, for the build
    std::string extra_none = add_on_host("none", 64), extra_xz = add_on_host("xz", 64);
    std::vector<transfer::transfer_report> reports;
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        auto m = co_await remote::nix_build_machine::open(s, remote::nix_remote_options());
        co_await m->protect(paths);
        auto missing = co_await m->missing_paths(paths);
        BOOST_TEST(missing.empty());
        remote::build_request req{drv_path, remote::to_basic_derivation(drv, paths), {}};
        remote::log_sink none;
        auto result = co_await m->build(req, none);
        BOOST_TEST(result.status == serve::build_status::built, result.error_msg);
        std::vector<std::string> outs{out};
        co_await m->protect(outs);

        store::temp_roots roots(local_db().config());
        transfer::receive_options o;
        o.codec = codec::parse_codec_spec("zstd:1");
        o.locked_by_caller = {out};
        reports.push_back(co_await transfer::receive_paths(s, local_db(), roots, outs, o));
        o.locked_by_caller.clear();
        o.codec = codec::parse_codec_spec("none");
        std::vector<std::string> one{extra_none}, two{extra_xz};
        reports.push_back(co_await transfer::receive_paths(s, local_db(), roots, one, o));
        o.codec = codec::parse_codec_spec("xz:0");
        reports.push_back(co_await transfer::receive_paths(s, local_db(), roots, two, o));
        // Already valid locally: nothing is asked for.
        reports.push_back(co_await transfer::receive_paths(s, local_db(), roots, two, o));
        co_await m->finish();
    });
    BOOST_REQUIRE(reports.size() == 4u);
    BOOST_TEST(reports[0].paths == 1u);
    BOOST_TEST(reports[0].wire_bytes < reports[0].nar_bytes);
    BOOST_TEST(reports[1].paths == 1u);
    BOOST_TEST(reports[2].paths == 1u);
    BOOST_TEST(reports[3].paths == 0u);
    for (const auto& p : {out, extra_none, extra_xz}) {
        BOOST_TEST(local_db().is_valid(p), p);
        BOOST_TEST(local_run("nix-store -q --hash " + p) == host_run("nix-store -q --hash " + p), p);
    }
    BOOST_TEST(local_run("nix-store -q --references " + out) == d);
    std::string verify_err;
    int st = local().run("nix-store --verify --check-contents 2>&1", &verify_err);
    BOOST_TEST(st == 0, verify_err);
    BOOST_TEST(verify_err.find("error") == std::string::npos, verify_err);
    BOOST_TEST(verify_err.find("modified") == std::string::npos, verify_err);
    BOOST_TEST(host_run("ls /nix/var/nix/gcroots").find("ferry-") == std::string::npos, "remote roots left behind");
}

BOOST_AUTO_TEST_CASE(corrupt_or_truncated_streams_are_rejected_with_nothing_registered) {
    std::string p = add_on_host("corrupt", 256);
    std::string tmp = (host().directory() / ("bundle-" + fx().nonce)).string();
    struct stream_case {
        std::string codec, command;
    };
    std::vector<stream_case> variants{
        // A flipped byte inside the zstd stream.
        {"zstd:1", fmt::format("nix-store --export {0} | zstd -1 -c > {1}; printf '\\377\\377\\377\\377' | "
                               "dd of={1} bs=1 seek=2000 conv=notrunc 2>/dev/null; cat {1}",
                               p, tmp)},
        // The bundle cut off inside the NAR.
        {"none", fmt::format("nix-store --export {} | head -c 100000", p)},
        // A NAR whose token is damaged (still the right length).
        {"none", fmt::format("nix-store --export {0} > {1}; printf 'X' | dd of={1} bs=1 seek=20 conv=notrunc "
                             "2>/dev/null; cat {1}",
                             p, tmp)},
    };
    auto before = store_listing();
    for (const auto& v : variants) {
        std::string message;
        run_async([&]() -> asio::awaitable<void> {
            auto s = co_await ssh::session::connect(host_options());
            auto ch = co_await s.exec("sh -c " + ssh::shell_quote(v.command));
            store::temp_roots roots(local_db().config());
            transfer::receive_options o;
            o.codec = codec::parse_codec_spec(v.codec);
            bool accepted = false;
            try {
                co_await transfer::receive_bundle(ch, s.host(), local_db(), roots, o);
                accepted = true;
            } catch (const std::exception& e) {
                message = e.what();
            }
            BOOST_TEST(!accepted, "a corrupt stream was accepted: " << v.command);
        });
        BOOST_TEST_MESSAGE(v.codec << ": " << message);
        BOOST_TEST(message.find("127.0.0.1") != std::string::npos, message);
        BOOST_TEST(!local_db().is_valid(p));
        BOOST_TEST(store_listing() == before, "something was left in /nix/store after: " << message);
    }
}

// Figures for docs/transfer.md, not a test: run explicitly with
//   test_transfer --run_test=transfer_speed --log_level=message
// FERRY_BENCH_MB (default 300) sets the closure size (real binaries from /usr/lib
// cut into 5 MB paths, no references).
BOOST_AUTO_TEST_CASE(transfer_speed, *boost::unit_test::disabled()) {
    using clock = std::chrono::steady_clock;
    const char* env = std::getenv("FERRY_BENCH_MB");
    const int mb = env ? std::atoi(env) : 300;
    std::string src = (local().directory() / "bench-src").string();
    local_run(fmt::format("rm -rf {0}; mkdir -p {0}; cat /usr/lib/x86_64-linux-gnu/*.so* /usr/bin/* 2>/dev/null | "
                          "head -c {1}M > {0}/all; cd {0} && split -b 5M -d -a 3 all part; rm all",
                          src, mb));
    auto parts = split_lines(local_run("ls " + src));
    std::vector<std::string> paths;
    for (const auto& p : parts) {
        local_run(fmt::format("mkdir -p {0}/d{1}-{2} && mv {0}/{1} {0}/d{1}-{2}/data", src, p, fx().nonce));
        paths.push_back(local_run(fmt::format("nix-store --add {}/d{}-{}", src, p, fx().nonce)));
    }
    std::uint64_t nar_total = 0;
    for (const auto& p : paths) nar_total += local_db().query_path_info(p)->nar_size;
    BOOST_TEST_MESSAGE(fmt::format("closure: {} paths, {:.1f} MB of NAR", paths.size(), nar_total / 1e6));
    auto mbps = [&](double secs) { return nar_total / 1e6 / secs; };

    auto ferry_send = [&](const std::string& spec, int streams) {
        host().wipe_store();
        auto start = clock::now();
        transfer::transfer_report total;
        run_async([&]() -> asio::awaitable<void> {
            auto s = co_await ssh::session::connect(host_options());
            remote::nix_remote_options ro;
            auto c = co_await remote::serve_connection::open(s, ro);
            auto missing = co_await c.query_missing(paths);
            transfer::send_options o;
            o.codec = codec::parse_codec_spec(spec);
            o.server_version = c.server_version();
            o.streams = static_cast<unsigned>(streams);  // no references: one wave
            total = co_await transfer::send_paths(s, local_db(), missing, o);
            co_await c.close();
        });
        double secs = std::chrono::duration<double>(clock::now() - start).count();
        std::string stages;
        for (const auto& st : total.stages)
            stages += fmt::format(" {}={:.0f}%", st.name,
                                  100.0 * std::chrono::duration<double>(st.busy).count() / secs);
        BOOST_TEST_MESSAGE(fmt::format("ferry send {} x{}: {:.2f} s, {:.1f} MB/s closure, ratio {:.2f}, busy:{}", spec,
                                       streams, secs, mbps(secs), double(nar_total) / total.wire_bytes, stages));
        int valid = -1;
        host_run("nix-store --check-validity " + paths.back(), &valid);
        BOOST_TEST(valid == 0);
    };
    for (const char* spec : {"none", "zstd:1", "zstd:3", "xz:0"}) ferry_send(spec, 1);
    ferry_send("none", 2);
    ferry_send("zstd:1", 2);
    ferry_send("none", 3);

    // Nix's own tools in the same run.
    host().wipe_store();
    std::string all;
    for (const auto& p : paths) all += " " + p;
    auto start = clock::now();
    local_run(fmt::format("NIX_SSHOPTS='-F {}' nix-copy-closure --to {}{} 2>&1", host().ssh_config().string(),
                          host().name(), all));
    double secs = std::chrono::duration<double>(clock::now() - start).count();
    BOOST_TEST_MESSAGE(fmt::format("nix-copy-closure --to: {:.2f} s, {:.1f} MB/s", secs, mbps(secs)));

    host().wipe_store();
    std::string bundle = (host().directory() / "bench.bundle").string();
    local_run("nix-store --export" + all + " > " + bundle);
    start = clock::now();
    host_run("nix-store --import < " + bundle + " > /dev/null");
    secs = std::chrono::duration<double>(clock::now() - start).count();
    BOOST_TEST_MESSAGE(fmt::format("nix-store --import on the host (no ssh): {:.2f} s, {:.1f} MB/s", secs, mbps(secs)));
    std::filesystem::remove(bundle);

    // Receive: everything back into a wiped local side is not possible (the
    // fixture's store holds the sources), so fetch host-only copies instead.
    host().wipe_store();
    std::vector<std::string> remote_paths;
    for (int i = 0; i < mb / 5; ++i) {
        if (i == 0)
            host_run(fmt::format("mkdir -p {0}/r && cd {0}/r && cat /usr/lib/x86_64-linux-gnu/*.so* /usr/bin/* 2>/dev/null "
                                 "| head -c {1}M > all && split -b 5M -d -a 3 all part && rm all",
                                 host().directory().string(), mb));
    }
    auto rparts = split_lines(host_run("ls " + (host().directory() / "r").string()));
    for (const auto& p : rparts) {
        std::string d = fmt::format("{}/r/{}-recv-{}", host().directory().string(), p, fx().nonce);
        host_run(fmt::format("mkdir {0} && mv {1}/r/{2} {0}/data", d, host().directory().string(), p));
        remote_paths.push_back(host_run("nix-store --add " + d));
    }
    for (const char* spec : {"zstd:1", "none"}) {
        if (std::string(spec) == "none") {
            // Second round: make the paths invalid locally again.
            local_run("nix-store --delete" + [&] {
                std::string a;
                for (const auto& p : remote_paths) a += " " + p;
                return a;
            }() + " >/dev/null 2>&1");
        }
        start = clock::now();
        transfer::transfer_report r;
        run_async([&]() -> asio::awaitable<void> {
            auto s = co_await ssh::session::connect(host_options());
            store::temp_roots roots(local_db().config());
            transfer::receive_options o;
            o.codec = codec::parse_codec_spec(spec);
            r = co_await transfer::receive_paths(s, local_db(), roots, remote_paths, o);
        });
        secs = std::chrono::duration<double>(clock::now() - start).count();
        BOOST_TEST_MESSAGE(fmt::format("ferry receive {}: {} paths, {:.2f} s, {:.1f} MB/s closure, ratio {:.2f}, "
                                       "bottleneck {}",
                                       spec, r.paths, secs, r.nar_bytes / 1e6 / secs,
                                       double(r.nar_bytes) / r.wire_bytes, r.bottleneck()));
    }
}
