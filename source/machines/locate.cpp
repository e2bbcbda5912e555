#include <ferry/machines/locate.hpp>

#include <ferry/machines/guix_machines.hpp>
#include <ferry/util/error.hpp>

#include <cctype>
#include <filesystem>

extern char** environ;

namespace ferry::machines {

file_format detect_format(const std::string& path, std::string_view text) {
    if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".scm") == 0) return file_format::guix;
    std::size_t i = 0;
    while (i < text.size()) {
        char c = text[i];
        if (std::isspace(static_cast<unsigned char>(c))) { ++i; continue; }
        if (c == ';' || c == '#') {  // Scheme or Nix line comment
            auto nl = text.find('\n', i);
            if (nl == std::string_view::npos) break;
            i = nl + 1;
            continue;
        }
        return c == '(' ? file_format::guix : file_format::nix;
    }
    return file_format::nix;
}

std::optional<std::string> environment::get(const std::string& name) const {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
}

environment environment::from_process() {
    environment env;
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        auto eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        env.vars.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    env.exists = [](const std::string& p) {
        std::error_code ec;
        return std::filesystem::exists(p, ec);
    };
    return env;
}

std::string default_machines_file(const environment& env) {
    auto nix_dir = env.get("NIX_CONF_DIR").value_or("/etc/nix");
    std::string nix = nix_dir + "/machines";
    if (env.exists && env.exists(nix)) return nix;
    auto guix_dir = env.get("GUIX_CONFIGURATION_DIRECTORY").value_or("/etc/guix");
    return guix_dir + "/machines.scm";
}

std::string ferry_conf_path(const environment& env) {
    auto p = env.get("FERRY_CONFIG");
    return p && !p->empty() ? *p : "/etc/ferry/ferry.conf";
}

std::vector<machine> load_machines(const std::string& path, const std::string& default_system,
                                   const file_reader& read) {
    auto text = read(path);
    if (!text) throw failure(errc::bad_input, "machines file '" + path + "' does not exist");
    if (detect_format(path, *text) == file_format::guix) return parse_guix_machines(*text, path);
    nix_parse_options opt;
    opt.default_system = default_system;
    opt.read = read;
    return parse_nix_machines(*text, path, opt);
}

ferry_conf load_ferry_conf(const environment& env, const std::string& default_state_dir, const file_reader& read) {
    auto path = ferry_conf_path(env);
    auto text = read(path);
    if (!text) return parse_ferry_conf("", "", default_state_dir);
    return parse_ferry_conf(*text, path, default_state_dir);
}

}  // namespace ferry::machines
