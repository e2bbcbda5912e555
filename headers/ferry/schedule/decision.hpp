// The hook's first reply to the daemon, as a pure function of what the
// scheduler found. Mirrors the reference hooks:
//
// Nix (src/build-remote/build-remote.cc, 2.8):
//   no machine configured                         -> decline-permanently
//   a machine chosen                              -> accept
//   no candidate for system + features            -> decline
//   every candidate unreachable / backed off      -> decline (build-remote disables a machine it
//                                                    cannot connect to; with none left it declines)
//   candidates exist but none usable now (busy, overloaded, low on disk)
//                                                 -> decline if the daemon can build it locally
//                                                    (am-willing, system, features), else postpone
// Guix (guix/scripts/offload.scm, process-request / choose-build-machine):
//   a machine chosen -> accept; no candidate -> decline; otherwise (busy, overloaded, low on
//   disk) -> postpone, whatever the request's "can build locally" flag says.
//   One departure (issue 7): when EVERY candidate is unreachable or backed off, guix offload
//   postpones for as long as the outage lasts; ferry declines if the request says the daemon
//   can build it locally, and otherwise postpones — the caller then names each host and its
//   error (unreachable_summary in select.hpp), so a postponement is never silent.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/protocol/hook_reply.hpp"

namespace ferry::schedule {

enum class daemon_kind { nix, guix };

// The reply itself is the protocol layer's (ferry/protocol/hook_reply.hpp; its
// reply_word() gives "accept", "decline", "postpone", "decline-permanently").
using protocol::hook_reply;

struct decision_facts {
    daemon_kind daemon = daemon_kind::nix;
    std::size_t configured = 0;   // machines in the configuration
    std::size_t candidates = 0;   // of those, matching the request's system and features
    std::size_t unreachable = 0;  // of the candidates, backed off or failing their probe
    bool chosen = false;          // a machine was chosen and its slot is held
    bool can_build_locally = false;
};

hook_reply decide(const decision_facts& facts) noexcept;

// Nix's "could the daemon build it itself" (build-remote.cc's canBuildLocally):
// am-willing (a local slot is free), the system is `system` or one of
// `extra-platforms` (or "builtin", which any daemon builds), and every required
// feature is in `system-features`. The settings come from the preamble.
bool nix_can_build_locally(bool am_willing, std::string_view system, const std::vector<std::string>& required_features,
                           std::string_view this_system, const std::vector<std::string>& extra_platforms,
                           const std::vector<std::string>& system_features);

}  // namespace ferry::schedule
