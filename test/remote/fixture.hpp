// One test host and one fresh local store for a whole test executable (remote
// and transfer). The test process itself moves into a private mount namespace
// with the local store bound over /nix, so ferry's in-process store code
// (store_database, nar_source, importers) and the local store's `nix-store`
// commands (local_store::run) see the same /nix/store — as the hook does.
#pragma once

#include <signal.h>
#include <sched.h>
#include <sys/mount.h>

#include <boost/test/unit_test.hpp>

#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>

#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/hosts/test_host.hpp"
#include "ferry/protocol/serve.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/store/database.hpp"
#include "support/run_async.hpp"

namespace ferry::protocol::serve {
inline std::ostream& operator<<(std::ostream& o, build_status s) { return o << to_string(s); }
}  // namespace ferry::protocol::serve

namespace ferry_test {

using namespace std::chrono_literals;

struct remote_fixture {
    remote_fixture() {
        ::signal(SIGPIPE, SIG_IGN);
        local = std::make_unique<ferry::hosts::local_store>(
            ferry::hosts::local_store::create(ferry::hosts::temporary_directory("ferry-remote-local")));
        // Single-threaded here (before any host or pool starts): unshare may take the mount namespace.
        if (::unshare(CLONE_NEWNS) != 0) throw std::runtime_error("unshare(CLONE_NEWNS) failed");
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
            throw std::runtime_error("making / private failed");
        if (::mount(local->store_root().c_str(), "/nix", nullptr, MS_BIND, nullptr) != 0)
            throw std::runtime_error("binding the local store over /nix failed");
        check(local->run("nix-store --init"), "nix-store --init");
        host = std::make_unique<ferry::hosts::test_host>(
            ferry::hosts::test_host::start(ferry::hosts::temporary_directory("ferry-remote-host"), "remote1"));
        std::random_device rd;
        nonce = fmt::format("{:08x}{:08x}", rd(), rd());
        instance = this;
    }
    ~remote_fixture() {
        instance = nullptr;
        host.reset();
        local.reset();
    }

    static void check(int status, const std::string& what) {
        if (status != 0) throw std::runtime_error(what + ": exit status " + std::to_string(status));
    }

    std::unique_ptr<ferry::hosts::local_store> local;
    std::unique_ptr<ferry::hosts::test_host> host;
    std::string nonce;
    static inline remote_fixture* instance = nullptr;
};

inline remote_fixture& fx() { return *remote_fixture::instance; }
inline ferry::hosts::test_host& host() { return *fx().host; }
inline ferry::hosts::local_store& local() { return *fx().local; }

inline std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

// Runs a command on the local store; returns stdout; fails the test on error.
inline std::string local_run(const std::string& cmd) {
    std::string out, err;
    int st = local().run(cmd, &out, &err);
    if (st != 0) throw std::runtime_error("local `" + cmd + "` failed: " + err);
    return trim(out);
}
inline std::string host_run(const std::string& cmd, int* status = nullptr) {
    std::string out, err;
    int st = host().run(cmd, &out, &err);
    if (status)
        *status = st;
    else if (st != 0)
        throw std::runtime_error("host `" + cmd + "` failed: " + err);
    return trim(out);
}

inline std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < s.size()) {
        auto nl = s.find('\n', start);
        if (nl == std::string::npos) nl = s.size();
        if (nl > start) out.push_back(s.substr(start, nl - start));
        start = nl + 1;
    }
    return out;
}

// Writes a Nix expression file in the local store's directory; returns its path.
inline std::string write_expr(const std::string& name, const std::string& text) {
    auto path = local().directory() / name;
    std::ofstream(path) << text;
    return path.string();
}

inline ferry::ssh::session_options host_options() { return ferry::test_support::pinned_options(host()); }

inline ferry::store::store_database& local_db() {
    static ferry::store::store_database db(
        ferry::store::store_config::make(ferry::store::store_flavour::nix, "/nix/store", "/nix/var/nix"));
    return db;
}

using ferry::test_support::run_async;

}  // namespace ferry_test
