// transfer layer on one shared fixture closure of 301 paths with a 105 MiB file:
// round trips through every codec (send into the wiped host, receive into a fresh
// local store), a host without zstd, nothing to send, and the remote importer or
// exporter dying mid-stream. The closure is generated once per run (static).
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>

#include "remote/fixture.hpp"
#include "ferry/codec/codec_spec.hpp"
#include "ferry/remote/serve_connection.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/hash.hpp"
#include "ferry/store/nar_dump.hpp"
#include "ferry/transfer/auto_probe.hpp"
#include "ferry/transfer/receive.hpp"
#include "ferry/transfer/send.hpp"

using namespace ferry;
using namespace ferry_test;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t small_paths = 300;
constexpr std::size_t big_index = 150;  // in the middle: later paths may refer to it
constexpr std::uint64_t big_file_bytes = std::uint64_t{97} << 20;  // 101.7 MB

struct xorshift {
    std::uint64_t x;
    std::uint64_t next() {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        return x;
    }
};

void write_file(const fs::path& p, const std::string& bytes, bool executable = false) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << bytes;
    ::chmod(p.c_str(), executable ? 0555 : 0444);
}

// Text-like bytes: words from a small vocabulary (zstd:1 ~3x).
std::string text_bytes(std::size_t n, xorshift& r) {
    static const char* words[] = {"store", "path", "closure", "ferry", "build", "hook", "remote", "nar",
                                  "derivation", "output", "link", "channel", "stream", "codec", "level", "frame"};
    std::string s;
    while (s.size() < n) {
        s += words[r.next() % 16];
        s += (r.next() % 8 == 0) ? '\n' : ' ';
        if (r.next() % 5 == 0) s += std::to_string(r.next() % 100000);
    }
    s.resize(n);
    return s;
}

// The big file, cheap to make and to compress with xz:0 but not trivial: per 4 KiB,
// 64 fresh pseudo-random bytes and 4032 copied from a 64 KiB pool at a random
// offset (xz's cost is per literal byte; long matches are cheap for every codec).
void write_big_file(const fs::path& p, std::uint64_t bytes) {
    fs::create_directories(p.parent_path());
    xorshift r{0x2545f4914f6cdd1dull};
    std::string pool(64 << 10, '\0');
    for (std::size_t i = 0; i + 8 <= pool.size(); i += 8) {
        auto v = r.next();
        std::memcpy(pool.data() + i, &v, 8);
    }
    std::ofstream out(p, std::ios::binary);
    std::string buf;
    for (std::uint64_t done = 0; done < bytes;) {
        buf.clear();
        while (buf.size() < (1u << 20)) {
            for (int i = 0; i < 8; ++i) {
                auto v = r.next();
                buf.append(reinterpret_cast<const char*>(&v), 8);
            }
            buf.append(pool, r.next() % (pool.size() - 4032), 4032);
        }
        auto n = std::min<std::uint64_t>(buf.size(), bytes - done);
        out.write(buf.data(), static_cast<std::streamsize>(n));
        done += n;
    }
    out.close();
    ::chmod(p.c_str(), 0444);
}

struct fixture_closure {
    std::vector<std::string> paths;  // all of them, references first
    std::string big;
    std::uint64_t nar_bytes = 0;
};

