// The hook's answer to one build request, common to both daemons' hook protocols.
// The line encoders live with each protocol (nix_hook.hpp, guix_hook.hpp): the
// Guix daemon does not know decline-permanently.
#pragma once

#include <string_view>

namespace ferry::protocol {

enum class hook_reply {
    accept,               // the hook builds this derivation; the daemon sends the paths next
    decline,              // the daemon builds it locally (or fails if it cannot)
    postpone,             // ask again later (Nix: when a slot frees; Guix: in about 5 s)
    decline_permanently,  // Nix only: never ask a hook again in this run (no machines at all)
};

// The word after "# " on the reply line.
constexpr std::string_view reply_word(hook_reply r) {
    switch (r) {
    case hook_reply::accept: return "accept";
    case hook_reply::decline: return "decline";
    case hook_reply::postpone: return "postpone";
    case hook_reply::decline_permanently: return "decline-permanently";
    }
    return "decline";
}

}  // namespace ferry::protocol
