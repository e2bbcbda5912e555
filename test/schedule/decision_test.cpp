// The first reply to the daemon, table-driven. Each row is a situation from
// build-remote.cc (Nix 2.8) or offload.scm (Guix).
#include <boost/test/unit_test.hpp>

#include "ferry/schedule/decision.hpp"

using namespace ferry::schedule;

namespace {

struct row {
    const char* what;
    daemon_kind daemon;
    std::size_t configured, candidates, unreachable;
    bool chosen, can_build_locally;
    hook_reply expected;
};

constexpr auto nix = daemon_kind::nix;
constexpr auto guix = daemon_kind::guix;
constexpr auto accept = hook_reply::accept;
constexpr auto decline = hook_reply::decline;
constexpr auto postpone = hook_reply::postpone;
constexpr auto never = hook_reply::decline_permanently;

const row rows[] = {
    // what                                              daemon conf cand unr  chosen local  expected
    {"nix: no machines configured",                      nix,  0,   0,   0,   false, true,  never},
    {"nix: no machines, cannot build locally",           nix,  0,   0,   0,   false, false, never},
    {"nix: machine chosen",                              nix,  3,   2,   0,   true,  true,  accept},
    {"nix: chosen although others unreachable",          nix,  3,   3,   2,   true,  false, accept},
    {"nix: no machine for system+features, local ok",    nix,  3,   0,   0,   false, true,  decline},
    {"nix: no machine for system+features, no local",    nix,  3,   0,   0,   false, false, decline},
    {"nix: all busy, daemon can build locally",          nix,  3,   2,   0,   false, true,  decline},
    {"nix: all busy, daemon cannot build locally",       nix,  3,   2,   0,   false, false, postpone},
    {"nix: some busy some unreachable, no local",        nix,  3,   2,   1,   false, false, postpone},
    {"nix: some busy some unreachable, local ok",        nix,  3,   2,   1,   false, true,  decline},
    {"nix: every candidate unreachable, no local",       nix,  3,   2,   2,   false, false, decline},
    {"nix: every candidate unreachable, local ok",       nix,  3,   2,   2,   false, true,  decline},
    {"guix: no machines configured",                     guix, 0,   0,   0,   false, true,  decline},
    {"guix: machine chosen",                             guix, 2,   1,   0,   true,  false, accept},
    {"guix: no matching machine",                        guix, 2,   0,   0,   false, false, decline},
    {"guix: all busy or overloaded, local free",         guix, 2,   2,   0,   false, true,  postpone},
    {"guix: all busy or overloaded, no local",           guix, 2,   2,   0,   false, false, postpone},
    {"guix: every candidate down, daemon can build it",  guix, 2,   2,   2,   false, true,  decline},
    {"guix: every candidate down, daemon cannot",        guix, 2,   2,   2,   false, false, postpone},
    {"guix: some down, the rest busy, local ok",         guix, 3,   3,   2,   false, true,  postpone},
    {"guix: chosen although others down",               guix, 3,   3,   2,   true,  true,  accept},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(decision)

BOOST_AUTO_TEST_CASE(reply_table) {
    for (const row& r : rows) {
        decision_facts f{r.daemon, r.configured, r.candidates, r.unreachable, r.chosen, r.can_build_locally};
        auto got = decide(f);
        BOOST_TEST((got == r.expected), r.what << ": got " << ferry::protocol::reply_word(got) << ", expected "
                                                << ferry::protocol::reply_word(r.expected));
    }
}

BOOST_AUTO_TEST_CASE(nix_local_capability) {
    const std::vector<std::string> extra{"i686-linux"}, features{"kvm", "big-parallel"};
    auto can = [&](bool willing, const char* system, std::vector<std::string> req) {
        return nix_can_build_locally(willing, system, req, "x86_64-linux", extra, features);
    };
    BOOST_TEST(can(true, "x86_64-linux", {}));
    BOOST_TEST(can(true, "i686-linux", {"kvm"}));
    BOOST_TEST(can(true, "builtin", {}));
    BOOST_TEST(can(true, "x86_64-linux", {"kvm", "big-parallel"}));
    BOOST_TEST(!can(false, "x86_64-linux", {}));             // no free local slot
    BOOST_TEST(!can(true, "aarch64-linux", {}));             // foreign system
    BOOST_TEST(!can(true, "x86_64-linux", {"nixos-test"}));  // feature not offered locally
}

BOOST_AUTO_TEST_SUITE_END()
