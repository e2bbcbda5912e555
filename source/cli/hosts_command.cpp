#include "ferry/cli/hosts_command.hpp"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "ferry/hosts/host_group.hpp"
#include "ferry/util/error.hpp"

namespace ferry::cli {
namespace {

namespace fs = std::filesystem;

std::string contents(const fs::path& file) {
    std::ifstream in(file);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

int hosts_up(int count, const fs::path& directory, std::uint64_t store_tmpfs_mb) {
    // Block the stop signals before any host exists: they are then only taken by
    // sigtimedwait below (children reset their mask), never lost in between.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, sig);
    ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);

    hosts::test_host_options base;
    base.store_tmpfs_bytes = store_tmpfs_mb * 1000000;
    auto group = hosts::host_group::start(fs::absolute(directory), count, base);
    group.record_owner(::getpid());
    for (const auto& file : {group.machines_file(), group.ssh_config(), group.known_hosts()})
        fmt::print("# {}\n{}\n", file.string(), contents(file));
    fmt::print("ferry hosts: {} host(s) up; stop with SIGTERM, ^C or `ferry hosts down {}`\n", count,
               group.directory().string());
    std::fflush(stdout);

    timespec tick{1, 0};
    for (;;) {
        int sig = ::sigtimedwait(&stop_signals, nullptr, &tick);
        if (sig > 0) {
            fmt::print("ferry hosts: signal {}, stopping\n", sig);
            break;
        }
        // A host that died on its own is worth a loud exit rather than a silent hang.
        for (const auto& h : group.hosts()) {
            if (!h.running() || ::kill(h.sshd_pid(), 0) != 0) {
                fmt::print(stderr, "ferry hosts: {}'s sshd (pid {}) is gone; stopping all\n", h.name(), h.sshd_pid());
                return 1;  // the group's destructor stops and wipes the rest
            }
        }
    }
    group.stop();
    return 0;  // the destructor removes the directory
}

int hosts_down(const fs::path& directory) {
    for (const auto& line : hosts::stop_recorded_hosts(fs::absolute(directory))) fmt::print("{}\n", line);
    return 0;
}

}  // namespace

int hosts_command(int argc, char** argv) {
    CLI::App app{"Local sshd build hosts with their own Nix stores", "ferry hosts"};
    app.require_subcommand(1);
    int count = 2;
    std::string up_dir, down_dir;
    auto* up = app.add_subcommand("up", "start N hosts under DIR; stays in the foreground until SIGTERM/^C");
    up->add_option("N", count, "number of hosts (host1..hostN)")->required()->check(CLI::Range(1, 64));
    up->add_option("DIR", up_dir, "directory for the hosts (created; removed on stop)")->required();
    std::uint64_t store_tmpfs_mb = 0;
    up->add_option("--store-tmpfs", store_tmpfs_mb,
                   "each host's /nix/store on a tmpfs of this many MB (default: on disk under DIR); the cost of "
                   "the host's own filesystem then stays out of a benchmark on one machine");
    auto* down = app.add_subcommand("down", "stop the hosts recorded under DIR, by pid");
    down->add_option("DIR", down_dir, "directory given to `ferry hosts up`")->required();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (up->parsed()) return hosts_up(count, up_dir, store_tmpfs_mb);
        return hosts_down(down_dir);
    } catch (const failure& f) {
        fmt::print(stderr, "ferry hosts: {}\n", f.what());
        return 1;
    }
}

}  // namespace ferry::cli
