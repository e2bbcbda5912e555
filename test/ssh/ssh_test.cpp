// ssh layer against real sshd test hosts (one host for the whole executable).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include <openssl/evp.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <random>

#include "ferry/hosts/test_host.hpp"
#include "ferry/io/deadline.hpp"
#include "ferry/io/fault.hpp"
#include "ferry/ssh/quote.hpp"
#include "support/run_async.hpp"
#include "ferry/ssh/session.hpp"

using namespace std::chrono_literals;
using namespace ferry;
using namespace ferry::ssh;
namespace fs = std::filesystem;

namespace {

struct hosts_fixture {
    hosts_fixture() {
        ::signal(SIGPIPE, SIG_IGN);
        host = std::make_unique<hosts::test_host>(hosts::test_host::start(hosts::temporary_directory("ferry-ssh-test"), "sshtest1"));
        instance = this;
    }
    ~hosts_fixture() { instance = nullptr; }
    std::unique_ptr<hosts::test_host> host;
    static inline hosts_fixture* instance = nullptr;
};
BOOST_TEST_GLOBAL_FIXTURE(hosts_fixture);

hosts::test_host& host() { return *hosts_fixture::instance->host; }

// The pinned-key way in: explicit address, port, user, key.
session_options pinned_options() { return test_support::pinned_options(host()); }
using test_support::run_async;

std::string sha256_hex(const std::string& data, std::size_t repeat) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    for (std::size_t i = 0; i < repeat; ++i) EVP_DigestUpdate(ctx, data.data(), data.size());
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    std::string hex;
    for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
    return hex;
}

std::string random_block(std::size_t size, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::string out(size, '\0');
    for (std::size_t i = 0; i + 8 <= size; i += 8) {
        auto v = rng();
        std::memcpy(out.data() + i, &v, 8);
    }
    return out;
}

