// ferry as guix-daemon's $GUIX: the `offload` hook, and passthrough of every other
// guix command to the real guix.
//
// guix-daemon runs $GUIX for several jobs (nix/libstore: `offload` build.cc,
// `substitute` build.cc/local-store.cc, `authenticate` local-store.cc, `gc
// --list-busy` gc.cc, ...), always with execv and the command as argv[1]. ferry
// handles only the hook and hands everything else, unchanged, to the real guix.
//
// How passthrough and ferry's own commands coexist (classify_invocation):
//   1. argv[0]'s base name is `guix` (ferry installed as a symlink named guix,
//      e.g. GUIX=/usr/local/libexec/ferry/guix): ferry IS guix. Only the hook form
//      is ferry's (`offload` + 4 operands, or the pre-2019 bare 4 operands);
//      everything else, `guix help` and `guix --version` included, is passed on.
//   2. any other name (`ferry`, e.g. GUIX=/usr/local/bin/ferry): ferry's own
//      commands (help, -h, --help, version, --version, test, status, bench,
//      hosts) stay ferry's; the hook form is ferry's; every other first argument
//      (substitute, authenticate, gc, build, ...) is passed on. With no real guix
//      to pass it to, an unknown command is ferry's usage error (exit 2).
//   `offload` with another number of operands (`guix offload test|status|--help`)
//   is passed on: those are the real guix's tools and read the same machines.scm.
// The pre-2019 daemon ran $NIX_BUILD_HOOK with the four operands and no word
// "offload": ferry takes argv of exactly four operands shaped like
// `ARCH-KERNEL DIGITS (0|1|true|false) DIGITS` as the hook (no guix command has
// that shape).
//
// Passthrough happens before ferry touches anything: no state directory, no
// database, no logging, no stdio, no signal or descriptor changes; execv with the
// environment and every open descriptor inherited. The real guix is, in order:
// $FERRY_GUIX; the path recorded at build time (CMake cache variable
// FERRY_REAL_GUIX); the first `guix` on PATH that is not ferry itself (same
// device and inode as /proc/self/exe, or the same realpath).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ferry::cli {

enum class guix_role { ferry_command, offload_hook, passthrough };

// Pure. args = argv[1..]. For offload_hook, hook_operands() gives the four operands.
guix_role classify_invocation(std::string_view argv0, std::span<const std::string_view> args);
std::span<const std::string_view> hook_operands(std::span<const std::string_view> args);

// Whether four operands have the hook's shape (the pre-2019 form).
bool looks_like_hook_operands(std::span<const std::string_view> operands);

struct real_guix_inputs {
    std::optional<std::string> ferry_guix;  // $FERRY_GUIX
    std::string recorded;                   // FERRY_REAL_GUIX at build time ("" = none)
    std::optional<std::string> path;        // $PATH
    std::string self = "/proc/self/exe";    // this program
};
real_guix_inputs real_guix_inputs_from_environment();

// The real guix, or nullopt with *why filled in. Never ferry itself.
std::optional<std::string> find_real_guix(const real_guix_inputs& in, std::string* why = nullptr);

// The whole dispatch for run(): nullopt when argv is ferry's own business
// (the caller goes on), else the exit status (passthrough only returns on failure).
std::optional<int> guix_dispatch(int argc, char** argv);

// `offload SYSTEM MAX-SILENT-TIME PRINT-BUILD-TRACE BUILD-TIMEOUT`: operands only.
int offload_command(std::span<const std::string_view> operands);

}  // namespace ferry::cli
