#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include <array>
#include <thread>

#include "ferry/io/child_process.hpp"
#include "ferry/io/deadline.hpp"
#include "ferry/io/fault.hpp"
#include "ferry/io/fd_writer.hpp"
#include "ferry/io/stage_channel.hpp"
#include "support/run_async.hpp"

using namespace std::chrono_literals;
using namespace ferry;
using namespace ferry::io;

namespace {

using test_support::run_async;

struct ignore_sigpipe {
    ignore_sigpipe() { ::signal(SIGPIPE, SIG_IGN); }
};
BOOST_TEST_GLOBAL_FIXTURE(ignore_sigpipe);

}  // namespace

BOOST_AUTO_TEST_CASE(fault_counter_fails_nth_and_later) {
    fault_counter faults(3);
    BOOST_TEST(!faults.step());
    BOOST_TEST(!faults.step());
    BOOST_TEST(faults.step() == make_error_code(errc::injected_fault));
    BOOST_TEST(faults.step() == make_error_code(errc::injected_fault));
    faults.reset(1);
    try {
        faults.check("write chunk");
        BOOST_FAIL("no fault");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::injected_fault));
        BOOST_TEST(std::string(e.what()).find("write chunk") != std::string::npos);
    }
    fault_counter counting;
    for (int i = 0; i < 100; ++i) BOOST_TEST(!counting.step());
    BOOST_TEST(counting.count() == 100u);
}

BOOST_AUTO_TEST_CASE(fault_stream_fails_third_operation_of_a_real_pipe) {
    // Every operation index: the n-th write fails, the ones before went through the pipe.
    for (std::size_t n = 1; n <= 4; ++n) {
        auto written = run_async([n]() -> asio::awaitable<std::size_t> {
            auto ex = co_await asio::this_coro::executor;
            asio::readable_pipe r(ex);
            asio::writable_pipe w(ex);
            asio::connect_pipe(r, w);
            fault_counter faults(n);
            fault_stream<asio::writable_pipe> stream(w, faults);
            std::size_t ok = 0;
            const std::string chunk = "abcd";
            for (int i = 0; i < 4; ++i) {
                auto [ec, k] = co_await stream.async_write_some(
                    asio::buffer(chunk), asio::experimental::as_tuple(asio::use_awaitable));
                if (ec) {
                    BOOST_TEST(ec == make_error_code(errc::injected_fault));
                    BOOST_TEST(k == 0u);
                    break;
                }
                ok += k;
            }
            w.close();
            std::string got;
            std::array<char, 64> buf;
            for (;;) {
                auto [ec, k] = co_await r.async_read_some(asio::buffer(buf),
                                                          asio::experimental::as_tuple(asio::use_awaitable));
                if (ec) break;
                got.append(buf.data(), k);
            }
            BOOST_TEST(got.size() == ok);
            co_return ok;
        });
        BOOST_TEST(written == 4 * (n - 1));
    }
}

BOOST_AUTO_TEST_CASE(child_process_exit_status_and_output) {
    std::vector<std::string> argv{"/bin/sh", "-c", "cat; echo to-err >&2; exit 7"};
    std::string input = "hello input";
    auto r = run_async([&]() -> asio::awaitable<process_result> { co_return co_await run_process(argv, input); });
    BOOST_TEST(r.status == 7);
    BOOST_TEST(r.out == "hello input");
    BOOST_TEST(r.err == "to-err\n");

    std::vector<std::string> wc{"wc", "-c"};
    std::string big_input(3 << 20, 'x');
    auto big = run_async([&]() -> asio::awaitable<process_result> { co_return co_await run_process(wc, big_input); });
    BOOST_TEST(big.status == 0);
    BOOST_TEST(std::stoul(big.out) == 3u << 20);
}

BOOST_AUTO_TEST_CASE(child_process_killed_by_signal_and_kill) {
    std::vector<std::string> argv{"/bin/sh", "-c", "kill -TERM $$"};
    auto status = run_async([&]() -> asio::awaitable<int> { co_return (co_await run_process(argv)).status; });
    BOOST_TEST(status == 128 + SIGTERM);
    process_options sleep;
    sleep.argv = {"sleep", "30"};
    auto killed = run_async([&]() -> asio::awaitable<int> {
        auto child = child_process::spawn(co_await asio::this_coro::executor, sleep);
        child.kill(SIGKILL);
        co_return co_await child.wait();
    });
    BOOST_TEST(killed == 128 + SIGKILL);
}

