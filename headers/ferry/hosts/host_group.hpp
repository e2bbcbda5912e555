// N test hosts (host1..hostN) under one directory, with the combined client files
// a Nix or ferry run needs: `ferry hosts up`, `make demo` and multi-host tests.
//
//   DIRECTORY/host1/ ... hostN/   each a test_host's directory
//   DIRECTORY/machines            one Nix machines-file line per host (ssh://root@127.0.0.1:PORT ...)
//   DIRECTORY/ssh_config          a Host block per alias host1..hostN, all pinned to:
//   DIRECTORY/known_hosts         "[127.0.0.1]:PORT KEY" for every host
//   DIRECTORY/owner.pid           written by whoever keeps the group alive (see record_owner)
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "ferry/hosts/test_host.hpp"

namespace ferry::hosts {

class host_group {
public:
    // Starts `count` hosts; `base` gives max_sessions, extra_nix_conf and
    // die_with_parent (name and directory are set per host). DIRECTORY must be
    // absent, empty, or an earlier group's directory. Throws ferry::failure.
    static host_group start(std::filesystem::path directory, int count, const test_host_options& base = {});

    host_group(host_group&&) noexcept;
    host_group& operator=(host_group&&) noexcept;
    ~host_group();  // stop() + remove the directory

    const std::filesystem::path& directory() const { return directory_; }
    std::vector<test_host>& hosts() { return hosts_; }
    const std::vector<test_host>& hosts() const { return hosts_; }

    std::filesystem::path machines_file() const { return directory_ / "machines"; }
    std::filesystem::path ssh_config() const { return directory_ / "ssh_config"; }
    std::filesystem::path known_hosts() const { return directory_ / "known_hosts"; }

    // Writes DIRECTORY/owner.pid, so that stop_recorded_hosts() can ask that process
    // to stop the group in order (SIGTERM) before killing anything itself.
    void record_owner(pid_t pid) const;

    void stop();  // stops every host; idempotent

private:
    explicit host_group(std::filesystem::path d) : directory_(std::move(d)) {}
    void write_client_files() const;

    std::filesystem::path directory_;
    std::vector<test_host> hosts_;
};

// `ferry hosts down`: stops the group recorded under DIRECTORY by pids, never by
// name. SIGTERMs the owner (owner.pid) and waits up to `grace` for it to clean up;
// then SIGKILLs every host's sshd that is still running — verified by its command
// line naming that host's sshd_config — with its sessions and whatever else lives
// in its mount namespace; then removes the directory. Returns a line per action
// taken; throws ferry::failure if DIRECTORY is not a host group's.
std::vector<std::string> stop_recorded_hosts(const std::filesystem::path& directory, int grace_ms = 10000);

}  // namespace ferry::hosts
