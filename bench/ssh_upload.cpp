// Upload throughput of one SSH exec channel: 1 GiB into `cat >/dev/null` on a
// local test host, ferry's channel (libssh, aes128-gcm first) against the `ssh`
// command (OpenSSH, its default cipher, and again with -c aes128-gcm@openssh.com),
// median of N runs each, in the same process run.
//   bench_ssh_upload [MiB=1024] [runs=3]
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/hosts/test_host.hpp"
#include "ferry/io/child_process.hpp"
#include "ferry/ssh/session.hpp"

using namespace ferry;
using clock_type = std::chrono::steady_clock;

namespace {

std::string random_block(std::size_t size) {
    std::mt19937_64 rng(42);
    std::string out(size, '\0');
    for (std::size_t i = 0; i + 8 <= size; i += 8) {
        auto v = rng();
        std::memcpy(out.data() + i, &v, 8);
    }
    return out;
}

double ferry_run(const hosts::test_host& host, const std::string& block, std::size_t blocks) {
    asio::io_context io;
    double secs = 0;
    auto fut = asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        ssh::session_options o;
        o.host = host.name();
        o.config_file = host.ssh_config();
        // Timed from before the connection, as the ssh command's run is.
        auto start = clock_type::now();
        ssh::session s = co_await ssh::session::connect(o);
        std::string cmd = "cat >/dev/null";
        ssh::channel ch = co_await s.exec(cmd);
        for (std::size_t i = 0; i < blocks; ++i) co_await ch.write(asio::buffer(block));
        co_await ch.send_eof();
        ssh::exit_status st = co_await ch.wait();
        secs = std::chrono::duration<double>(clock_type::now() - start).count();
        if (!st.success()) throw std::runtime_error("remote cat failed: " + st.describe());
    }, asio::use_future);
    io.run();
    fut.get();
    return secs;
}

double ssh_run(const hosts::test_host& host, const std::string& block, std::size_t blocks, bool gcm) {
    asio::io_context io;
    double secs = 0;
    auto fut = asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        io::process_options p;
        p.argv = {"/usr/bin/ssh", "-F", host.ssh_config().string()};
        if (gcm) {
            p.argv.push_back("-c");
            p.argv.push_back("aes128-gcm@openssh.com");
        }
        p.argv.push_back(host.name());
        p.argv.push_back("cat >/dev/null");
        p.in = io::stdio::pipe;
        p.out = io::stdio::null;
        p.err = io::stdio::inherit;
        auto start = clock_type::now();
        auto child = io::child_process::spawn(co_await asio::this_coro::executor, p);
        for (std::size_t i = 0; i < blocks; ++i) co_await asio::async_write(child.in(), asio::buffer(block), asio::use_awaitable);
        child.close_in();
        int status = co_await child.wait();
        secs = std::chrono::duration<double>(clock_type::now() - start).count();
        if (status != 0) throw std::runtime_error(fmt::format("ssh exited with {}", status));
    }, asio::use_future);
    io.run();
    fut.get();
    return secs;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);
    const std::size_t mib = argc > 1 ? std::stoul(argv[1]) : 1024;
    const int runs = argc > 2 ? std::stoi(argv[2]) : 3;
    try {
        auto host = hosts::test_host::start(hosts::temporary_directory("ferry-bench-ssh"), "benchhost");
        const std::string block = random_block(1 << 20);
        std::vector<double> f, o, og;
        for (int r = 0; r < runs; ++r) {
            f.push_back(ferry_run(host, block, mib));
            o.push_back(ssh_run(host, block, mib, false));
            og.push_back(ssh_run(host, block, mib, true));
            std::printf("run %d: ferry %.2f s, ssh %.2f s, ssh -c aes128-gcm %.2f s\n", r + 1, f.back(), o.back(), og.back());
        }
        const double mb = mib * 1048576.0 / 1e6;
        double fm = median(f), om = median(o), ogm = median(og);
        std::printf("median of %d, %zu MiB into `cat >/dev/null`:\n", runs, mib);
        std::printf("  ferry channel         %.2f s  %.0f MB/s\n", fm, mb / fm);
        std::printf("  ssh (default cipher)  %.2f s  %.0f MB/s   ferry/ssh = %.2fx\n", om, mb / om, om / fm);
        std::printf("  ssh -c aes128-gcm     %.2f s  %.0f MB/s   ferry/ssh = %.2fx\n", ogm, mb / ogm, ogm / fm);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_ssh_upload: %s\n", e.what());
        return 1;
    }
}
