#include "ferry/hosts/host_group.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/core.h>

#include "ferry/util/error.hpp"
#include "process.hpp"

namespace ferry::hosts {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* group_marker = ".ferry-host-group";

pid_t read_pid(const fs::path& file, const std::string& key = "") {
    std::istringstream in(detail::read_file(file));
    std::string word;
    long value = -1;
    if (key.empty()) {
        in >> value;
        return value > 0 ? static_cast<pid_t>(value) : -1;
    }
    while (in >> word >> value)
        if (word == key) return value > 0 ? static_cast<pid_t>(value) : -1;
    return -1;
}

}  // namespace

host_group host_group::start(fs::path directory, int count, const test_host_options& base) {
    if (count < 1 || count > 64)
        throw failure(errc::bad_input, fmt::format("host group: {} hosts requested, expected 1 to 64", count));
    // An earlier group left here (say, by a killed `ferry hosts up`): stop it first.
    if (directory.is_absolute() && fs::exists(directory / group_marker)) stop_recorded_hosts(directory, 2000);
    detail::prepare_directory(directory, group_marker, "host group");
    host_group group(std::move(directory));
    for (int i = 1; i <= count; ++i) {
        test_host_options options = base;
        options.name = fmt::format("host{}", i);
        options.directory = group.directory_ / options.name;
        group.hosts_.push_back(test_host::start(std::move(options)));
    }
    group.write_client_files();
    return group;
}

void host_group::write_client_files() const {
    std::string machines, config, known;
    for (const auto& h : hosts_) {
        machines += h.nix_machine_line() + "\n";
        // Each block pins its host with that host's own known_hosts file.
        config += detail::read_file(h.ssh_config()) + "\n";
        known += detail::read_file(h.known_hosts());
    }
    detail::write_file(machines_file(), machines);
    detail::write_file(ssh_config(), config);
    detail::write_file(known_hosts(), known);
}

void host_group::record_owner(pid_t pid) const {
    detail::write_file(directory_ / "owner.pid", fmt::format("{}\n", pid));
}

host_group::host_group(host_group&& other) noexcept
    : directory_(std::move(other.directory_)), hosts_(std::move(other.hosts_)) {
    other.directory_.clear();
    other.hosts_.clear();
}

host_group& host_group::operator=(host_group&& other) noexcept {
    if (this != &other) {
        this->~host_group();
        new (this) host_group(std::move(other));
    }
    return *this;
}

host_group::~host_group() {
    try {
        stop();
        hosts_.clear();  // each removes its own directory
        std::error_code ec;
        if (!directory_.empty() && fs::exists(directory_ / group_marker, ec)) fs::remove_all(directory_, ec);
    } catch (...) {
        // Destructors do not throw; what is left lives in a directory of ours.
    }
}

void host_group::stop() {
    for (auto& h : hosts_) h.stop();
}

std::vector<std::string> stop_recorded_hosts(const fs::path& directory, int grace_ms) {
    if (!fs::exists(directory / group_marker))
        throw failure(errc::bad_input,
                      fmt::format("{} is not a host group's directory (no {})", directory.string(), group_marker));
    std::vector<std::string> actions;

    pid_t owner = read_pid(directory / "owner.pid");
    if (owner > 0 && owner != ::getpid() && detail::is_running(owner)) {
        ::kill(owner, SIGTERM);
        bool gone = detail::wait_gone({owner}, std::chrono::milliseconds(grace_ms));
        actions.push_back(gone ? fmt::format("owner {} stopped the hosts and exited", owner)
                               : fmt::format("owner {} did not exit within {} ms", owner, grace_ms));
    }

    // Whatever is still running (owner killed hard, or never recorded): the
    // recorded listener and its children, and every process whose /nix is the
    // host's store, such as sessions orphaned when the owner was SIGKILLed.
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(directory, ec)) {
        fs::path pids = entry.path() / "pids";
        if (!fs::exists(pids)) continue;
        pid_t sshd = read_pid(pids, "sshd");
        fs::path config = entry.path() / "sshd_config";
        // A recorded pid may have been reused: only an sshd started with this
        // host's own config is ours.
        bool listener = sshd > 0 && detail::is_running(sshd) &&
                        detail::command_line_of(sshd).find(config.string()) != std::string::npos;
        fs::path store = entry.path() / "nix";
        auto killed = detail::freeze_and_kill([&] {
            std::vector<pid_t> found;
            if (listener) {
                found = detail::descendants(sshd);
                found.push_back(sshd);
            }
            for (pid_t pid : detail::processes_seeing_nix_at(store, -1))
                if (std::find(found.begin(), found.end(), pid) == found.end()) found.push_back(pid);
            return found;
        });
        if (killed.empty()) continue;
        detail::wait_gone(killed, 5s);
        actions.push_back(fmt::format("{}: killed {} process(es){}", entry.path().filename().string(), killed.size(),
                                      listener ? fmt::format(", sshd {} among them", sshd) : ""));
    }

    if (fs::exists(directory / group_marker)) {
        fs::remove_all(directory, ec);
        actions.push_back(ec ? fmt::format("could not remove {}: {}", directory.string(), ec.message())
                             : fmt::format("removed {}", directory.string()));
    }
    return actions;
}

}  // namespace ferry::hosts
