// daemon::worker_connection against the real nix-daemon of this machine (Nix 2.8,
// protocol 0x122), started by the test on a private socket: Nix 2.8 reads the
// socket path from NIX_DAEMON_SOCKET_PATH (src/libstore/globals.cc:42, used by
// src/nix/daemon.cc:172-173). Expected values come from nix-store itself.
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <fmt/core.h>

#include "ferry/daemon/worker_connection.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/store/hash.hpp"
#include "ferry/util/error.hpp"

namespace fs = std::filesystem;
using ferry::daemon::worker_connection;
namespace worker = ferry::protocol::worker;

namespace {

// stdout of a shell command; the test fails if it exits non-zero.
std::string shell(const std::string& command) {
    std::string out;
    FILE* p = ::popen(command.c_str(), "r");
    BOOST_REQUIRE_MESSAGE(p, "popen " << command);
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = ::pclose(p);
    BOOST_REQUIRE_MESSAGE(status == 0, "`" << command << "` failed with " << status);
    return out;
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0; }

// A nix-daemon on a private socket in a fresh directory, stopped by pid.
struct nix_daemon {
    fs::path dir;
    fs::path socket;
    pid_t pid = 0;

    nix_daemon() {
        dir = fs::temp_directory_path() / fmt::format("ferry-worker-{}-{}", ::getpid(), std::rand());
        fs::create_directories(dir);
        socket = dir / "socket";
        auto pid_file = dir / "daemon.pid";
        shell(fmt::format("NIX_DAEMON_SOCKET_PATH={} /usr/bin/setsid /usr/bin/nix-daemon </dev/null >{}/daemon.log "
                          "2>&1 & echo $! > {}",
                          socket.string(), dir.string(), pid_file.string()));
        std::ifstream(pid_file) >> pid;
        BOOST_REQUIRE(pid > 0);
        for (int i = 0; i < 100 && !fs::is_socket(socket); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        BOOST_REQUIRE_MESSAGE(fs::is_socket(socket), "nix-daemon did not create " << socket);
    }
    ~nix_daemon() {
        if (pid > 0) {
            ::kill(pid, SIGTERM);
            for (int i = 0; i < 100 && !process_gone(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
            if (!process_gone(pid)) ::kill(pid, SIGKILL);
        }
        std::error_code ignored;
        fs::remove_all(dir, ignored);
    }
};

// A store path added for the test, and what nix-store says about it.
struct added_path {
    std::string path;
    std::string hash;  // sha256:<nix-base32>
    std::string size;
    std::string references;
    std::string export_bytes;

    explicit added_path(const fs::path& dir) {
        auto file = dir / fmt::format("ferry-worker-input-{}", std::rand());
        std::ofstream(file) << "ferry worker protocol test " << std::rand() << "\n";
        path = trimmed(shell("/usr/bin/nix-store --add " + file.string()));
        hash = trimmed(shell("/usr/bin/nix-store -q --hash " + path));
        size = trimmed(shell("/usr/bin/nix-store -q --size " + path));
        references = trimmed(shell("/usr/bin/nix-store -q --references " + path));
        export_bytes = shell("/usr/bin/nix-store --export " + path);
    }
};

bool temp_root_listed(const std::string& path) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/nix/var/nix/temproots", ec)) {
        std::ifstream in(entry.path(), std::ios::binary);
        std::string text((std::istreambuf_iterator<char>(in)), {});
        if (text.find(path) != std::string::npos) return true;
    }
    return false;
}

template <class T>
T run(std::function<asio::awaitable<T>()> body) {
    asio::io_context io;
    auto f = asio::co_spawn(io, body(), asio::use_future);
    io.run();
    return f.get();
}

const std::string missing = "/nix/store/00000000000000000000000000000000-ferry-worker-missing";

}  // namespace

BOOST_AUTO_TEST_SUITE(worker_connection_with_nix_daemon)

BOOST_AUTO_TEST_CASE(talks_to_the_real_nix_daemon) {
    nix_daemon daemon;
    added_path added(daemon.dir);
    std::string log;
    run<int>([&]() -> asio::awaitable<int> {
        auto c = co_await worker_connection::connect(daemon.socket.string(),
                                                     [&](std::string_view line) { log.append(line); });
        BOOST_TEST((c.dialect() == worker::dialect::nix));
        BOOST_TEST(c.server_version() == 0x122u);
        BOOST_TEST(c.daemon_version().rfind("2.8.", 0) == 0u);  // 2.8.0 here (daemon.cc:1019 nixVersion)

        co_await c.add_temp_root(added.path);
        // Nix 2.8 keeps temp roots in /nix/var/nix/temproots/<worker pid> (gc.cc).
        BOOST_TEST(temp_root_listed(added.path));

        auto info = co_await c.query_path_info(added.path);
        BOOST_REQUIRE(info);
        auto digest = ferry::store::parse_sha256(info->nar_hash);
        BOOST_REQUIRE(digest);
        BOOST_TEST("sha256:" + ferry::store::to_nix_base32(*digest) == added.hash);
        BOOST_TEST(std::to_string(info->nar_size) == added.size);
        std::string refs;
        for (const auto& r : info->references) refs += (refs.empty() ? "" : "\n") + r;
        BOOST_TEST(refs == added.references);
        BOOST_TEST(info->deriver.empty());
        BOOST_TEST(info->ca.rfind("fixed:r:sha256:", 0) == 0u);  // nix-store --add: recursive fixed-output CA

        BOOST_TEST(!(co_await c.query_path_info(missing)));

        // The daemon's exportPath is one bundle item: `nix-store --export` adds the
        // item marker u64 1 in front and the end marker u64 0 behind
        // (export-import.cc:10-26).
        std::string exported;
        std::size_t pieces = 0;
        co_await c.export_path(added.path, true, [&](std::string_view piece) -> asio::awaitable<void> {
            exported.append(piece);
            ++pieces;
            co_return;
        });
        BOOST_REQUIRE(added.export_bytes.size() > 16u);
        BOOST_TEST(exported == added.export_bytes.substr(8, added.export_bytes.size() - 16));
        BOOST_TEST(pieces >= 1u);

        try {
            co_await c.export_path(missing, false, [](std::string_view) -> asio::awaitable<void> { co_return; });
            BOOST_ERROR("exporting a missing path succeeded");
        } catch (const ferry::failure& e) {
            std::string what = e.what();
            BOOST_TEST_MESSAGE("export of a missing path: " << what);
            BOOST_TEST((e.code() == ferry::errc::remote_failed));
            BOOST_TEST(what.find("path '" + missing + "' is not valid") != std::string::npos);
            BOOST_TEST(what.find(daemon.socket.string()) != std::string::npos);
        }
        BOOST_TEST(!c.broken());  // a daemon error leaves the stream in sync
        co_await c.add_temp_root(added.path);
        co_return 0;
    });
    BOOST_TEST_MESSAGE("daemon log lines: " << log);
}

// No guix-daemon here: a scripted one on a private socket plays Guix's side
// (nix/nix-daemon/nix-daemon.cc: greeting 797-809, ExportPath 457-475 with its
// STDERR_NEXT log line from local-store.cc:1246, QueryPathInfo of an invalid path =
// error "path `P' is not valid" + status, local-store.cc:616).
BOOST_AUTO_TEST_CASE(guix_dialect_against_a_scripted_daemon) {
    namespace wire = ferry::protocol::wire;
    auto dir = fs::temp_directory_path() / fmt::format("ferry-worker-guix-{}", ::getpid());
    fs::create_directories(dir);
    auto socket_path = (dir / "socket").string();
    const std::string item = "/gnu/store/6fbh8phmp3izay6c0dpggpxhcjn4xlm5-hello-2.12.1";
    const std::string export_data = std::string(100000, 'n') + "export trailer";
    auto u64 = [](std::uint64_t v) { std::string o; wire::append_u64(o, v); return o; };
    auto str = [](std::string_view v) { std::string o; wire::append_string(o, v); return o; };

    asio::io_context io;
    asio::local::stream_protocol::acceptor acceptor(io, asio::local::stream_protocol::endpoint(socket_path));
    std::string received;  // everything the client sent
    auto daemon = [&]() -> asio::awaitable<void> {
        auto s = co_await acceptor.async_accept(asio::use_awaitable);
        auto expect = [&](std::size_t n) -> asio::awaitable<void> {
            std::string buf(n, '\0');
            co_await asio::async_read(s, asio::buffer(buf), asio::use_awaitable);
            received += buf;
        };
        auto say = [&](std::string bytes) -> asio::awaitable<void> {
            co_await asio::async_write(s, asio::buffer(bytes), asio::use_awaitable);
        };
        co_await expect(8);
        co_await say(u64(worker::server_magic) + u64(0x163));
        co_await expect(24);
        co_await say(u64(worker::stderr_code::last));
        co_await expect(8 + str(item).size() + 8);  // ExportPath, path, sign
        std::string reply = u64(worker::stderr_code::next) + str("exporting path `" + item + "'\n");
        for (std::size_t at = 0; at < export_data.size(); at += 65536)  // TunnelSink's 64 KiB pieces
            reply += u64(worker::stderr_code::write) + str(std::string_view(export_data).substr(at, 65536));
        co_await say(reply + u64(worker::stderr_code::last) + u64(1));
        co_await expect(8 + str(item).size());  // QueryPathInfo
        co_await say(u64(worker::stderr_code::error) + str("path `" + item + "' is not valid") + u64(1));
        co_await expect(8 + str(item).size());  // AddTempRoot
        co_await say(u64(worker::stderr_code::error) + str("cannot lock temp roots") + u64(1));
    };
    asio::co_spawn(io, daemon(), asio::detached);

    std::string log, exported;
    std::size_t pieces = 0;
    bool finished = false;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        auto c = co_await worker_connection::connect(socket_path, [&](std::string_view line) { log.append(line); });
        BOOST_TEST((c.dialect() == worker::dialect::guix));
        BOOST_TEST(c.server_version() == 0x163u);
        BOOST_TEST(c.daemon_version().empty());
        co_await c.export_path(item, true, [&](std::string_view piece) -> asio::awaitable<void> {
            exported.append(piece);
            ++pieces;
            co_return;
        });
        BOOST_TEST(!(co_await c.query_path_info(item)));
        try {
            co_await c.add_temp_root(item);
            BOOST_ERROR("AddTempRoot succeeded");
        } catch (const ferry::failure& e) {
            BOOST_TEST(std::string(e.what()).find("Guix daemon: AddTempRoot of " + item + ": cannot lock temp roots") !=
                       std::string::npos, e.what());
        }
        finished = true;
    }, asio::detached);
    io.run();
    BOOST_TEST(finished);
    BOOST_TEST(exported == export_data);
    BOOST_TEST(pieces == 2u);
    BOOST_TEST(log == "exporting path `" + item + "'\n");
    // What the client sent: magic; 0x164, no affinity, no reserveSpace; the requests.
    BOOST_TEST(received.substr(0, 32) == u64(worker::client_magic) + u64(0x164) + u64(0) + u64(0));
    BOOST_TEST(received.substr(32) == u64(16) + str(item) + u64(1) + u64(26) + str(item) + u64(11) + str(item));
    std::error_code ignored;
    fs::remove_all(dir, ignored);
}

BOOST_AUTO_TEST_CASE(connect_failure_names_the_socket) {
    auto path = (fs::temp_directory_path() / "ferry-worker-no-such-socket").string();
    try {
        run<int>([&]() -> asio::awaitable<int> {
            co_await worker_connection::connect(path);
            co_return 0;
        });
        BOOST_ERROR("connect succeeded");
    } catch (const ferry::failure& e) {
        BOOST_TEST((e.code() == ferry::errc::connect_failed));
        BOOST_TEST(std::string(e.what()).find(path) != std::string::npos);
    }
}

BOOST_AUTO_TEST_SUITE_END()