// Streams `repeat` copies of `block` into `sha256sum` on the host; returns its hex.
asio::awaitable<std::string> upload_sha(session& s, const std::string& block, std::size_t repeat) {
    std::string cmd = "sha256sum";
    channel ch = co_await s.exec(cmd);
    for (std::size_t i = 0; i < repeat; ++i) co_await ch.write(asio::buffer(block));
    co_await ch.send_eof();
    std::string out;
    std::array<char, 4096> buf;
    for (;;) {
        std::size_t n = co_await ch.read(asio::buffer(buf));
        if (n == 0) break;
        out.append(buf.data(), n);
    }
    exit_status st = co_await ch.wait();
    BOOST_TEST(st.success());
    co_return out.substr(0, out.find(' '));
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_CASE(shell_quote_round_trips_through_sh) {
    BOOST_TEST(shell_quote("") == "''");
    BOOST_TEST(shell_quote("abc-1.2/x_y:z,@%+") == "abc-1.2/x_y:z,@%+");
    BOOST_TEST(shell_quote("a b") == "'a b'");
    BOOST_TEST(shell_quote("it's") == "'it'\\''s'");
    BOOST_TEST(shell_quote("a=b") == "'a=b'");
    const std::vector<std::string> words{"", "plain", "two words", "it's", "'", "''", "$HOME", "`id`", "$(id)",
                                         "a\nb", "*", "~", "!x", "\\", "\"q\"", ";rm -rf /;", "-n", "a=b"};
    // printf '%s\0' WORDS... must give back exactly the words.
    std::vector<std::string> argv{"printf", "%s\\0"};
    argv.insert(argv.end(), words.begin(), words.end());
    std::string out;
    int status = host().run(shell_command(argv), &out);
    BOOST_TEST(status == 0);
    std::vector<std::string> back;
    std::size_t start = 0;
    for (std::size_t z; (z = out.find('\0', start)) != std::string::npos; start = z + 1)
        back.push_back(out.substr(start, z - start));
    BOOST_TEST(back == words, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(stdout_stderr_and_exit_statuses) {
    run_async([]() -> asio::awaitable<void> {
        session s = co_await session::connect(pinned_options());
        // Interleaved output on both streams, 1 MB each, must arrive separated and complete.
        std::string cmd = "for i in $(seq 1 20000); do echo out$i; echo err$i >&2; done; exit 1";
        command_result r = co_await run(s, cmd);
        std::string want_out, want_err;
        for (int i = 1; i <= 20000; ++i) {
            want_out += fmt::format("out{}\n", i);
            want_err += fmt::format("err{}\n", i);
        }
        BOOST_TEST((r.out == want_out), r.out.size() << " bytes of stdout, want " << want_out.size());
        // The remote login shell (bash) may read root's ~/.bashrc first, and on this
        // machine that can print warnings to stderr: ours must be the complete tail.
        BOOST_TEST(r.err.ends_with(want_err), r.err.size() << " bytes of stderr, want " << want_err.size()
                                                          << " at the end; starts with: " << r.err.substr(0, 300));
        BOOST_TEST_MESSAGE("interleaved output checked");
        BOOST_TEST(r.status.code == 1);

        for (int code : {0, 100}) {
            std::string c = fmt::format("exit {}", code);
            command_result e = co_await run(s, c);
            BOOST_TEST(e.status.code == code);
            BOOST_TEST(e.status.signal.empty());
        }
        std::string die = "kill -TERM $$";
        command_result k = co_await run(s, die);
        BOOST_TEST(k.status.signal == "TERM");
        BOOST_TEST(k.status.describe() == "killed by signal TERM");

        BOOST_TEST_MESSAGE("exit statuses checked");
        std::string echo = "cat; echo done";
        std::string input = "from stdin\n";
        command_result c = co_await run(s, echo, input);
        BOOST_TEST(c.out == "from stdin\ndone\n");

        // A download larger than the channel's bounded buffer: nothing lost or reordered.
        std::string big = "head -c 30000000 /dev/urandom | tee /tmp/ferry-ssh-dl | sha256sum >&2; cat /tmp/ferry-ssh-dl; rm /tmp/ferry-ssh-dl";
        BOOST_TEST_MESSAGE("stdin checked");
        command_result d = co_await run(s, big);
        BOOST_TEST(d.out.size() == 30000000u);
        BOOST_TEST(sha256_hex(d.out, 1) == d.err.substr(0, 64));
        BOOST_TEST(s.open_channels() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(upload_200_mb_checksummed_remotely) {
    const std::string block = random_block(1 << 20, 1);
    auto start = std::chrono::steady_clock::now();
    std::string remote = run_async([&]() -> asio::awaitable<std::string> {
        session s = co_await session::connect(pinned_options());
        co_return co_await upload_sha(s, block, 200);
    });
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    BOOST_TEST_MESSAGE(fmt::format("200 MiB into sha256sum: {:.2f} s", secs));
    BOOST_TEST(remote == sha256_hex(block, 200));
}

BOOST_AUTO_TEST_CASE(four_channels_of_50_mb_on_one_session) {
    std::vector<std::string> blocks;
    for (unsigned i = 0; i < 4; ++i) blocks.push_back(random_block(1 << 20, 10 + i));
    std::array<std::string, 4> got;
    run_async([&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        session s = co_await session::connect(pinned_options());
        std::vector<std::future<void>> done;
        int finished = 0;
        for (std::size_t i = 0; i < 4; ++i)
            asio::co_spawn(ex, [&, i]() -> asio::awaitable<void> {
                got[i] = co_await upload_sha(s, blocks[i], 50);
                ++finished;
            }, [&](std::exception_ptr e) {
                if (e) std::rethrow_exception(e);
            });
        asio::steady_timer t(ex);
        while (finished < 4) {
            t.expires_after(10ms);
            co_await t.async_wait(asio::use_awaitable);
        }
    });
    for (std::size_t i = 0; i < 4; ++i) BOOST_TEST(got[i] == sha256_hex(blocks[i], 50));
}

BOOST_AUTO_TEST_CASE(eleven_channels_queue_within_max_sessions) {
    std::vector<std::string> outs(11);
    std::size_t most_open = 0;
    auto start = std::chrono::steady_clock::now();
    run_async([&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        session s = co_await session::connect(pinned_options());
        int finished = 0;
        std::vector<std::exception_ptr> errors;
        for (std::size_t i = 0; i < 11; ++i)
            asio::co_spawn(ex, [&, i]() -> asio::awaitable<void> {
                std::string cmd = fmt::format("sleep 1; echo {}", i);
                command_result r = co_await run(s, cmd);
                most_open = std::max(most_open, s.open_channels());
                outs[i] = r.out;
            }, [&](std::exception_ptr e) {
                if (e) errors.push_back(e);
                ++finished;
            });
        asio::steady_timer t(ex);
        while (finished < 11) {
            most_open = std::max(most_open, s.open_channels());
            t.expires_after(5ms);
            co_await t.async_wait(asio::use_awaitable);
        }
        for (auto& e : errors) std::rethrow_exception(e);
    });
    for (std::size_t i = 0; i < 11; ++i) BOOST_TEST(outs[i] == fmt::format("{}\n", i));
    BOOST_TEST(most_open == 10u);  // the 11th waited for a slot
    BOOST_TEST((std::chrono::steady_clock::now() - start > 1900ms));  // two rounds
}

BOOST_AUTO_TEST_CASE(config_alias_and_known_hosts) {
    auto r = run_async([]() -> asio::awaitable<command_result> {
        session_options o;
        o.host = host().name();  // an alias: HostName, Port, User, IdentityFile, UserKnownHostsFile
        o.config_file = host().ssh_config();
        session s = co_await session::connect(o);
        std::string cmd = "echo via-alias";
        co_return co_await run(s, cmd);
    });
    BOOST_TEST(r.out == "via-alias\n");
}

BOOST_AUTO_TEST_CASE(wrong_pinned_host_key_names_both_fingerprints_and_runs_nothing) {
    auto dir = hosts::temporary_directory("ferry-ssh-key");
    BOOST_REQUIRE(host().run("ssh-keygen -q -t ed25519 -N '' -C '' -f " + (dir / "other").string()) == 0);
    std::string other_line;
    {
        std::ifstream in(dir / "other.pub");
        std::getline(in, other_line);
    }
    const fs::path marker = dir / "ran";
    try {
        run_async([&]() -> asio::awaitable<void> {
            auto o = pinned_options();
            o.host_key = other_line;
            session s = co_await session::connect(o);
            std::string cmd = "touch " + shell_quote(marker.string());
            command_result r = co_await run(s, cmd);
        });
        BOOST_FAIL("connected despite a wrong host key");
    } catch (const failure& e) {
        std::string msg = e.what();
        BOOST_TEST(e.code() == make_error_code(errc::host_key_mismatch));
        BOOST_TEST(contains(msg, "127.0.0.1"), msg);
        // Both SHA256 fingerprints, as ssh-keygen -l prints them.
        std::string fp_other, fp_host;
        host().run("ssh-keygen -l -E sha256 -f " + (dir / "other.pub").string(), &fp_other);
        host().run("ssh-keygen -l -E sha256 -f " + (host().directory() / "hostkey.pub").string(), &fp_host);
        auto fp = [](const std::string& line) { return line.substr(line.find(' ') + 1, line.find(' ', line.find(' ') + 1) - line.find(' ') - 1); };
        BOOST_TEST(contains(msg, fp(fp_other)), msg << " / " << fp(fp_other));
        BOOST_TEST(contains(msg, fp(fp_host)), msg << " / " << fp(fp_host));
    }
    BOOST_TEST(!fs::exists(marker));

    // known_hosts without this host: refused, never accepted.
    std::ofstream(dir / "empty_known_hosts").close();
    try {
        run_async([&]() -> asio::awaitable<void> {
            auto o = pinned_options();
            o.host_key.clear();
            o.known_hosts = dir / "empty_known_hosts";
            session s = co_await session::connect(o);
        });
        BOOST_FAIL("connected to an unknown host");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::host_key_mismatch));
        BOOST_TEST(contains(e.what(), "SHA256:"), e.what());
    }
    fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(unknown_client_key_is_an_auth_error) {
    auto dir = hosts::temporary_directory("ferry-ssh-key");
    BOOST_REQUIRE(host().run("ssh-keygen -q -t ed25519 -N '' -C '' -f " + (dir / "stranger").string()) == 0);
    try {
        run_async([&]() -> asio::awaitable<void> {
            auto o = pinned_options();
            o.identity = dir / "stranger";
            session s = co_await session::connect(o);
        });
        BOOST_FAIL("logged in with an unknown key");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::auth_failed), e.what());
        BOOST_TEST(contains(e.what(), "stranger"), e.what());
    }
    fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(closed_port_and_silent_listener) {
    // A port that nobody listens on.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    const std::uint16_t closed_port = ntohs(addr.sin_port);
    ::close(fd);
    try {
        run_async([&]() -> asio::awaitable<void> {
            auto o = pinned_options();
            o.port = closed_port;
            session s = co_await session::connect(o);
        });
        BOOST_FAIL("connected to a closed port");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::connect_failed), e.what());
        BOOST_TEST(contains(e.what(), std::to_string(closed_port)), e.what());
    }

    // A listener that accepts and never speaks SSH: the handshake deadline fires.
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor(io, {asio::ip::address_v4::loopback(), 0});
    const std::uint16_t silent_port = acceptor.local_endpoint().port();
    asio::ip::tcp::socket accepted(io);
    acceptor.async_accept(accepted, [](std::error_code) {});
    auto start = std::chrono::steady_clock::now();
    auto fut = asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        auto o = pinned_options();
        o.port = silent_port;
        o.connect_timeout = 1500ms;
        session s = co_await session::connect(o);
    }, asio::use_future);
    io.run();
    try {
        fut.get();
        BOOST_FAIL("handshake with a silent listener succeeded");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::timed_out), e.what());
        BOOST_TEST(contains(e.what(), std::to_string(silent_port)), e.what());
    }
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST((took >= 1400ms && took < 15s));
}

