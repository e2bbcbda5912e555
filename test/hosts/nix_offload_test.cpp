// The anchor: real Nix 2.8 offloads a build through a test host with its own
// build-remote. If this passes, the hosts are usable build machines.
#include "ferry/hosts/test_host.hpp"

#include <chrono>
#include <fstream>
#include <random>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>

using namespace ferry::hosts;

BOOST_AUTO_TEST_CASE(nix_build_remote_offloads_to_a_test_host) {
    auto host = test_host::start(temporary_directory("ferry-offload-host"), "builder1");
    auto local = local_store::create(temporary_directory("ferry-offload-local"));

    // A per-run nonce: an output left valid by an earlier run would skip the build.
    std::random_device rd;
    std::string nonce = fmt::format("{:016x}", (std::uint64_t{rd()} << 32) | rd());
    auto expr = local.directory() / "smoke.nix";
    std::ofstream(expr) << fmt::format(
        "derivation {{ name = \"ferry-smoke-{0}\"; system = \"x86_64-linux\"; builder = \"/bin/sh\";\n"
        "  args = [ \"-c\" \"echo {0} > $out\" ]; }}\n",
        nonce);

    std::string out, err;
    int status = local.run(fmt::format("NIX_SSHOPTS='-F {}' /usr/bin/nix-build {} --no-out-link --max-jobs 0 "
                                       "--builders 'ssh://builder1 x86_64-linux'",
                                       host.ssh_config().string(), expr.string()),
                           &out, &err);
    BOOST_TEST_REQUIRE(status == 0, "nix-build failed: " << err);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    BOOST_TEST_MESSAGE("built " << out << "; nix-build said:\n" << err);
    BOOST_TEST(out.starts_with("/nix/store/"));

    // Built on the host (valid there), copied back (valid locally with the right content).
    BOOST_TEST(host.run("/usr/bin/nix-store --check-validity " + out) == 0);
    std::string content;
    BOOST_TEST(local.run("/bin/cat " + out, &content) == 0);
    BOOST_TEST(content == nonce + "\n");
    BOOST_TEST(err.find("builder1") != std::string::npos, "the build log should name the remote: " << err);
}
