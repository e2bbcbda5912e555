// `ferry-build-hook VERBOSITY`: ferry invoked under that base name is Nix's build
// hook (the `build-hook` setting names its absolute path; Nix 2.8 runs it with
// argv = [path, verbosity]). See hook/nix_hook.hpp for the conversation.
#pragma once

namespace ferry::cli {

// Returns the exit status: 0, 100 (remote build failed), 101 (timed out), 1
// (anything else, said as an @nix msg line on stderr).
int nix_hook_command(int argc, char** argv);

}  // namespace ferry::cli