// Written straight into the local store and registered (nix-build of 300
// derivations would take most of the budget). Path i refers to up to 2 earlier ones.
const fixture_closure& closure() {
    static fixture_closure c = [] {
        fixture_closure c;
        std::vector<store::path_info> infos;
        xorshift r{0x9e3779b97f4a7c15ull};
        for (std::size_t i = 0; i <= small_paths; ++i) {
            auto digest = store::sha256_of(fmt::format("ferry-transfer-closure:{}:{}", fx().nonce, i));
            std::string path = fmt::format("/nix/store/{}-ferry-closure-{}", store::to_nix_base32(digest.data(), 20),
                                           i == big_index ? std::string("big") : std::to_string(i));
            store::path_info info;
            info.path = path;
            std::string refs;
            if (i > 0)
                for (std::uint64_t k = r.next() % 3; k > 0; --k) {
                    const auto& ref = infos[r.next() % i].path;
                    if (std::find(info.references.begin(), info.references.end(), ref) == info.references.end())
                        info.references.push_back(ref);
                }
            if (i > big_index && i % 50 == 0) info.references.push_back(infos[big_index].path);
            for (const auto& ref : info.references) refs += ref + "\n";
            fs::create_directories(path);
            write_file(fs::path(path) / "nix-support/references", refs);
            write_file(fs::path(path) / "share/doc.txt", text_bytes(8000 + r.next() % 24000, r));
            write_file(fs::path(path) / "bin/tool", "#!/bin/sh\necho " + std::to_string(i) + "\n", true);
            fs::create_symlink("../share/doc.txt", fs::path(path) / "bin/doc");
            if (i == big_index) {
                write_big_file(fs::path(path) / "lib/big.dat", big_file_bytes);
                c.big = path;
            }
            ::chmod(path.c_str(), 0555);
            store::nar_source nar(path);
            while (!nar.next_chunk().empty()) {
            }
            info.nar_hash = store::sha256_db_string(nar.digest());
            info.nar_size = nar.bytes_produced();
            std::sort(info.references.begin(), info.references.end(), store::store_path_less{});
            c.nar_bytes += info.nar_size;
            infos.push_back(info);
        }
        local_db().register_valid_paths(infos);
        c.paths = local_db().export_order([&] {
            std::vector<std::string> all;
            for (const auto& i : infos) all.push_back(i.path);
            return all;
        }());
        return c;
    }();
    return c;
}

std::string list_file(const std::vector<std::string>& paths) {
    std::string file = (host().directory() / ("paths-" + fx().nonce)).string();  // readable by host and local
    std::string text;
    for (const auto& p : paths) text += p + "\n";
    std::ofstream(file) << text;
    return file;
}

// `nix-store --dump-db` of the paths: hash, size, references, one block per path.
std::string dump_db(const hosts::local_store& where, const std::vector<std::string>& paths) {
    std::string out, err;
    int st = where.run("xargs nix-store --dump-db < " + list_file(paths), &out, &err);
    BOOST_TEST(st == 0, err);
    return out;
}
std::string host_dump_db(const std::vector<std::string>& paths) {
    std::string out, err;
    int st = host().run("xargs nix-store --dump-db < " + list_file(paths), &out, &err);
    BOOST_TEST(st == 0, err);
    return out;
}

void verify_contents(const std::string& where, int status, const std::string& output) {
    BOOST_TEST(status == 0, where << ": nix-store --verify --check-contents: " << output);
    BOOST_TEST(output.find("modified") == std::string::npos, where << ": " << output);
    BOOST_TEST(output.find("error") == std::string::npos, where << ": " << output);
}

void verify_host() {
    std::string out;
    int st = host().run("nix-store --verify --check-contents 2>&1", &out);
    verify_contents("host", st, out);
}

// A fresh, empty local store bound over the test process's /nix for a while (the
// fixture's store is back once this ends). local_db() must not be used meanwhile.
struct fresh_local_store {
    hosts::local_store store = hosts::local_store::create(hosts::temporary_directory("ferry-transfer-fresh"));
    std::optional<store::store_database> db;
    fresh_local_store() {
        remote_fixture::check(store.run("nix-store --init"), "nix-store --init (fresh store)");
        if (::mount(store.store_root().c_str(), "/nix", nullptr, MS_BIND, nullptr) != 0)
            throw std::runtime_error("binding a fresh store over /nix failed");
        db.emplace(store::store_config::make(store::store_flavour::nix, "/nix/store", "/nix/var/nix"));
    }
    ~fresh_local_store() {
        db.reset();
        ::umount2("/nix", MNT_DETACH);
    }
    void verify() {
        std::string out;
        int st = store.run("nix-store --verify --check-contents 2>&1", &out);
        verify_contents("fresh local store", st, out);
    }
    // Every entry of /nix/store is a valid path (nothing half-written remains).
    void check_only_valid_entries() {
        std::string out;
        store.run("cd /nix/store && for p in *; do case $p in .links|'*') continue;; esac; "
                  "nix-store --check-validity /nix/store/$p 2>/dev/null || echo \"$p\"; done",
                  &out);
        BOOST_TEST(out.empty(), "invalid leftovers in the fresh store: " << out);
    }
};

