#include "ferry/cli/bench_command.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "ferry/bench/runner.hpp"
#include "ferry/codec/codec_spec.hpp"
#include "ferry/util/error.hpp"

namespace ferry::cli {
namespace {

constexpr const char* synopsis =
    "usage: ferry bench (--machine SPEC | --local-host) (--closure PATH... | --synthetic SIZE:COUNT)\n"
    "                   [--codec LIST] [--direction send|receive|both] [--runs N] [--fresh]\n"
    "                   [--json FILE] [--compare nix-copy-closure] [--machines FILE]\n";

}  // namespace

std::variant<bench::bench_options, usage_error, help_request> parse_bench_args(const std::vector<std::string>& args) {
    CLI::App app{"Measure closure transfer throughput per codec and direction (MB = 10^6 bytes).", "ferry bench"};
    app.allow_extras(false);
    std::string machine, synthetic, codecs = "auto", dir = "send", json, compare, machines;
    std::vector<std::string> closure;
    bool local_host = false, fresh = false;
    int runs = 3;
    auto* machine_opt = app.add_option("--machine", machine,
                                       "a whole Nix machines-file line, or a machine name in --machines FILE");
    auto* local_opt = app.add_flag("--local-host", local_host, "start a local test host (sshd + its own Nix store)");
    machine_opt->excludes(local_opt);
    auto* closure_opt = app.add_option("--closure", closure, "store paths whose closure is sent")->expected(1, 1 << 20);
    auto* synthetic_opt = app.add_option("--synthetic", synthetic, "a generated closure, e.g. 1G:600");
    closure_opt->excludes(synthetic_opt);
    app.add_option("--codec", codecs, "comma-separated auto, none, zstd[:1-19], xz[:0-9] (default auto)");
    app.add_option("--direction", dir, "send, receive or both (default send)")
        ->check(CLI::IsMember({"send", "receive", "both"}));
    app.add_option("--runs", runs, "runs per row (default 3)")->check(CLI::Range(1, 1000));
    app.add_flag("--fresh", fresh, "wipe the target store before each run (--local-host only)");
    app.add_option("--json", json, "also write the results as JSON to FILE");
    app.add_option("--compare", compare, "also time Nix's own copy of the closure")
        ->check(CLI::IsMember({"nix-copy-closure"}));
    app.add_option("--machines", machines, "machines file to look --machine NAME up in");

    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try {
        app.parse(reversed);
    } catch (const CLI::CallForHelp&) {
        return help_request{app.help()};
    } catch (const CLI::ParseError& e) {
        return usage_error{e.what()};
    }

    bench::bench_options o;
    if (machine_opt->count() == 0 && !local_host) return usage_error{"one of --machine SPEC or --local-host is required"};
    if (closure_opt->count() == 0 && synthetic_opt->count() == 0)
        return usage_error{"one of --closure PATH... or --synthetic SIZE:COUNT is required"};
    if (machine_opt->count() && machine.empty()) return usage_error{"--machine: empty SPEC"};
    if (fresh && !local_host)
        return usage_error{"--fresh wipes the target store: it is only allowed with --local-host"};
    o.machine = machine;
    o.local_host = local_host;
    o.closure = closure;
    try {
        if (synthetic_opt->count()) o.synthetic = bench::parse_synthetic(synthetic);
    } catch (const failure& e) {
        return usage_error{fmt::format("--synthetic {}: {}", synthetic, e.what())};
    }
    try {
        o.codecs = codec::parse_codec_list(codecs);
    } catch (const failure& e) {
        return usage_error{fmt::format("--codec {}: {}", codecs, e.what())};
    }
    o.direction = dir == "send" ? bench::direction::send : dir == "receive" ? bench::direction::receive
                                                                            : bench::direction::both;
    if (o.direction != bench::direction::send && !o.synthetic)
        return usage_error{"--direction receive/both needs --synthetic: each receive run deletes the closure from "
                           "the local store first, which ferry does only with paths it generated"};
    o.runs = runs;
    o.fresh = fresh;
    o.json_file = json;
    o.compare_nix_copy_closure = !compare.empty();
    o.machines_file = machines;
    return o;
}

int bench_command(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    auto parsed = parse_bench_args(args);
    if (auto* help = std::get_if<help_request>(&parsed)) {
        fmt::print("{}{}", synopsis, help->text);
        return 0;
    }
    if (auto* bad = std::get_if<usage_error>(&parsed)) {
        fmt::print(stderr, "ferry bench: {}\n{}", bad->message, synopsis);
        return 2;
    }
    const auto& o = std::get<bench::bench_options>(parsed);

    bool tty = ::isatty(1) == 1;
    bool progress_shown = false;
    auto last = std::chrono::steady_clock::time_point{};
    bench::bench_events events;
    events.status = [&](const std::string& s) {
        if (progress_shown) {
            fmt::print("\r\033[K");
            std::fflush(stdout);
            progress_shown = false;
        }
        fmt::print(stderr, "ferry bench: {}\n", s);
    };
    if (tty) {
        events.progress = [&](const std::string& label, std::uint64_t done, std::uint64_t total, std::size_t items,
                              std::size_t items_total) {
            auto now = std::chrono::steady_clock::now();
            if (now - last < std::chrono::milliseconds(100) && done < total) return;
            last = now;
            fmt::print("\r\033[K{}", bench::progress_line(label, done, total, items, items_total));
            std::fflush(stdout);
            progress_shown = true;
        };
    }

    try {
        std::unique_ptr<bench::private_local_store> local;
        if (bench::wants_private_local_store(o)) local = bench::private_local_store::enter();
        auto result = bench::run_bench(o, events);
        if (progress_shown) fmt::print("\r\033[K");
        fmt::print("{}", bench::format_table(result));
        if (!o.json_file.empty()) {
            std::ofstream out(o.json_file);
            out << bench::to_json(result, FERRY_VERSION).dump(2) << "\n";
            if (!out) {
                fmt::print(stderr, "ferry bench: cannot write {}\n", o.json_file.string());
                return 1;
            }
        }
        return 0;
    } catch (const bench::usage_failure& e) {
        if (progress_shown) fmt::print("\n");
        fmt::print(stderr, "ferry bench: {}\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        if (progress_shown) fmt::print("\n");
        fmt::print(stderr, "ferry bench: failed: {}\n", e.what());
        return 1;
    }
}

}  // namespace ferry::cli
