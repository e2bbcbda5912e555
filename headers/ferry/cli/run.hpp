// The face of ferry: turns argv into one of the commands and returns the exit status.
// Nothing below this layer knows about argv, stdout or exit codes.
#pragma once

namespace ferry::cli {

// Dispatches on argv[0]'s base name (ferry-build-hook = Nix's hook) and then on the
// first argument (offload, test, status, bench, hosts, ...).
int run(int argc, char** argv);

}  // namespace ferry::cli
