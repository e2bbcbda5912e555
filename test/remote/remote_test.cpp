// remote layer against a real sshd test host running Nix 2.8's `nix-store --serve`.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <fstream>

#include "fixture.hpp"
#include "ferry/io/deadline.hpp"
#include "ferry/remote/build_machine.hpp"
#include "ferry/remote/command.hpp"
#include "ferry/remote/gc_roots.hpp"
#include "ferry/remote/nix_remote.hpp"
#include "ferry/remote/serve_connection.hpp"
#include "ferry/store/derivation.hpp"

using namespace ferry;
using namespace ferry_test;
using namespace std::chrono_literals;
namespace serve = protocol::serve;

BOOST_TEST_GLOBAL_FIXTURE(remote_fixture);

namespace {

// Derivations for the build tests, instantiated in the local store (not built).
std::string instantiate(const std::string& attr) {
    const std::string& n = fx().nonce;
    static std::string expr = write_expr(
        "builds.nix",
        fmt::format(R"(let n = "{0}"; mk = name: script: derivation {{
  name = "ferry-${{name}}-${{n}}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" script ]; }};
in {{
  ok = mk "ok" "echo log-one-${{n}}; /bin/sleep 1; echo log-two-${{n}} >&2; echo ${{n}} > $out";
  fail = mk "fail" "echo failing-${{n}} >&2; exit 3";
  slow = mk "slow" "echo started; /bin/sleep 600 # ferry-cancel-${{n}}";
  late = mk "late" "echo waiting; /bin/sleep 30; echo ${{n}} > $out";
}})",
                    n));
    return local_run("nix-instantiate " + expr + " -A " + attr);
}

store::derivation read_drv(const std::string& path) {
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return store::parse_derivation(text, path);
}

remote::build_request request_for(const std::string& attr, serve::build_options o = {}) {
    remote::build_request r;
    r.drv_path = instantiate(attr);
    r.drv = remote::to_basic_derivation(read_drv(r.drv_path), {});
    r.options = o;
    return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(command_lines_quote_every_path) {
    remote::nix_remote_options o;
    o.remote_program = "/opt/my nix/bin/nix-store";
    o.remote_store = "local?root=/x y";
    BOOST_TEST(remote::serve_command(o) == "'/opt/my nix/bin/nix-store' --store 'local?root=/x y' --serve --write");
    BOOST_TEST(remote::compressed_serve_command(remote::nix_remote_options{}, codec::codec_kind::zstd) ==
               "sh -c 'zstd -dc | nix-store --serve --write'");
    BOOST_CHECK_THROW(remote::export_command(remote::nix_remote_options{}, {"/etc/passwd"}, {codec::codec_kind::none, 0}),
                      failure);
}

BOOST_AUTO_TEST_CASE(handshake_and_query_missing) {
    std::string file = (local().directory() / "present.txt").string();
    std::ofstream(file) << fx().nonce << " present\n";
    std::string present = host_run("nix-store --add " + file);
    std::string absent = "/nix/store/" + std::string(32, '0') + "-ferry-absent-" + fx().nonce;
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        remote::nix_remote_options o;
        auto c = co_await remote::serve_connection::open(s, o);
        BOOST_TEST(serve::minor_of(c.server_version()) >= 5u);
        std::vector<std::string> both{present, absent}, only_absent{absent}, only_present{present};
        auto missing = co_await c.query_missing(both);
        BOOST_TEST(missing == only_absent);
        auto infos = co_await c.query_path_infos(only_present);
        BOOST_REQUIRE(infos.size() == 1u);
        BOOST_TEST(infos[0].nar_hash == host_run("nix-store -q --hash " + present));
        co_await c.close();
        BOOST_TEST(c.broken());
    });
}

