#include "ferry/hook/guix_machines.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/core.h>

#include "ferry/machines/guix_machines.hpp"
#include "ferry/util/error.hpp"

namespace ferry::hook {

namespace {

std::string trim(std::string_view s) {
    auto b = s.find_first_not_of(" \t\r");
    if (b == std::string_view::npos) return "";
    auto e = s.find_last_not_of(" \t\r");
    return std::string(s.substr(b, e - b + 1));
}

std::string slurp(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw failure(errc::bad_input, fmt::format("{}: cannot open", file.string()));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

std::vector<guix_machine> parse_machines_scm(std::string_view text, std::string_view file_name) {
    std::vector<guix_machine> out;
    for (const auto& m : machines::parse_guix_machines(text, std::string(file_name))) {
        guix_machine g;
        g.name = m.host;
        g.port = m.port.value_or(22);
        g.systems = m.systems;
        g.user = m.user;
        g.private_key = m.identity.value_or("");
        g.host_key = m.host_key;
        g.compression = m.compression;
        g.compression_level = m.compression_level;
        g.daemon_socket = m.daemon_socket;
        g.overload_threshold = m.overload_threshold;
        g.parallel_builds = m.max_jobs;
        g.speed = m.speed;
        g.features.assign(m.supported_features.begin(), m.supported_features.end());
        g.location = m.origin.str();
        out.push_back(std::move(g));
    }
    return out;
}

std::vector<guix_machine> read_machines_scm(const std::filesystem::path& file) {
    return parse_machines_scm(slurp(file), file.string());
}

bool guix_machine_matches(const guix_machine& m, std::string_view system, const std::vector<std::string>& features) {
    if (std::find(m.systems.begin(), m.systems.end(), system) == m.systems.end()) return false;
    for (const auto& f : features)
        if (std::find(m.features.begin(), m.features.end(), f) == m.features.end()) return false;
    return true;
}

std::string ferry_conf::get(std::string_view machine, std::string_view key, std::string_view fallback) const {
    if (auto m = machines.find(std::string(machine)); m != machines.end())
        if (auto v = m->second.find(std::string(key)); v != m->second.end()) return v->second;
    if (auto v = global.find(std::string(key)); v != global.end()) return v->second;
    return std::string(fallback);
}

ferry_conf parse_ferry_conf(std::string_view text, std::string_view file_name) {
    ferry_conf conf;
    std::map<std::string, std::string>* section = &conf.global;
    std::uint64_t line_no = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        auto nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        std::string line = trim(text.substr(pos, nl - pos));
        pos = nl + 1;
        ++line_no;
        if (line.empty() || line[0] == '#' || line[0] == ';') continue;
        if (line.front() == '[') {
            if (line.back() != ']' || line.rfind("[machine ", 0) != 0)
                throw failure(errc::bad_input,
                              fmt::format("{}:{}: expected '[machine NAME]', saw '{}'", file_name, line_no, line));
            std::string name = trim(std::string_view(line).substr(9, line.size() - 10));
            if (name.size() >= 2 && name.front() == '"' && name.back() == '"') name = name.substr(1, name.size() - 2);
            if (name.empty())
                throw failure(errc::bad_input, fmt::format("{}:{}: machine section without a name", file_name, line_no));
            section = &conf.machines[name];
            continue;
        }
        auto eq = line.find('=');
        if (eq == std::string::npos)
            throw failure(errc::bad_input,
                          fmt::format("{}:{}: expected 'key = value', saw '{}'", file_name, line_no, line));
        std::string key = trim(std::string_view(line).substr(0, eq));
        if (key.empty()) throw failure(errc::bad_input, fmt::format("{}:{}: empty key", file_name, line_no));
        (*section)[key] = trim(std::string_view(line).substr(eq + 1));
    }
    return conf;
}

ferry_conf read_ferry_conf(const std::filesystem::path& file) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return {};
    return parse_ferry_conf(slurp(file), file.string());
}

}  // namespace ferry::hook
