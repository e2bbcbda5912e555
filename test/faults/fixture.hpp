// The fault matrix's shared fixture (test/faults/*_test.cpp, one executable):
// ONE test host and ONE local store per executable, and the invariants every case
// asserts afterwards (issue 10):
//   (a) the local store verifies (`nix-store --verify`) and its store directory
//       holds nothing that is not a valid path (no temporaries, no half paths;
//       Nix's own <out>.lock of a failed build, free, is not ferry's and allowed);
//   (b) no ferry GC roots on the host (ferry-* under gcroots/) and the host's
//       store verifies (no half-registered path);
//   (c) every slot of the machine and its upload lock can be taken again.
// A case that leaves remote roots behind on purpose (a killed hook) runs the next
// build first: the next run must sweep them. Each case writes the ferry.conf it
// needs first (env.write_conf): cases share the store and its conf.
//
//   auto& f = faults::fault_fixture::get();
//   auto r = f.nix_build(expr);                       // through ferry, --max-jobs 0
//   faults::check_invariants(f, "after row 5");
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>
#include <fmt/format.h>

#include "ferry/hosts/test_host.hpp"
#include "ferry/schedule/machine.hpp"
#include "ferry/schedule/slot.hpp"
#include "ferry/schedule/upload_lock.hpp"
#include "support/nix_build.hpp"

namespace ferry::test_support::faults {

namespace fs = std::filesystem;

struct fault_fixture {
    hosts::test_host host;
    nix_build_env env;
    unsigned max_jobs = 1;  // the host's machine line: slots checked by the invariants

    fault_fixture()
        : host(hosts::test_host::start(hosts::temporary_directory("ferry-faults-host"), "faults1")),
          env("ferry-faults-local") {}

    static fault_fixture& get() {
        static std::unique_ptr<fault_fixture> f;
        if (!f) f = std::make_unique<fault_fixture>();
        return *f;
    }

    // The host's current machine line (port and key change when it restarts).
    std::string machine_line() const { return host.nix_machine_line("x86_64-linux", static_cast<int>(max_jobs)); }

    fs::path write_expr(const std::string& name, const std::string& text) { return env.write_expr(name, text); }

    // nix-build through ferry; every build goes to a builder (--max-jobs 0).
    build_run nix_build(const fs::path& expr, const std::string& extra = "",
                        std::optional<std::string> builders = std::nullopt) {
        return env.nix_build(expr, builders ? *builders : machine_line(), "--max-jobs 0 " + extra);
    }

    // Starts the host again (after its sshd was killed) with the store it had, so
    // that what a fault left there can still be checked and swept. A test host
    // restarted on its directory starts afresh (new port, keys, empty store): the
    // store and database are moved aside and moved back under the new namespace's
    // /nix (a bind mount of DIR/nix: entries renamed into it are seen at once).
    void restart_host() {
        host.stop();
        const fs::path dir = host.directory();
        const fs::path saved = hosts::temporary_directory("ferry-faults-saved");
        for (const char* sub : {"store", "var"}) fs::rename(dir / "nix" / sub, saved / sub);
        // The old host's destructor removes its directory: let it run before the
        // new host is made there.
        { auto old = std::move(host); }
        host = hosts::test_host::start(dir, "faults1");
        for (const char* sub : {"store", "var"}) {
            fs::remove_all(dir / "nix" / sub);
            fs::rename(saved / sub, dir / "nix" / sub);
        }
        fs::remove_all(saved);
    }