BOOST_AUTO_TEST_CASE(a_missing_remote_program_is_a_clear_error) {
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        remote::nix_remote_options o;
        o.remote_program = "/nonexistent/nix-store";
        try {
            co_await remote::serve_connection::open(s, o);
            BOOST_ERROR("open should have failed");
        } catch (const failure& e) {
            BOOST_TEST(e.code() == make_error_code(errc::remote_failed));
            BOOST_TEST(std::string(e.what()).find("/nonexistent/nix-store") != std::string::npos, e.what());
        }
        o.remote_program = "/usr/bin/nix-store";  // an absolute remote-program works
        auto c = co_await remote::serve_connection::open(s, o);
        co_await c.close();
    });
}

BOOST_AUTO_TEST_CASE(build_derivation_streams_its_log) {
    auto req = request_for("ok");
    std::string out_path = req.drv.outputs.at("out").path;
    std::string log;
    std::chrono::steady_clock::time_point first_log{}, done{};
    serve::build_result result = run_async([&]() -> asio::awaitable<serve::build_result> {
        auto s = co_await ssh::session::connect(host_options());
        auto m = co_await remote::nix_build_machine::open(s, remote::nix_remote_options());
        auto r = co_await m->build(req, [&](std::string_view bytes) -> asio::awaitable<void> {
            if (log.empty()) first_log = std::chrono::steady_clock::now();
            log.append(bytes);
            co_return;
        });
        done = std::chrono::steady_clock::now();
        co_await m->finish();
        co_return r;
    });
    BOOST_TEST(result.status == serve::build_status::built, serve::to_string(result.status) << ": " << result.error_msg);
    BOOST_TEST(log.find("log-one-" + fx().nonce) != std::string::npos, log);
    BOOST_TEST(log.find("log-two-" + fx().nonce) != std::string::npos, log);
    // Streamed: the first line came while the builder still slept (1 s before the end).
    BOOST_TEST(std::chrono::duration<double>(done - first_log).count() > 0.7);
    BOOST_TEST(host_run("cat " + out_path) == fx().nonce);
}

BOOST_AUTO_TEST_CASE(failing_builder_is_a_permanent_failure_with_its_log) {
    auto req = request_for("fail");
    std::string log;
    auto result = run_async([&]() -> asio::awaitable<serve::build_result> {
        auto s = co_await ssh::session::connect(host_options());
        auto m = co_await remote::nix_build_machine::open(s, remote::nix_remote_options());
        auto r = co_await m->build(req, [&](std::string_view b) -> asio::awaitable<void> {
            log.append(b);
            co_return;
        });
        co_await m->finish();
        co_return r;
    });
    BOOST_TEST(result.status == serve::build_status::permanent_failure, serve::to_string(result.status));
    BOOST_TEST(serve::hook_exit_code(result.status) == 100);
    BOOST_TEST(log.find("failing-" + fx().nonce) != std::string::npos, log);
}

BOOST_AUTO_TEST_CASE(build_timeout_is_reported_as_timed_out) {
    serve::build_options o;
    o.build_timeout = 1;
    auto req = request_for("late", o);
    auto result = run_async([&]() -> asio::awaitable<serve::build_result> {
        auto s = co_await ssh::session::connect(host_options());
        auto m = co_await remote::nix_build_machine::open(s, remote::nix_remote_options());
        remote::log_sink none;
        auto r = co_await m->build(req, none);
        co_await m->finish();
        co_return r;
    });
    BOOST_TEST(result.status == serve::build_status::timed_out, serve::to_string(result.status) << " " << result.error_msg);
    BOOST_TEST(serve::hook_exit_code(result.status) == 101);
}