BOOST_AUTO_TEST_CASE(child_process_spawn_failure_names_program) {
    asio::io_context io;
    try {
        process_options options;
        options.argv = {"/nonexistent/ferry-no-such-program"};
        child_process::spawn(io.get_executor(), options);
        BOOST_FAIL("spawned");
    } catch (const failure& e) {
        BOOST_TEST(std::string(e.what()).find("ferry-no-such-program") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(deadline_times_out_and_passes_results) {
    auto slow = []() -> asio::awaitable<int> {
        asio::steady_timer t(co_await asio::this_coro::executor, 10s);
        co_await t.async_wait(asio::use_awaitable);
        co_return 1;
    };
    auto start = std::chrono::steady_clock::now();
    try {
        run_async([&]() -> asio::awaitable<int> { co_return co_await with_deadline(slow(), 50ms, "slow step"); });
        BOOST_FAIL("no timeout");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::timed_out));
        BOOST_TEST(std::string(e.what()).find("slow step") != std::string::npos);
    }
    BOOST_TEST((std::chrono::steady_clock::now() - start < 5s));

    auto fast = []() -> asio::awaitable<int> { co_return 42; };
    BOOST_TEST(run_async([&]() -> asio::awaitable<int> { co_return co_await with_deadline(fast(), 5s, "fast"); }) == 42);

    // A failure inside is passed on at once, not after the deadline (unlike operator||).
    auto throws = []() -> asio::awaitable<void> {
        throw failure(errc::bad_input, "inner");
        co_return;
    };
    start = std::chrono::steady_clock::now();
    try {
        run_async([&]() -> asio::awaitable<void> { co_await with_deadline(throws(), 10s, "outer"); });
        BOOST_FAIL("no throw");
    } catch (const failure& e) {
        BOOST_TEST(e.code() == make_error_code(errc::bad_input));
    }
    BOOST_TEST((std::chrono::steady_clock::now() - start < 5s));
}

BOOST_AUTO_TEST_CASE(stage_channel_delivers_buffered_items_before_end_and_error) {
    auto got = run_async([]() -> asio::awaitable<std::vector<int>> {
        auto ex = co_await asio::this_coro::executor;
        stage_channel<int> ch(ex, 2);
        // The producer finishes while items are still buffered: none may be lost.
        asio::co_spawn(ex, [&]() -> asio::awaitable<void> {
            for (int i = 0; i < 5; ++i) co_await ch.send(i);
            co_await ch.finish();
        }, asio::detached);
        std::vector<int> items;
        while (auto item = co_await ch.receive()) items.push_back(*item);
        co_return items;
    });
    BOOST_TEST(got == (std::vector<int>{0, 1, 2, 3, 4}));

    try {
        run_async([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            stage_channel<std::string> ch(ex, 4);
            co_await ch.send("a");
            auto error = std::make_exception_ptr(failure(errc::remote_failed, "host1: stage x broke"));
            co_await ch.fail(error);
            auto first = co_await ch.receive();
            BOOST_TEST((first && *first == "a"));
            // (a named result: g++ 12 destroys a discarded, never-built result when co_await throws)
            auto second = co_await ch.receive();
            BOOST_TEST(!second.has_value());
        });
        BOOST_FAIL("no error");
    } catch (const failure& e) {
        BOOST_TEST(std::string(e.what()) == "host1: stage x broke");
    }
}

BOOST_AUTO_TEST_CASE(fd_writer_leaves_flags_alone) {
    for (bool start_nonblocking : {false, true}) {
        int p[2];
        BOOST_REQUIRE(::pipe(p) == 0);
        if (start_nonblocking) ::fcntl(p[1], F_SETFL, ::fcntl(p[1], F_GETFL) | O_NONBLOCK);
        const int before = ::fcntl(p[1], F_GETFL);
        // 1 MiB > the pipe buffer: the writer must block (or poll) while we drain.
        std::string data(1 << 20, 'L');
        std::string got;
        std::thread reader([&] {
            char buf[65536];
            ssize_t n;
            while ((n = ::read(p[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
        });
        int during = -1;
        run_async([&]() -> asio::awaitable<void> {
            fd_writer writer(p[1]);
            std::string_view all = data;
            auto first = all.substr(0, all.size() / 2), second = all.substr(all.size() / 2);
            co_await writer.write(first);
            during = ::fcntl(p[1], F_GETFL);
            co_await writer.write(second);
        });
        BOOST_TEST(::fcntl(p[1], F_GETFL) == before);
        BOOST_TEST(during == before);
        ::close(p[1]);
        reader.join();
        ::close(p[0]);
        BOOST_TEST(got == data);
    }
}