struct sent {
    std::vector<std::string> missing;
    transfer::transfer_report report;
    std::string error;
};

sent send_to(const std::vector<std::string>& paths, transfer::send_options o,
             ssh::session_options so = host_options()) {
    sent r;
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(so);
        remote::nix_remote_options ro;
        auto c = co_await remote::serve_connection::open(s, ro);
        r.missing = co_await c.query_missing(paths);
        o.server_version = c.server_version();
        // Closed first: the only `nix-store --serve --write` left are the import streams.
        co_await c.close();
        try {
            r.report = co_await transfer::send_paths(s, local_db(), r.missing, o);
        } catch (const std::exception& e) {
            r.error = e.what();
        }
    });
    return r;
}

transfer::transfer_report receive_into(store::store_database& db, const std::vector<std::string>& paths,
                                       transfer::receive_options o, std::string* error = nullptr) {
    transfer::transfer_report rep;
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        store::temp_roots roots(db.config());
        try {
            rep = co_await transfer::receive_paths(s, db, roots, paths, o);
        } catch (const std::exception& e) {
            if (!error) throw;
            *error = e.what();
        }
    });
    return rep;
}

std::string busy_line(const transfer::transfer_report& r) {
    std::string s;
    for (const auto& st : r.stages)
        s += fmt::format(" {}={:.0f}%", st.name, 100.0 * std::chrono::duration<double>(st.busy).count() / r.seconds());
    return s;
}

// The host's nix-store processes whose command line holds all of `words`
// (a parallel wave runs several).
std::vector<pid_t> host_processes(std::initializer_list<const char*> words) {
    std::vector<pid_t> found;
    for (pid_t pid : host().session_pids()) {
        std::ifstream in(fmt::format("/proc/{}/cmdline", pid));
        std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::replace(cmd.begin(), cmd.end(), '\0', ' ');
        if (cmd.rfind("nix-store", 0) != 0 && cmd.find("/nix-store") == std::string::npos) continue;
        if (std::all_of(words.begin(), words.end(), [&](const char* w) { return cmd.find(w) != std::string::npos; }))
            found.push_back(pid);
    }
    return found;
}

// SIGTERM (Nix then says "interrupted by the user" on stderr) to those processes.
int stop_host_processes(std::initializer_list<const char*> words) {
    auto pids = host_processes(words);
    for (pid_t pid : pids) ::kill(pid, SIGTERM);
    return static_cast<int>(pids.size());
}

// What the remote said of a SIGTERM, quoted in ferry's message: Nix's own "interrupted
// by the user" when its handler ran first, or the shell's report of the signal that
// ended the process: "Terminated", or "User defined signal 1" when Nix's own SIGUSR1
// (which its signal thread sends to wake blocked threads) ended it first.
bool quotes_a_signal_death(const std::string& error) {
    const auto quoted = error.find("; remote stderr: ");
    if (quoted == std::string::npos) return false;
    const std::string said = error.substr(quoted);
    return said.find("interrupted") != std::string::npos || said.find("Terminated") != std::string::npos ||
           said.find("signal") != std::string::npos;
}