BOOST_AUTO_TEST_CASE(injected_faults_fail_each_channel_operation) {
    // Operations of `run` with input: exec, write, eof, reads...; fail each of the first few in turn.
    for (std::size_t n = 1; n <= 4; ++n) {
        io::fault_counter faults(n);
        try {
            run_async([&]() -> asio::awaitable<void> {
                auto o = pinned_options();
                o.faults = &faults;
                session s = co_await session::connect(o);
                std::string cmd = "cat";
                std::string input = "x";
                command_result r = co_await run(s, cmd, input);
            });
            BOOST_FAIL("no fault at operation " << n);
        } catch (const failure& e) {
            BOOST_TEST(e.code() == make_error_code(errc::injected_fault), e.what());
        }
    }
    // Counting only: the same command succeeds and the counter saw its operations.
    io::fault_counter counting;
    auto out = run_async([&]() -> asio::awaitable<std::string> {
        auto o = pinned_options();
        o.faults = &counting;
        session s = co_await session::connect(o);
        std::string cmd = "cat";
        std::string input = "x";
        command_result r = co_await run(s, cmd, input);
        co_return r.out;
    });
    BOOST_TEST(out == "x");
    BOOST_TEST(counting.count() >= 4u);
}

BOOST_AUTO_TEST_CASE(closing_the_session_fails_waiters_instead_of_hanging) {
    auto start = std::chrono::steady_clock::now();
    try {
        run_async([&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            session s = co_await session::connect(pinned_options());
            std::string cmd = "sleep 30";
            channel ch = co_await s.exec(cmd);
            asio::steady_timer t(ex, 300ms);
            t.async_wait([&](std::error_code) { s.close(); });
            exit_status st = co_await ch.wait();
        });
        BOOST_FAIL("wait returned");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::cancelled), e.what());
    }
    BOOST_TEST((std::chrono::steady_clock::now() - start < 10s));
}