    // The scheduler's record of the host (slot directory name).
    schedule::machine schedule_machine() const {
        schedule::machine m;
        m.name = "127.0.0.1";
        m.port = host.port();
        m.max_jobs = max_jobs;
        return m;
    }
};

// Outputs of the derivations in the local store.
inline std::vector<std::string> local_derivation_outputs(nix_build_env& env, const std::vector<std::string>& names) {
    std::string cmd = "/usr/bin/nix-store --query --outputs";
    bool any = false;
    for (auto& n : names)
        if (n.ends_with(".drv")) {
            cmd += " " + sh_quote("/nix/store/" + n);
            any = true;
        }
    std::string out;
    if (!any || env.local.run(cmd, &out, nullptr) != 0) return {};
    return lines_of(out);
}

// Nix 2.8 leaves <out>.lock behind when a build fails (its own behaviour, with
// or without a hook; it reuses the file next time): such a file, for an output of
// a derivation in the store and held by nobody, is not a stray.
inline bool nix_output_lock_left(const fs::path& store_dir, const std::string& name,
                                 const std::vector<std::string>& outputs) {
    if (!name.ends_with(".lock")) return false;
    const std::string target = "/nix/store/" + name.substr(0, name.size() - 5);
    if (std::find(outputs.begin(), outputs.end(), target) == outputs.end()) return false;
    int fd = ::open((store_dir / name).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    ::close(fd);
    return free;
}

// Entries of the local store directory that are not valid paths (temporaries,
// half-copied paths, lock files of ferry's): must be none after every case.
inline std::vector<std::string> stray_local_entries(nix_build_env& env) {
    std::vector<std::string> names;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(env.local.store_root() / "store", ec)) {
        auto name = e.path().filename().string();
        if (name == ".links" && e.is_directory()) continue;  // Nix's own (hard-link pool)
        names.push_back(name);
    }
    if (names.empty()) return {};
    std::string cmd = "/usr/bin/nix-store --check-validity --print-invalid";
    for (auto& n : names) cmd += " " + sh_quote("/nix/store/" + n);
    std::string out, err;
    int status = env.local.run(cmd, &out, &err);
    BOOST_TEST(status == 0, "nix-store --check-validity on the local store: " << err);
    auto outputs = local_derivation_outputs(env, names);
    std::vector<std::string> stray;
    for (auto& p : lines_of(out)) {
        auto name = p.substr(p.rfind('/') + 1);
        if (!nix_output_lock_left(env.local.store_root() / "store", name, outputs)) stray.push_back(p);
    }
    return stray;
}

// (a) The local store.
inline void check_local_invariants(nix_build_env& env, const std::string& context) {
    std::string out, err;
    BOOST_TEST(env.local.run("/usr/bin/nix-store --verify", &out, &err) == 0,
               context << ": local nix-store --verify failed: " << err);
    auto stray = stray_local_entries(env);
    BOOST_TEST(stray.empty(), context << ": stray entries in the local store: " << fmt::format("{}", fmt::join(stray, " ")));
}

// (b) + (c) for one host: no ferry roots, its store verifies, every slot and the
// upload lock free.
inline void check_host_invariants(hosts::test_host& host, const fs::path& state_dir, const schedule::machine& m,
                                  const std::string& context) {
    auto roots = remote_roots(host);
    BOOST_TEST(roots.empty(), context << ": ferry GC roots left on " << host.name() << ": "
                                      << fmt::format("{}", fmt::join(roots, " ")));
    std::string err;
    BOOST_TEST(host.run("/usr/bin/nix-store --verify", nullptr, &err) == 0,
               context << ": nix-store --verify on " << host.name() << " failed: " << err);
    std::vector<schedule::slot> held;
    for (unsigned i = 0; i < m.max_jobs; ++i) {
        auto s = schedule::try_acquire_slot(state_dir, m);
        BOOST_TEST(s.has_value(), context << ": slot " << i << " of " << schedule::machine_key(m) << " still held");
        if (s) held.push_back(std::move(*s));
    }
    auto upload = schedule::try_lock_any(schedule::upload_lock_directory(state_dir, m), 1);
    BOOST_TEST(upload.has_value(), context << ": the upload lock of " << schedule::machine_key(m) << " is still held");
}

// Every invariant, for the fixture's host and store. Call after each case.
inline void check_invariants(fault_fixture& f, const std::string& context) {
    check_local_invariants(f.env, context);
    check_host_invariants(f.host, f.env.state_dir(), f.schedule_machine(), context);
}

}  // namespace ferry::test_support::faults