BOOST_AUTO_TEST_CASE(cancelling_a_build_kills_it_remotely) {
    auto req = request_for("slow");
    const std::string pattern = "'[f]erry-cancel-" + fx().nonce + "'";
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        auto m = co_await remote::nix_build_machine::open(s, remote::nix_remote_options());
        try {
            remote::log_sink none;
            co_await io::with_deadline(m->build(req, none), 3s, "slow build");
            BOOST_ERROR("the build should have been cut off");
        } catch (const failure& e) {
            BOOST_TEST(e.code() == make_error_code(errc::timed_out));
        }
        int running = -1;
        host_run("pgrep -f " + pattern, &running);
        BOOST_TEST_MESSAGE("builder running right after the cancel: " << (running == 0));
        co_await m->finish();
    });
    // The hang-up monitor kills the builder (allow it a few seconds).
    int status = 0;
    for (int i = 0; i < 50; ++i) {
        host_run("pgrep -f " + pattern, &status);
        if (status != 0) break;
        std::this_thread::sleep_for(100ms);
    }
    BOOST_TEST(status == 1, "the remote builder still runs after the channel was closed");
}

BOOST_AUTO_TEST_CASE(gc_roots_protect_and_are_removed) {
    std::string file = (local().directory() / "rooted.txt").string();
    std::ofstream(file) << fx().nonce << " rooted\n";
    std::string p = host_run("nix-store --add " + file);
    std::string dir;
    const std::vector<std::string> only_p{p};
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        co_await remote::with_remote_roots<void>(s, remote::nix_remote_options(), [&](remote::remote_roots& roots) -> asio::awaitable<void> {
            dir = roots.directory();
            co_await roots.add(only_p);
            co_await roots.add(only_p);  // idempotent
            host_run("nix-store --gc >/dev/null 2>&1");
            int valid = -1;
            host_run("nix-store --check-validity " + p, &valid);
            BOOST_TEST(valid == 0, "a rooted path was collected");
        });
        // Also on failure: the roots go.
        std::string dir2;
        try {
            co_await remote::with_remote_roots<void>(s, remote::nix_remote_options(), [&](remote::remote_roots& roots) -> asio::awaitable<void> {
                dir2 = roots.directory();
                co_await roots.add(only_p);
                throw failure(errc::build_failed, "on purpose");
            });
        } catch (const failure& e) {
            BOOST_TEST(std::string(e.what()) == "on purpose");
        }
        int exists = -1;
        host_run("test -e " + dir2, &exists);
        BOOST_TEST(exists == 1, dir2 << " was left behind");
    });
    BOOST_TEST(dir.find("/nix/var/nix/gcroots/ferry-") == 0u, dir);
    int exists = -1;
    host_run("test -e " + dir, &exists);
    BOOST_TEST(exists == 1, dir << " was left behind");
    BOOST_TEST(host_run("ls /nix/var/nix/gcroots").find("ferry-") == std::string::npos);
    host_run("nix-store --gc >/dev/null 2>&1");
    int valid = -1;
    host_run("nix-store --check-validity " + p + " 2>/dev/null", &valid);
    BOOST_TEST(valid != 0, "unrooted, the path should be collectable (else the test proves nothing)");
}

BOOST_AUTO_TEST_CASE(run_command_collects_output_under_a_deadline) {
    run_async([&]() -> asio::awaitable<void> {
        auto s = co_await ssh::session::connect(host_options());
        auto ok = co_await remote::run_command(s, "echo out; echo err >&2; exit 3", 5s);
        BOOST_TEST(!ok.error);
        BOOST_TEST(ok.status.code == 3);
        BOOST_TEST(ok.out == "out\n");
        BOOST_TEST(ok.err == "err\n");
        auto slow = co_await remote::run_command(s, "sleep 5", 300ms);
        BOOST_TEST(slow.error == make_error_code(errc::timed_out), slow.message);
        BOOST_TEST(slow.message.find("127.0.0.1") != std::string::npos, slow.message);
        auto again = co_await remote::run_command(s, "echo still usable", 5s);
        BOOST_TEST(again.ok());
    });
    auto bad = host_options();
    bad.host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmKRfHdAGl0jXvN0JSYFdMwQo3OcLQ1yjMmx6jRJYT1";
    auto r = run_async([&]() { return remote::run_command(bad, "true", 5s); });
    BOOST_TEST(r.error == make_error_code(errc::host_key_mismatch), r.message);
}
