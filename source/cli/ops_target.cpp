#include "ferry/cli/ops_target.hpp"

#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <regex>

#include <fmt/core.h>
#include <fmt/format.h>

#include "ferry/hook/offload.hpp"
#include "ferry/machines/ferry_conf.hpp"
#include "ferry/machines/locate.hpp"
#include "ferry/ssh/ssh_options.hpp"
#include "ferry/util/error.hpp"

namespace ferry::cli {

namespace fs = std::filesystem;

namespace {

// Nix's `system` setting default: <machine>-<kernel>, e.g. x86_64-linux.
std::string local_system() {
    struct utsname u {};
    if (::uname(&u) != 0) return "x86_64-linux";
    std::string kernel = u.sysname;
    std::transform(kernel.begin(), kernel.end(), kernel.begin(), [](unsigned char c) { return std::tolower(c); });
    return std::string(u.machine) + "-" + kernel;
}

ops_target make_target(const machines::machine& m, const machines::ferry_conf& conf,
                       const ssh::ssh_command_options& nix_sshopts) {
    ops_target t;
    bool guix = m.kind == machines::flavour::guix;
    // What the daemon shows ("building X on 'ssh://...'"), Guix's `name`.
    t.name = guix ? m.host : hook::machine_uri(m);
    t.from_guix_file = guix;

    auto settings = conf.for_machine(m.host);
    // Exactly as the hook reaches the machine, so that a pass means the hook can too.
    t.ssh = hook::session_options_for(m, settings.connect_timeout);
    t.ssh.keepalive_interval = settings.keepalive_interval;
    if (!guix) ssh::apply_ssh_command_options(nix_sshopts, t.ssh);
    try {
        t.codec = codec::parse_codec_spec(settings.codec);
    } catch (const failure& f) {
        throw failure(errc::bad_input, fmt::format("{}: machine {}: codec: {}", conf.path().empty() ? "ferry.conf" : conf.path(),
                                                   m.host, f.what()));
    }

    if (m.remote_program) t.remote.remote_program = *m.remote_program;
    if (m.remote_store) t.remote.remote_store = *m.remote_store;
    if (guix) {
        t.remote.store_dir = "/gnu/store";
        t.remote.state_dir = "/var/guix";
    } else if (const char* dir = std::getenv("NIX_STORE_DIR"); dir && *dir) {
        t.remote.store_dir = dir;
    }

    t.slots = hook::schedule_machine_for(m);  // the hook's slot and backoff key
    return t;
}

}  // namespace

ops_selection select_targets(const fs::path& file, const std::string& regex) {
    auto env = machines::environment::from_process();
    ops_selection sel;
    sel.file = file.empty() ? fs::path(machines::default_machines_file(env)) : file;

    std::optional<std::regex> filter;
    if (!regex.empty()) {
        try {
            filter.emplace(regex, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
            throw failure(errc::bad_input, fmt::format("REGEX '{}': {}", regex, e.what()));
        }
    }

    auto all = machines::load_machines(sel.file.string(), local_system());
    bool guix = !all.empty() && all.front().kind == machines::flavour::guix;
    // Guix's hook keeps its slots under Guix's state directory, Nix's under ferry's.
    std::string default_state = "/var/lib/ferry";
    if (guix) default_state = env.get("GUIX_STATE_DIRECTORY").value_or("/var/guix");
    auto conf = machines::load_ferry_conf(env, default_state);
    sel.state_dir = conf.global().state_dir;
    auto nix_sshopts = ssh::parse_ssh_command_options(env.get("NIX_SSHOPTS").value_or(""));
    if (!guix && !nix_sshopts.ignored.empty())
        sel.warnings.push_back(fmt::format("NIX_SSHOPTS: ignored: {}", fmt::join(nix_sshopts.ignored, "; ")));

    for (const auto& m : all) {
        ops_target t = make_target(m, conf, nix_sshopts);
        if (filter && !std::regex_search(t.name, *filter)) continue;
        sel.targets.push_back(std::move(t));
    }
    return sel;
}

std::optional<ops_selection> select_targets_or_report(std::string_view command, const fs::path& file,
                                                      const std::string& regex) {
    ops_selection sel;
    try {
        sel = select_targets(file, regex);
    } catch (const failure& f) {
        fmt::print(stderr, "ferry {}: {}\n", command, f.what());
        return std::nullopt;
    }
    for (const auto& w : sel.warnings) fmt::print(stderr, "ferry {}: warning: {}\n", command, w);
    if (sel.targets.empty()) {
        fmt::print(stderr, "ferry {}: no machine in {}{}\n", command, sel.file.string(),
                   regex.empty() ? "" : fmt::format(" matches '{}'", regex));
        return std::nullopt;
    }
    return sel;
}

}  // namespace ferry::cli