BOOST_AUTO_TEST_CASE(keepalives_answered_during_silence_and_dead_peer_detected) {
    // 3 s of silence with a 300 ms keepalive and a 1.2 s limit: alive only
    // because the server answers the keepalives.
    auto r = run_async([]() -> asio::awaitable<command_result> {
        auto o = pinned_options();
        o.keepalive_interval = 300ms;
        o.keepalive_count_max = 4;
        session s = co_await session::connect(o);
        std::string cmd = "sleep 3; echo awake";
        co_return co_await run(s, cmd);
    });
    BOOST_TEST(r.out == "awake\n");

    // A peer that stops answering (its sshd processes frozen): failure, not a hang.
    auto start = std::chrono::steady_clock::now();
    std::vector<pid_t> frozen;
    try {
        run_async([&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            auto o = pinned_options();
            o.keepalive_interval = 300ms;
            o.keepalive_count_max = 3;
            session s = co_await session::connect(o);
            std::string cmd = "sleep 20";
            channel ch = co_await s.exec(cmd);
            frozen = host().session_pids();
            for (pid_t pid : frozen) ::kill(pid, SIGSTOP);
            exit_status st = co_await ch.wait();
        });
        BOOST_FAIL("wait returned");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::timed_out), e.what());
        BOOST_TEST(contains(e.what(), "keepalive"), e.what());
    }
    for (pid_t pid : frozen) ::kill(pid, SIGCONT);
    host().kill_sessions();
    BOOST_TEST(!frozen.empty());
    BOOST_TEST((std::chrono::steady_clock::now() - start < 10s));
}

BOOST_AUTO_TEST_CASE(reads_are_cancellable_by_a_deadline) {
    auto start = std::chrono::steady_clock::now();
    try {
        run_async([]() -> asio::awaitable<void> {
            session s = co_await session::connect(pinned_options());
            std::string cmd = "sleep 30";
            channel ch = co_await s.exec(cmd);
            std::array<char, 16> buf;
            auto read_op = ch.read(asio::buffer(buf));
            std::string what = "reading a silent command";
            std::size_t n = co_await io::with_deadline(std::move(read_op), 300ms, what);
            BOOST_TEST(n == 0u);
        });
        BOOST_FAIL("read returned");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::timed_out), e.what());
    }
    BOOST_TEST((std::chrono::steady_clock::now() - start < 10s));
}
