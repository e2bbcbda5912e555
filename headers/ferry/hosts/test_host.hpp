// Real build machines on one box, for tests, `make demo` and `ferry bench --local-host`.
//
// A test host is an OpenSSH sshd on 127.0.0.1 whose processes see their own,
// initially empty Nix store at /nix (a bind mount inside a private mount
// namespace), with generated host and client keys and its own authorized_keys and
// known_hosts files: /root/.ssh is never touched. It is stopped by pid — the
// listener and its per-connection children — and its directory is wiped.
// (../shared/reference/test-hosts.md has the recipe this follows.)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ferry::hosts {

struct test_host_options {
    std::string name = "host1";     // also the ssh_config alias
    std::filesystem::path directory;  // everything of the host lives here; created, wiped on stop
    int max_sessions = 10;          // OpenSSH's default
};

class test_host {
public:
    // Generates keys, writes sshd_config, starts sshd on a free port and waits until
    // it accepts connections. Throws ferry::failure naming the step on error.
    static test_host start(test_host_options options);

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

    // Runs `sh -c command` inside the host's mount namespace (as a remote command
    // would see the machine, without SSH); returns the exit status, output in *out.
    int run(const std::string& command, std::string* out = nullptr) const;

    void wipe_store();                 // empty Nix store and database, as new
    pid_t sshd_pid() const { return sshd_pid_; }
    std::vector<pid_t> session_pids() const;  // per-connection sshd children and their descendants
    void kill_sessions();              // SIGKILL every session, listener stays
    void stop();                       // SIGKILL listener and sessions; idempotent

private:
    explicit test_host(test_host_options options) : options_(std::move(options)) {}

    test_host_options options_;
    std::uint16_t port_ = 0;
    pid_t sshd_pid_ = -1;
};

// A fresh local Nix store for the local side of a test: commands run in a mount
// namespace where DIRECTORY/nix is bound over /nix (nix-build, nix-store, ferry as
// build hook all see it), so tests never depend on what /nix holds.
class local_store {
public:
    static local_store create(std::filesystem::path directory);
    local_store(local_store&&) noexcept;
    local_store& operator=(local_store&&) noexcept;
    ~local_store();  // removes the directory

    const std::filesystem::path& directory() const { return directory_; }
    std::filesystem::path store_root() const { return directory_ / "nix"; }

    // Runs `sh -c command` with /nix being this store; environment passed through.
    int run(const std::string& command, std::string* out = nullptr) const;

private:
    explicit local_store(std::filesystem::path d) : directory_(std::move(d)) {}
    std::filesystem::path directory_;
};

}  // namespace ferry::hosts
