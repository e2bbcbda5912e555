#include <ferry/machines/machine.hpp>

#include <algorithm>

namespace ferry::machines {

std::string source_position::str() const {
    std::string s = file + ":" + std::to_string(line);
    if (column > 0) s += ":" + std::to_string(column);
    return s;
}

bool machine::can_build(const std::string& system, const std::set<std::string>& required) const {
    bool system_ok = system == "builtin" ||
                     std::find(systems.begin(), systems.end(), system) != systems.end();
    if (!system_ok) return false;
    for (const auto& f : required)
        if (!supported_features.count(f) && !mandatory_features.count(f)) return false;
    for (const auto& f : mandatory_features)
        if (!required.count(f)) return false;
    return true;
}

std::string machine::display_name() const {
    std::string s;
    if (!user.empty()) s += user + "@";
    s += host;
    if (port) s += ":" + std::to_string(*port);
    return s;
}

}  // namespace ferry::machines