// receive = false: auto's pick is one of the concrete codecs, whose round trip receives.
void round_trip(const std::string& spec, bool send_again = false, bool receive = true) {
    const auto& c = closure();
    BOOST_REQUIRE(c.paths.size() == small_paths + 1);
    static const std::string fixture_dump = dump_db(local(), c.paths);
    host().wipe_store();
    transfer::send_options o;
    o.codec = codec::parse_codec_spec(spec);
    auto start = std::chrono::steady_clock::now();
    auto s = send_to(c.paths, o);
    BOOST_REQUIRE_MESSAGE(s.error.empty(), s.error);
    BOOST_TEST(s.missing.size() == c.paths.size());
    BOOST_TEST(s.report.paths == c.paths.size());
    BOOST_TEST(s.report.nar_bytes == c.nar_bytes);
    BOOST_TEST(!s.report.codec.empty());
    BOOST_TEST(s.report.codec.find("auto") == std::string::npos);
    for (const auto& st : s.report.stages) BOOST_TEST(st.busy <= s.report.elapsed, st.name << " busy > elapsed");
    if (o.codec.kind != codec::codec_kind::none && s.report.codec != "none")
        BOOST_TEST(s.report.wire_bytes < s.report.nar_bytes / 2);
    BOOST_TEST_MESSAGE(fmt::format("send {} ({}): {} paths, {:.1f} MB -> {:.1f} MB wire in {:.2f} s; busy:{}; {} "
                                   "level changes {}",
                                   spec, s.report.codec, s.report.paths, s.report.nar_bytes / 1e6,
                                   s.report.wire_bytes / 1e6, s.report.seconds(), busy_line(s.report),
                                   s.report.level_changes.size(), s.report.auto_reason));
    verify_host();
    BOOST_TEST(host_dump_db(c.paths) == fixture_dump);
    if (send_again) {
        // Everything is there now: nothing moves.
        auto again = send_to(c.paths, o);
        BOOST_TEST(again.missing.empty());
        BOOST_TEST(again.report.wire_bytes == 0u);
        BOOST_TEST(again.report.nar_bytes == 0u);
    }

    // Back into a fresh local store with the codec the send used.
    if (receive) {
        fresh_local_store fresh;
        transfer::receive_options ro;
        ro.codec = codec::parse_codec_spec(s.report.codec);
        auto r = receive_into(*fresh.db, c.paths, ro);
        BOOST_TEST(r.paths == c.paths.size());
        BOOST_TEST(r.nar_bytes >= c.nar_bytes);  // the bundle's NARs plus its framing
        BOOST_TEST_MESSAGE(fmt::format("receive {}: {} paths, {:.1f} MB wire in {:.2f} s; busy:{}", s.report.codec,
                                       r.paths, r.wire_bytes / 1e6, r.seconds(), busy_line(r)));
        for (const auto& p : c.paths) BOOST_TEST(fresh.db->is_valid(p), p);
        fresh.verify();
        BOOST_TEST(dump_db(fresh.store, c.paths) == fixture_dump);
    }
    BOOST_TEST_MESSAGE(fmt::format("round trip {}: {:.1f} s with checks",
                                   spec, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(fixture_closure_round_trips)

BOOST_AUTO_TEST_CASE(the_fixture_closure_is_big_enough) {
    auto start = std::chrono::steady_clock::now();
    const auto& c = closure();
    BOOST_TEST_MESSAGE(fmt::format("fixture closure: {} paths, {:.1f} MB of NAR, generated in {:.1f} s", c.paths.size(),
                                   c.nar_bytes / 1e6,
                                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
    BOOST_TEST(c.paths.size() >= 300u);
    BOOST_TEST(fs::file_size(fs::path(c.big) / "lib/big.dat") > 100'000'000u);
    std::string out;
    int st = local().run("nix-store --verify --check-contents 2>&1", &out);
    verify_contents("fixture store", st, out);
}

BOOST_AUTO_TEST_CASE(round_trip_none) { round_trip("none", true); }
BOOST_AUTO_TEST_CASE(round_trip_zstd_1) { round_trip("zstd:1"); }
BOOST_AUTO_TEST_CASE(round_trip_zstd_9) { round_trip("zstd:9"); }
BOOST_AUTO_TEST_CASE(round_trip_xz_0) { round_trip("xz:0"); }
BOOST_AUTO_TEST_CASE(round_trip_auto) { round_trip("auto", false, false); }

// Right after the auto round trip: the host holds the whole closure.
BOOST_AUTO_TEST_CASE(the_remote_importer_or_exporter_dying_mid_stream_leaves_nothing_half_registered) {
    const auto& c = closure();
    auto local_before = dump_db(local(), c.paths);
    {
        // The remote exporter dies while a fresh local store receives.
        auto s = send_to(c.paths, transfer::send_options{});  // a no-op unless an earlier test failed
        BOOST_REQUIRE_MESSAGE(s.error.empty(), s.error);
        fresh_local_store fresh;
        transfer::receive_options ro;
        // Uncompressed, early: ferry's queues and the ssh and socket buffers hold a
        // few MB, so the exporter is still inside the big path (compressed, they
        // would hold most of the closure and the exporter would be done).
        ro.codec = codec::parse_codec_spec("none");
        int killed = -1;
        ro.on_progress = [&](const transfer::progress& p) {
            if (killed == -1 && p.bytes_done > 5'000'000) killed = stop_host_processes({"--export"});
        };
        std::string error;
        receive_into(*fresh.db, c.paths, ro, &error);
        BOOST_TEST_MESSAGE("receive: " << error);
        BOOST_TEST(killed > 0, "no nix-store --export found on the host");
        BOOST_TEST(error.find("127.0.0.1") != std::string::npos, error);
        BOOST_TEST(quotes_a_signal_death(error), "the exporter's stderr is missing: " << error);
        BOOST_TEST(!fresh.db->is_valid(c.big));
        fresh.check_only_valid_entries();
        fresh.verify();
    }
    {
        // The remote importer dies during a compressed send.
        host().wipe_store();
        transfer::send_options o;
        o.codec = codec::parse_codec_spec("zstd:1");
        int killed = -1;
        // Well inside the big path (the small ones are ~6 MB together): stop the importer(s).
        o.on_progress = [&](const transfer::progress& p) {
            if (killed == -1 && p.bytes_done > 30'000'000) killed = stop_host_processes({"--serve", "--write"});
        };
        auto s = send_to(c.paths, o);
        BOOST_TEST_MESSAGE("send: " << s.error);
        BOOST_TEST(killed > 0, "no nix-store --serve --write found on the host");
        BOOST_TEST(!s.error.empty());
        BOOST_TEST(s.error.find("127.0.0.1") != std::string::npos, s.error);
        BOOST_TEST(quotes_a_signal_death(s.error), "the importer's stderr is missing: " << s.error);
        verify_host();
        int big_valid = host().run("nix-store --check-validity " + c.big + " 2>/dev/null");
        BOOST_TEST(big_valid != 0, "the big path is valid after its importer died");
        // Whatever is valid there is complete: its registration equals the local one.
        std::string valid;
        host().run("xargs nix-store --check-validity --print-invalid < " + list_file(c.paths), &valid);
        auto invalid = split_lines(valid);
        BOOST_TEST(!invalid.empty());
        std::vector<std::string> complete;
        for (const auto& p : c.paths)
            if (std::find(invalid.begin(), invalid.end(), p) == invalid.end()) complete.push_back(p);
        if (!complete.empty()) BOOST_TEST(host_dump_db(complete) == dump_db(local(), complete));
    }
    BOOST_TEST(dump_db(local(), c.paths) == local_before);
}

BOOST_AUTO_TEST_CASE(xz_6_on_a_small_closure) {
    const auto& c = closure();
    std::vector<std::string> few(c.paths.begin(), c.paths.begin() + 10);
    few = local_db().closure(few);
    host().wipe_store();
    transfer::send_options o;
    o.codec = codec::parse_codec_spec("xz:6");
    auto s = send_to(few, o);
    BOOST_REQUIRE_MESSAGE(s.error.empty(), s.error);
    BOOST_TEST(s.report.paths == few.size());
    BOOST_TEST(s.report.wire_bytes < s.report.nar_bytes);
    verify_host();
    BOOST_TEST(host_dump_db(few) == dump_db(local(), few));
    fresh_local_store fresh;
    transfer::receive_options ro;
    ro.codec = o.codec;
    auto r = receive_into(*fresh.db, few, ro);
    BOOST_TEST(r.paths == few.size());
    BOOST_TEST(r.wire_bytes < r.nar_bytes);
    fresh.verify();
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(a_host_without_zstd_gets_xz_or_none_automatically) {
    hosts::test_host_options ho;
    ho.name = "nozstd";
    ho.directory = hosts::temporary_directory("ferry-transfer-nozstd");
    ho.hidden_programs = {"/usr/bin/zstd"};
    auto bare = hosts::test_host::start(ho);
    int st = bare.run("zstd -V >/dev/null 2>&1");
    BOOST_TEST(st != 0, "zstd still runs on the host without zstd");
    BOOST_TEST(bare.run("xz -V >/dev/null 2>&1") == 0);
    BOOST_TEST(host().run("zstd -V >/dev/null 2>&1") == 0);

    const auto& c = closure();
    std::vector<std::string> few(c.paths.begin(), c.paths.begin() + 20);
    few = local_db().closure(few);
    auto so = host_options();
    so.port = bare.port();
    so.identity = bare.client_key();
    so.host_key = bare.host_key_line();

    // The rule sees the missing decoder (on the normal host the same candidates are usable).
    auto considered = [&](const ssh::session_options& opts) {
        codec::auto_choice choice;
        run_async([&]() -> asio::awaitable<void> {
            auto s = co_await ssh::session::connect(opts);
            choice = (co_await transfer::probe_and_choose(s, few)).choice;
        });
        return choice;
    };
    auto without = considered(so), with = considered(host_options());
    BOOST_TEST_MESSAGE("without zstd: " << without.reason << "; with: " << with.reason);
    BOOST_TEST(codec::to_string(without.spec).rfind("zstd", 0) != 0, codec::to_string(without.spec));
    for (const auto& p : without.considered)
        if (p.spec.kind == codec::codec_kind::zstd) BOOST_TEST(!p.usable, codec::to_string(p.spec));
    for (const auto& p : with.considered)
        if (p.spec.kind == codec::codec_kind::zstd) BOOST_TEST(p.usable, codec::to_string(p.spec));

    // And a send with codec auto works there.
    transfer::send_options o;
    o.codec = codec::parse_codec_spec("auto");
    auto s = send_to(few, o, so);
    BOOST_REQUIRE_MESSAGE(s.error.empty(), s.error);
    BOOST_TEST((s.report.codec == "none" || s.report.codec.rfind("xz:", 0) == 0), s.report.codec);
    BOOST_TEST(s.report.paths == few.size());
    std::string out;
    int verify = bare.run("nix-store --verify --check-contents 2>&1", &out);
    verify_contents("host without zstd", verify, out);
    std::string valid;
    bare.run("xargs nix-store --check-validity < " + list_file(few) + " && echo ok", &valid);
    BOOST_TEST(valid == "ok\n");
}

BOOST_AUTO_TEST_CASE(the_adaptive_policy_follows_the_busier_stage) {
    auto policy = transfer::adaptive_zstd_level();
    transfer::interval_report r;
    r.level = 9;
    r.compress_busy = 0.97, r.write_busy = 0.2;  // compressor-bound: faster level
    BOOST_TEST(policy(r) < 9);
    r.compress_busy = 0.2, r.write_busy = 0.97;  // link-bound, CPU idle: stronger level
    BOOST_TEST(policy(r) > 9);
    r.compress_busy = 0.7, r.write_busy = 0.8;   // neither: keep
    BOOST_TEST(policy(r) == 9);
}

// On loopback a strong zstd level is compressor-bound: the pipeline lowers it
// while streaming (new frames), and the stream still decodes with stock zstd -dc.
BOOST_AUTO_TEST_CASE(the_zstd_level_drops_mid_stream_when_the_compressor_is_the_bottleneck) {
    const auto& c = closure();
    std::vector<std::string> big_closure = local_db().closure({c.big});
    host().wipe_store();
    transfer::send_options o;
    o.codec = codec::parse_codec_spec("zstd:15");
    o.adjust_level = transfer::adaptive_zstd_level();
    o.interval = std::chrono::milliseconds(250);
    std::vector<transfer::interval_report> ticks;
    o.on_interval = [&](const transfer::interval_report& r) { ticks.push_back(r); };
    auto s = send_to(big_closure, o);
    BOOST_REQUIRE_MESSAGE(s.error.empty(), s.error);
    std::string steps;
    for (const auto& ch : s.report.level_changes)
        steps += fmt::format(" {}->{} at {:.2f} s (compress {:.0f}%, write {:.0f}%)", ch.from, ch.to,
                             std::chrono::duration<double>(ch.at).count(), 100 * ch.compress_busy, 100 * ch.write_busy);
    BOOST_TEST_MESSAGE(fmt::format("zstd:15 adaptive: {} ticks, {:.2f} s, ratio {:.2f}; changes:{}", ticks.size(),
                                   s.report.seconds(), double(s.report.nar_bytes) / s.report.wire_bytes, steps));
    BOOST_TEST(!ticks.empty());
    BOOST_REQUIRE(!s.report.level_changes.empty());
    BOOST_TEST(s.report.level_changes.front().from == 15);
    BOOST_TEST(s.report.level_changes.front().to < 15);
    BOOST_TEST(s.report.level_changes.front().compress_busy > s.report.level_changes.front().write_busy);
    // Later ticks report the new level: it was applied mid-stream.
    BOOST_TEST(std::any_of(ticks.begin(), ticks.end(), [](auto& t) { return t.level > 0 && t.level < 15; }));
    verify_host();
    BOOST_TEST(host_dump_db(big_closure) == dump_db(local(), big_closure));
}

// Peak RSS of the pipelines with one 1 GB file: figures, not tests. Each case must
// run alone in its process (ru_maxrss is per process): bench/transfer_rss.sh does
// that. FERRY_RSS_MB sets the file size (default 1024), FERRY_RSS_CODEC the codec
// (default zstd:1).
namespace {

long peak_rss_kb() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

std::uint64_t rss_file_bytes() {
    const char* mb = std::getenv("FERRY_RSS_MB");
    return std::uint64_t(mb ? std::atoi(mb) : 1024) << 20;
}

std::string rss_codec() {
    const char* c = std::getenv("FERRY_RSS_CODEC");
    return c ? c : "zstd:1";
}

}  // namespace

BOOST_AUTO_TEST_CASE(peak_rss_send, *boost::unit_test::disabled()) {
    fs::path src = local().directory() / ("rss-" + fx().nonce);
    write_big_file(src / "big.dat", rss_file_bytes());
    std::string path = local_run("nix-store --add " + src.string());
    fs::remove_all(src);
    host().wipe_store();
    long before = peak_rss_kb();
    transfer::send_options o;
    o.codec = codec::parse_codec_spec(rss_codec());
    std::vector<std::string> one{path};
    auto s = send_to(one, o);
    BOOST_REQUIRE_MESSAGE(s.error.empty(), s.error);
    long after = peak_rss_kb();
    BOOST_TEST_MESSAGE(fmt::format("peak RSS send {} ({}), {:.0f} MB file in {:.2f} s: {:.1f} MB before the transfer, "
                                   "{:.1f} MB after",
                                   rss_codec(), s.report.codec, rss_file_bytes() / 1e6, s.report.seconds(),
                                   before / 1024.0, after / 1024.0));
    BOOST_TEST(after <= 128 * 1024);
}

BOOST_AUTO_TEST_CASE(peak_rss_receive, *boost::unit_test::disabled()) {
    fs::path src = host().directory() / ("rss-" + fx().nonce);
    write_big_file(src / "big.dat", rss_file_bytes());
    std::string path = host_run("nix-store --add " + src.string());
    fs::remove_all(src);
    long before = peak_rss_kb();
    fresh_local_store fresh;
    transfer::receive_options ro;
    ro.codec = codec::parse_codec_spec(rss_codec());
    std::vector<std::string> one{path};
    auto r = receive_into(*fresh.db, one, ro);
    long after = peak_rss_kb();
    BOOST_TEST(r.paths == 1u);
    BOOST_TEST_MESSAGE(fmt::format("peak RSS receive {}, {:.0f} MB file in {:.2f} s: {:.1f} MB before the transfer, "
                                   "{:.1f} MB after",
                                   rss_codec(), rss_file_bytes() / 1e6, r.seconds(), before / 1024.0, after / 1024.0));
    BOOST_TEST(after <= 128 * 1024);
}
