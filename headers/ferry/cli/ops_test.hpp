// `ferry test [FILE [REGEX]] [--timeout SECONDS]`: checks that every build machine
// works, all machines at once (one coroutine per machine on one io_context, each
// under its own deadline). Prints one line per machine, in file order:
//   ✔ NAME
//   ✗ NAME: STEP: reason
// The steps, in order (the first failing one is reported):
//   connect        TCP and SSH handshake (connect_failed, timed_out)
//   host key       the pinned key, else known_hosts (never accept-any)
//   auth           public-key login
//   store          the store CLI is there and talks to its store: `nix-store
//                  --version`, then a `nix-store --serve --write` handshake and a
//                  query (Guix machines: `guix archive --missing`)
//   decompressors  zstd -dc / xz -dc decode what ferry's compressors produce; the
//                  decompressor of a codec named in ferry.conf is required, with
//                  `auto` a missing one only earns a warning on stderr
//   import         a fresh item (a small file with a nonce, added to a THROWAWAY
//                  local store) is sent with ferry's send pipeline and is then valid
//                  on the machine
//   export         a fresh item made on the machine is fetched with ferry's receive
//                  pipeline into the throwaway local store, valid, same content
// Both items are deleted from the machine afterwards (best effort).
// The throwaway local store is a private mount namespace with empty directories
// bound over the local store (ops_scratch_store.hpp): root or user namespaces.
// Exit status: 0 every machine passed; 1 at least one failed; 2 usage or
// configuration error (bad option, unreadable or malformed FILE or ferry.conf, bad
// REGEX, no machine selected).
#pragma once

namespace ferry::cli {

// argv[0] is "test". Returns the exit status.
int test_command_main(int argc, char** argv);

}  // namespace ferry::cli
