#include "ferry/cli/run.hpp"

#include "ferry/cli/bench_command.hpp"
#include "ferry/cli/guix_command.hpp"
#include "ferry/cli/hosts_command.hpp"
#include "ferry/cli/nix_hook_command.hpp"
#include "ferry/cli/ops_status.hpp"
#include "ferry/cli/ops_test.hpp"

#include <cstdio>
#include <string_view>

#include <fmt/core.h>

namespace ferry::cli {
namespace {

std::string_view base_name(std::string_view path) {
    auto slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

constexpr const char* usage_text =
    "usage: ferry COMMAND [ARGS...]\n"
    "\n"
    "commands:\n"
    "  offload SYSTEM MAX-SILENT-TIME PRINT-BUILD-TRACE BUILD-TIMEOUT   guix-daemon's build hook\n"
    "  test [FILE [REGEX]]             check that every build machine works\n"
    "  status [FILE [REGEX]] [--json]  show load, space and slots of every build machine\n"
    "  bench ...                       measure closure transfer throughput (ferry bench --help)\n"
    "  hosts up N DIR | down DIR       local sshd build hosts with their own Nix stores\n"
    "  version                         print ferry's version\n"
    "\n"
    "`ferry COMMAND --help` shows the options of test, status, bench and hosts;\n"
    "docs/operators.md (installed under share/doc/ferry) covers setting ferry up.\n"
    "\n"
    "Installed as ferry-build-hook, ferry is Nix's build hook (build-hook setting).\n";

int usage(std::FILE* out, int status) {
    std::fputs(usage_text, out);
    return status;
}

}  // namespace

int run(int argc, char** argv) {
    if (argc < 1) return usage(stderr, 2);
    if (base_name(argv[0]) == "ferry-build-hook") return nix_hook_command(argc, argv);
    // guix-daemon's $GUIX: the offload hook, and every other guix command passed on
    // to the real guix before anything else happens (cli/guix_command.hpp).
    if (auto status = guix_dispatch(argc, argv)) return *status;
    if (argc < 2) return usage(stderr, 2);
    std::string_view command = argv[1];
    if (command == "--help" || command == "-h" || command == "help") return usage(stdout, 0);
    if (command == "version" || command == "--version") {
        fmt::print("ferry {}\n", FERRY_VERSION);
        return 0;
    }
    if (command == "hosts") return hosts_command(argc - 1, argv + 1);
    if (command == "bench") return bench_command(argc - 1, argv + 1);
    if (command == "test") return test_command_main(argc - 1, argv + 1);
    if (command == "status") return status_command_main(argc - 1, argv + 1);
    fmt::print(stderr, "ferry: unknown command '{}'\n", command);
    return usage(stderr, 2);
}

}  // namespace ferry::cli
