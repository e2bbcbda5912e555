// Real build machines on one box, for tests, `make demo` and `ferry bench --local-host`.
//
// A test host is an OpenSSH sshd on 127.0.0.1 whose processes see their own,
// initially empty Nix store at /nix (a bind mount inside a private mount
// namespace), with generated host and client keys and its own authorized_keys and
// known_hosts files: /root/.ssh is never touched. It is stopped by pid — the
// listener and its per-connection children — and its directory is wiped.
// (../shared/reference/test-hosts.md has the recipe this follows.)
//
// Processes: the caller forks a small "reaper" that unshares the mount namespace,
// binds DIR/nix over /nix and DIR/etc/nix over /etc/nix, becomes a child
// subreaper and runs `sshd -D -f DIR/sshd_config -E DIR/sshd.log` as its child.
// Sessions that detach (setsid, daemons) are re-parented to the reaper, so they
// remain the host's; stop() kills the whole tree plus any process whose /nix is
// DIR/nix, and the reaper exits once all are reaped. Ready means sshd logged
// "Server listening on 127.0.0.1 port P" (after listen()). The files in DIR:
// hostkey(.pub), client(.pub), authorized_keys, known_hosts, ssh_config,
// sshd_config, sshd.log, pids, nix/{store,var}, etc/nix/nix.conf.
//
// Not thread-safe: one thread owns a test_host. run() may run while sessions are open.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace ferry::hosts {

struct test_host_options {
    std::string name = "host1";     // also the ssh_config alias
    // Everything of the host lives here; created, removed by the destructor. Must be
    // absent, empty, or a previous test host's directory (it then starts afresh).
    std::filesystem::path directory;
    int max_sessions = 10;          // OpenSSH's default
    // Appended to the host's /etc/nix/nix.conf (which already says `substituters =`,
    // `sandbox = false`, `build-users-group =`): e.g. "require-sigs = false\n".
    std::string extra_nix_conf;
    // SIGKILL sshd when the thread that called start() exits (PR_SET_PDEATHSIG), so a
    // crashed test leaves no listener behind. Turn off when starting from a thread
    // that ends before the host should.
    bool die_with_parent = true;
    // Programs this machine lacks, e.g. {"/usr/bin/zstd"}: an empty, non-executable
    // file is bound over each inside the host's namespace, so `command -v` finds
    // nothing and running it fails (PATH tricks cannot hide /usr/bin tools). Each
    // must exist on this box.
    std::vector<std::string> hidden_programs;
    // Non-zero: the host's /nix/store is a tmpfs of this many bytes (its database
    // stays in DIR/nix/var), so `df /nix/store` and writes into the store see a
    // small disk that fills up (disk-full faults). Its contents are then visible
    // only through run() and ssh, not under store_root()/store.
    std::uint64_t store_tmpfs_bytes = 0;
};

// A fresh directory /tmp/PREFIX.XXXXXX (mkdtemp), for test hosts and local stores.
std::filesystem::path temporary_directory(const std::string& prefix = "ferry-test");

class test_host {
public:
    // Generates keys, writes sshd_config, starts sshd on a free port and waits until
    // it accepts connections. Throws ferry::failure naming the step on error.
    static test_host start(test_host_options options);
    // Shorthand with the other options at their defaults (designated initializers
    // that skip members trip -Wmissing-field-initializers under -Werror).
    static test_host start(std::filesystem::path directory, std::string name = "host1");

    test_host(test_host&&) noexcept;
    test_host& operator=(test_host&&) noexcept;
    test_host(const test_host&) = delete;
    test_host& operator=(const test_host&) = delete;
    ~test_host();  // stop() + remove the directory

    const std::string& name() const { return options_.name; }
    std::uint16_t port() const { return port_; }
    const std::filesystem::path& directory() const { return options_.directory; }

    std::filesystem::path client_key() const;       // private key the client logs in with
    std::string host_key_line() const;              // "ssh-ed25519 AAAA..." (the public key)
    std::string host_key_base64() const;            // base64 of that line: a Nix machines file's 8th column
    std::filesystem::path known_hosts() const;      // "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
    std::filesystem::path ssh_config() const;       // Host NAME / HostName / Port / User / IdentityFile / UserKnownHostsFile
    std::filesystem::path store_root() const;       // what the host sees as /nix

    // A line for a Nix machines file with ferry's port extension:
    // "ssh://root@127.0.0.1:PORT SYSTEMS CLIENT_KEY MAX_JOBS 1 - - BASE64_HOST_KEY".
    std::string nix_machine_line(const std::string& systems = "x86_64-linux", int max_jobs = 1) const;

    // Runs `/bin/sh -c command` inside the host's mount namespace (as a remote
    // command would see the machine, without SSH; the caller's environment is
    // passed). Returns the exit status (128 + signal if killed). stdout goes to *out
    // (discarded if null), stderr to *err (inherited if null). Throws ferry::failure
    // if the host is not running.
    int run(const std::string& command, std::string* out = nullptr, std::string* err = nullptr) const;

    void wipe_store();                 // empty Nix store and database, as new (call with no sessions)
    bool running() const { return reaper_pid_ > 0; }
    pid_t sshd_pid() const { return sshd_pid_; }
    // Per-connection sshd children and their descendants, including processes that
    // detached from them (the host keeps orphans as its own children).
    std::vector<pid_t> session_pids() const;
    void kill_sessions();              // SIGKILL every session and waits for it to go; listener stays
    // SIGKILLs listener, sessions and any other process whose /nix is this host's
    // store, and waits until they are gone; idempotent. Keeps the directory.
    void stop();

    std::filesystem::path log_file() const;  // sshd's log (-E)

private:
    explicit test_host(test_host_options options) : options_(std::move(options)) {}
    void launch();  // one attempt at starting sshd on port_

    test_host_options options_;
    std::uint16_t port_ = 0;
    pid_t sshd_pid_ = -1;
    // Our direct child: it made the mount namespace, is sshd's parent and the
    // subreaper of everything sshd starts, and exits once all of them are gone.
    pid_t reaper_pid_ = -1;
};

// A fresh local Nix store for the local side of a test: commands run in a mount
// namespace where DIRECTORY/nix is bound over /nix (nix-build, nix-store, ferry as
// build hook all see it), so tests never depend on what /nix holds.
class local_store {
public:
    // Directory: as for test_host_options::directory. extra_nix_conf is appended to
    // the store's nix.conf.
    static local_store create(std::filesystem::path directory, const std::string& extra_nix_conf = "");
    local_store(local_store&&) noexcept;
    local_store& operator=(local_store&&) noexcept;
    ~local_store();  // removes the directory

    const std::filesystem::path& directory() const { return directory_; }
    std::filesystem::path store_root() const { return directory_ / "nix"; }

    // Runs `/bin/sh -c command` with /nix being this store and /etc/nix this store's
    // configuration (`substituters =`, `sandbox = false`, `build-users-group =`);
    // environment passed through. Output as in test_host::run.
    int run(const std::string& command, std::string* out = nullptr, std::string* err = nullptr) const;

private:
    explicit local_store(std::filesystem::path d) : directory_(std::move(d)) {}
    std::filesystem::path directory_;
};

}  // namespace ferry::hosts
