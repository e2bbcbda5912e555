// The pieces of `ferry test` (ops_test.cpp) that its Guix checks
// (ops_test_guix.cpp) share. Private to the cli layer.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include "ferry/cli/ops_scratch_store.hpp"
#include "ferry/cli/ops_target.hpp"
#include "ferry/codec/codec_spec.hpp"
#include "ferry/hook/guix_offload.hpp"
#include "ferry/machines/ferry_conf.hpp"
#include "ferry/remote/command.hpp"
#include "ferry/remote/guix_remote.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/util/error.hpp"

namespace ferry::cli::ops_test_parts {

using std::chrono::milliseconds;

// What every machine's check shares: the throwaway store and its item.
struct test_context {
    std::optional<scratch_store> scratch;
    store::store_config local;             // the scratch store's config (its database inside it)
    std::string scratch_error;             // why there is no scratch store
    std::unique_ptr<store::temp_roots> roots;  // one per process: Nix's file is per pid
    std::string item;                      // the fresh local item every machine imports
    std::string nonce;
    milliseconds step_deadline{30000};
    // Guix machines: the local Guix's directories (store, config: signing key,
    // ACL) and ferry.conf (guix-program, remote-state-dir), as the hook takes them.
    std::optional<hook::guix_environment> guix;
    machines::ferry_conf conf;
};

struct test_row {
    std::string step = "connect";
    std::string error;                     // empty: passed
    std::vector<std::string> warnings;
};

[[noreturn]] inline void fail(const std::string& message, errc code = errc::remote_failed) { throw failure(code, message); }

// `nix-store` (with --store when the machine line has one), quoted.
std::string store_program(const ops_target& t);
// Runs `command`; fails the step on transport errors, returns the outcome otherwise.
asio::awaitable<remote::command_outcome> run(ssh::session& s, const std::string& command, milliseconds deadline,
                                             std::string input = {});
// "<what> failed (<status>): <the last line of stderr>", or "command not found".
std::string describe_failure(const std::string& what, const remote::command_outcome& o);
// `payload` compressed as the machine's decompressor will read it (one thread).
std::string compress_locally(codec::codec_kind kind, const std::string& payload);

// --- Guix (ops_test_guix.cpp) ---
// The machine as the hook reaches it: ferry.conf's guix-program and
// remote-state-dir, the local store directory (Guix has one for all machines).
remote::guix_remote_options guix_options(const ops_target& t, const test_context& ctx);
asio::awaitable<void> check_guix_store(ssh::session& s, const remote::guix_remote_options& o,
                                       const test_context& ctx);
// import (a fresh text item ferry signs with the local key) and export back
// (verified against the local ACL), then `guix gc --delete` of the item.
asio::awaitable<void> test_guix_transfers(ssh::session& s, const ops_target& t, const remote::guix_remote_options& o,
                                          test_context& ctx, codec::codec_spec codec, test_row& row);
// Whether a machines.scm machine is driven through guix (else nix-store --serve).
asio::awaitable<bool> driven_with_guix(ssh::session& s, const ops_target& t, const test_context& ctx);
ops_target as_nix_machine(const ops_target& t, const test_context& ctx);
// The local Guix's environment, ferry.conf and the throwaway Guix-schema store.
void prepare_guix(test_context& ctx);

}  // namespace ferry::cli::ops_test_parts
