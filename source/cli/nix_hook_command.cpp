#include "ferry/cli/nix_hook_command.hpp"

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "ferry/hook/nix_hook.hpp"
#include "ferry/protocol/nix_log.hpp"

namespace ferry::cli {

int nix_hook_command(int argc, char** argv) {
    // Nix's build-remote drops these too: no askpass or display popups.
    ::unsetenv("DISPLAY");
    ::unsetenv("SSH_ASKPASS");
    unsigned verbosity = 3;  // Nix's default (info) if the daemon sent none
    if (argc >= 2) {
        std::string_view v = argv[1];
        if (v.empty() || v.size() > 2 || v.find_first_not_of("0123456789") != std::string_view::npos) {
            // Only `@nix` lines may reach the daemon's stderr.
            auto line = protocol::nix_log_msg(protocol::nix_verbosity::error,
                                              "ferry-build-hook: usage: ferry-build-hook VERBOSITY (0-7), got '" +
                                                  std::string(v) + "'");
            [[maybe_unused]] auto n = ::write(2, line.data(), line.size());
            return 1;
        }
        verbosity = static_cast<unsigned>(std::stoul(std::string(v)));
    }
    auto env = hook::nix_hook_environment::from([](const char* name) { return std::getenv(name); });
    return hook::run_nix_build_hook(verbosity, env);
}

}  // namespace ferry::cli
