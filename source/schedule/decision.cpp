#include "ferry/schedule/decision.hpp"

#include <algorithm>

namespace ferry::schedule {

hook_reply decide(const decision_facts& f) noexcept {
    if (f.daemon == daemon_kind::nix && f.configured == 0) return hook_reply::decline_permanently;
    if (f.chosen) return hook_reply::accept;
    if (f.candidates == 0) return hook_reply::decline;
    if (f.daemon == daemon_kind::guix)
        return f.unreachable >= f.candidates && f.can_build_locally ? hook_reply::decline : hook_reply::postpone;
    if (f.unreachable >= f.candidates) return hook_reply::decline;
    return f.can_build_locally ? hook_reply::decline : hook_reply::postpone;
}

bool nix_can_build_locally(bool am_willing, std::string_view system, const std::vector<std::string>& required_features,
                           std::string_view this_system, const std::vector<std::string>& extra_platforms,
                           const std::vector<std::string>& system_features) {
    if (!am_willing) return false;
    bool system_ok = system == this_system || system == "builtin" ||
                     std::find(extra_platforms.begin(), extra_platforms.end(), system) != extra_platforms.end();
    if (!system_ok) return false;
    return std::all_of(required_features.begin(), required_features.end(), [&](const std::string& f) {
        return std::find(system_features.begin(), system_features.end(), f) != system_features.end();
    });
}

}  // namespace ferry::schedule
