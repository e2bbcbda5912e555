// Running `ferry bench`: the target (a test host or a configured machine), the
// closure (given or synthetic), one row per codec and direction with --runs runs
// each, `auto` resolved per row by the rule of codec/auto_rule.hpp, and Nix's own
// nix-copy-closure for comparison. docs/bench.md describes each step.
//
// Library code: nothing is printed; progress and status go to the callbacks.
// Errors are ferry::failure; bench::usage_failure marks the caller's mistakes
// (unknown machine name, a --closure path that is not valid locally...), which
// the CLI reports with exit status 2; any other failure is a failed run (1).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ferry/bench/options.hpp"
#include "ferry/bench/results.hpp"
#include "ferry/hosts/test_host.hpp"
#include "ferry/util/error.hpp"

namespace ferry::bench {

class usage_failure : public failure {
public:
    explicit usage_failure(const std::string& message) : failure(errc::bad_input, message) {}
};

struct bench_events {
    // One line per step ("send zstd:1 run 2/3"); for a status line or a log.
    std::function<void(const std::string&)> status;
    // While a transfer runs (throttled by the caller as it likes).
    std::function<void(const std::string& label, std::uint64_t done_bytes, std::uint64_t total_bytes,
                       std::size_t done_items, std::size_t total_items)>
        progress;
};

// The fresh local store of a --local-host --synthetic run: a private mount
// namespace for this whole process in which DIRECTORY/nix is /nix (and its
// nix.conf /etc/nix), so the synthetic closure, ferry's reads and
// nix-copy-closure all use it and the machine's /nix stays untouched.
// unshare(CLONE_NEWNS) needs a single-threaded process: call before any thread
// starts. Throws ferry::failure naming the step.
class private_local_store {
public:
    static std::unique_ptr<private_local_store> enter();
    ~private_local_store();  // removes the store directory (the namespace stays ours)
    const hosts::local_store& store() const { return store_; }

private:
    explicit private_local_store(hosts::local_store s) : store_(std::move(s)) {}
    hosts::local_store store_;
};

// Whether run_bench would enter a private local store for these options.
bool wants_private_local_store(const bench_options& o);

bench_result run_bench(const bench_options& o, const bench_events& events = {});

}  // namespace ferry::bench
