// g++ 12 reports a false -Wmismatched-new-delete on every Asio coroutine frame.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "ferry/cli/ops_test.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <iterator>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <vector>

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/cli/ops_runner.hpp"
#include "ferry/cli/ops_scratch_store.hpp"
#include "ferry/cli/ops_target.hpp"
#include "ferry/codec/commands.hpp"
#include "ferry/codec/compressor.hpp"
#include "ferry/machines/ferry_conf.hpp"
#include "ferry/machines/locate.hpp"
#include "ferry/remote/command.hpp"
#include "ferry/remote/serve_connection.hpp"
#include "ferry/ssh/quote.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/importer.hpp"
#include "ferry/transfer/receive.hpp"
#include "ferry/transfer/send.hpp"
#include "ferry/util/error.hpp"
#include "ops_test_parts.hpp"

namespace ferry::cli {

namespace {

using namespace ops_test_parts;

std::string random_nonce() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
}

}  // namespace

namespace ops_test_parts {

std::string store_program(const ops_target& t) {
    std::string cmd = ssh::shell_quote(t.remote.remote_program);
    if (!t.remote.remote_store.empty()) cmd += " --store " + ssh::shell_quote(t.remote.remote_store);
    return cmd;
}

// Runs `command`; fails the step on transport errors, returns the outcome otherwise.
asio::awaitable<remote::command_outcome> run(ssh::session& s, const std::string& command, milliseconds deadline,
                                             std::string input) {
    auto outcome = co_await remote::run_command(s, command, deadline, std::move(input));
    if (outcome.error) throw failure(outcome.error, outcome.message);
    co_return outcome;
}

namespace {

std::string last_line(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
    auto nl = text.rfind('\n');
    return nl == std::string::npos ? text : text.substr(nl + 1);  // the last line says most (errors end there)
}

}  // namespace

std::string describe_failure(const std::string& what, const remote::command_outcome& o) {
    if (o.status.code == 127) return fmt::format("{}: command not found on the machine", what);
    std::string err = last_line(o.err);
    return fmt::format("{} failed ({}){}", what, o.status.describe(), err.empty() ? "" : ": " + err);
}

std::string compress_locally(codec::codec_kind kind, const std::string& payload) {
    codec::codec_spec spec{kind, kind == codec::codec_kind::zstd ? 1 : 0};
    codec::compression_options options;
    options.threads = 1;
    auto c = codec::make_compressor(spec, options);
    std::string out;
    std::span<const std::byte> in(reinterpret_cast<const std::byte*>(payload.data()), payload.size());
    while (!in.empty()) in = in.subspan(c->feed(in, out));
    while (!c->finish(out)) {
    }
    return out;
}

}  // namespace ops_test_parts

namespace {

// --- connect, host key, auth ---------------------------------------------

std::string connect_step(const failure& f) {
    if (f.code() == errc::host_key_mismatch) return "host key";
    if (f.code() == errc::bad_input && std::string_view(f.what()).find("host key") != std::string_view::npos)
        return "host key";
    if (f.code() == errc::auth_failed) return "auth";
    return "connect";
}

// --- store -----------------------------------------------------------------

asio::awaitable<std::uint64_t> check_nix_store(ssh::session& s, const ops_target& t, const test_context& ctx) {
    auto version = co_await run(s, store_program(t) + " --version", ctx.step_deadline);
    if (!version.status.success()) fail(describe_failure(fmt::format("`{} --version`", t.remote.remote_program), version));
    // Talking to its store: a handshake, then a query that opens the store's database.
    auto serve = co_await remote::serve_connection::open(s, t.remote);
    std::vector<std::string> absent{t.remote.store_dir + "/00000000000000000000000000000000-ferry-test-absent"};
    auto valid = co_await serve.query_valid_paths(absent);
    if (!valid.empty()) fail(fmt::format("the machine's store claims {} is valid", absent[0]), errc::bad_input);
    std::uint64_t server = serve.server_version();
    co_await serve.close();
    co_return server;
}

// --- decompressors -----------------------------------------------------------

enum class tool_state { works, missing };


asio::awaitable<tool_state> check_decompressor(ssh::session& s, codec::codec_kind kind, const test_context& ctx) {
    std::string payload;
    for (int i = 0; i < 200; ++i) payload += fmt::format("ferry test {} line {}\n", ctx.nonce, i);
    std::string tool(codec::name(kind));
    std::string command = codec::decompress_command(kind);
    auto o = co_await run(s, "sh -c " + ssh::shell_quote(command), ctx.step_deadline, compress_locally(kind, payload));
    // 127: not found; 126: found but not executable (e.g. something bound over it).
    if (o.status.code == 127 || o.status.code == 126) co_return tool_state::missing;
    if (!o.status.success()) fail(describe_failure(fmt::format("`{}`", command), o));
    if (o.out != payload)
        fail(fmt::format("`{}` returned {} bytes that differ from the {} bytes ferry compressed", command,
                         o.out.size(), payload.size()),
             errc::bad_input);
    co_return tool_state::works;
}

// Returns the codec the transfer checks use.
asio::awaitable<codec::codec_spec> check_decompressors(ssh::session& s, const ops_target& t, const test_context& ctx,
                                                       test_row& row) {
    auto zstd = co_await check_decompressor(s, codec::codec_kind::zstd, ctx);
    auto xz = co_await check_decompressor(s, codec::codec_kind::xz, ctx);
    auto state_of = [&](codec::codec_kind k) { return k == codec::codec_kind::zstd ? zstd : xz; };
    if (t.codec.kind == codec::codec_kind::zstd || t.codec.kind == codec::codec_kind::xz) {
        if (state_of(t.codec.kind) == tool_state::missing)
            fail(fmt::format("ferry.conf selects {} for this machine, but `{}` is not installed there",
                             codec::to_string(t.codec), codec::name(t.codec.kind)));
        co_return t.codec;
    }
    if (t.codec.kind == codec::codec_kind::none) co_return t.codec;
    if (zstd == tool_state::missing && xz == tool_state::missing)
        row.warnings.push_back("neither zstd nor xz is installed: transfers will be uncompressed");
    else if (zstd == tool_state::missing)
        row.warnings.push_back("zstd is not installed: `auto` can only choose xz or none");
    if (zstd == tool_state::works) co_return codec::codec_spec{codec::codec_kind::zstd, 1};
    if (xz == tool_state::works) co_return codec::codec_spec{codec::codec_kind::xz, 0};
    co_return codec::codec_spec{codec::codec_kind::none, 0};
}

// --- import / export ---------------------------------------------------------

asio::awaitable<void> check_import(ssh::session& s, const ops_target& t, test_context& ctx,
                                   store::store_database& db, codec::codec_spec codec, std::uint64_t server_version) {
    transfer::send_options options;
    options.codec = codec;
    options.remote = t.remote;
    options.server_version = server_version;
    options.compress_threads = 1;
    std::vector<std::string> paths{ctx.item};
    co_await transfer::send_paths(s, db, std::move(paths), options);
    auto verify = co_await run(s, store_program(t) + " --verify-path " + ssh::shell_quote(ctx.item), ctx.step_deadline);
    if (!verify.status.success())
        fail(describe_failure(fmt::format("after sending {}, `nix-store --verify-path` on the machine", ctx.item),
                              verify));
}

// Makes a fresh item on the machine (`nix-store --add` of a new file); returns its path.
asio::awaitable<std::string> make_remote_item(ssh::session& s, const ops_target& t, const test_context& ctx,
                                              const std::string& content) {
    std::string name = "ferry-test-export-" + ctx.nonce;
    std::string script = fmt::format(
        "d=$(mktemp -d) || exit 1; printf %s {} > \"$d/{}\" && p=$({} --add \"$d/{}\"); s=$?; rm -rf \"$d\"; "
        "[ $s = 0 ] && printf '%s\\n' \"$p\"; exit $s",
        ssh::shell_quote(content), name, store_program(t), name);
    auto o = co_await run(s, "sh -c " + ssh::shell_quote(script), ctx.step_deadline);
    if (!o.status.success()) fail(describe_failure("making a test item on the machine with `nix-store --add`", o));
    std::string path = last_line(o.out);
    if (!path.starts_with(t.remote.store_dir + "/"))
        fail(fmt::format("`nix-store --add` on the machine printed '{}', not a store path", path), errc::bad_input);
    co_return path;
}

asio::awaitable<std::string> check_export(ssh::session& s, const ops_target& t, test_context& ctx,
                                          store::store_database& db, codec::codec_spec codec) {
    std::string content = fmt::format("ferry test export {} {}\n", t.name, ctx.nonce);
    std::string path = co_await make_remote_item(s, t, ctx, content);
    transfer::receive_options options;
    options.codec = codec;
    options.remote = t.remote;
    std::vector<std::string> paths{path};
    co_await transfer::receive_paths(s, db, *ctx.roots, std::move(paths), options);
    if (!db.is_valid(path)) fail(fmt::format("{} is not valid in the local store after receiving it", path));
    std::ifstream in(path, std::ios::binary);
    std::ostringstream got;
    got << in.rdbuf();
    if (got.str() != content)
        fail(fmt::format("{} arrived with different content ({} bytes, expected {})", path, got.str().size(),
                         content.size()),
             errc::bad_input);
    co_return path;
}

// --- one machine -------------------------------------------------------------

asio::awaitable<void> test_machine(const ops_target& t, test_context& ctx, test_row& row) {
    row.step = "connect";
    auto options = t.ssh;
    // ferry.conf's connect-timeout, as the hook has it (the whole check has its own deadline).
    options.connect_timeout = std::min(options.connect_timeout, ctx.step_deadline);
    options.request_timeout = ctx.step_deadline;
    ssh::session s;
    try {
        s = co_await ssh::session::connect(options);
    } catch (const failure& f) {
        row.step = connect_step(f);
        throw;
    }

    row.step = "store";
    std::uint64_t server_version = 0;
    const auto guix = guix_options(t, ctx);
    const bool as_guix = t.from_guix_file && co_await driven_with_guix(s, t, ctx);
    const ops_target nix_target = t.from_guix_file && !as_guix ? as_nix_machine(t, ctx) : t;
    if (as_guix)
        co_await check_guix_store(s, guix, ctx);
    else
        server_version = co_await check_nix_store(s, nix_target, ctx);

    row.step = "decompressors";
    codec::codec_spec codec = co_await check_decompressors(s, t, ctx, row);

    if (as_guix) {
        row.step = "import";
        co_await test_guix_transfers(s, t, guix, ctx, codec, row);
        s.close();
        row.step.clear();
        co_return;
    }

    row.step = "import";
    if (!ctx.scratch) fail(ctx.scratch_error, errc::unsupported);
    // A connection of its own per machine: the store database is not shared across
    // the machines' pipelines (their threads would race on it).
    store::store_database db(ctx.local);
    std::vector<std::string> made;
    std::exception_ptr error;
    try {
        co_await check_import(s, nix_target, ctx, db, codec, server_version);
        made.push_back(ctx.item);
        row.step = "export";
        made.push_back(co_await check_export(s, nix_target, ctx, db, codec));
    } catch (...) {
        error = std::current_exception();
    }
    // Leave nothing behind on the machine (best effort: unreferenced, so deletable).
    if (!made.empty() && s.is_open()) {
        std::string command = store_program(nix_target) + " --delete";
        for (const auto& p : made) command += " " + ssh::shell_quote(p);
        try {
            co_await remote::run_command(s, command, ctx.step_deadline);
        } catch (...) {
        }
    }
    s.close();
    if (error) std::rethrow_exception(error);
    row.step.clear();
}

void prepare_scratch(test_context& ctx, const std::vector<ops_target>& targets) {
    if (!targets.empty() && targets.front().from_guix_file) return prepare_guix(ctx);  // one file, one kind
    bool needs_nix = std::any_of(targets.begin(), targets.end(), [](const ops_target& t) { return !t.from_guix_file; });
    if (!needs_nix) return;
    try {
        // Store paths must name the machines' store directory: use it locally too.
        auto real = store::store_config::from_environment(store::store_flavour::nix);
        if (!targets.empty()) real = store::store_config::make(real.flavour, targets.front().remote.store_dir,
                                                               real.state_dir);
        ctx.scratch.emplace(scratch_store::create(real));
        ctx.local = ctx.scratch->config();
        ctx.item = ctx.scratch->add_text("ferry-test-import-" + ctx.nonce, "ferry test import " + ctx.nonce + "\n");
        ctx.roots = std::make_unique<store::temp_roots>(ctx.scratch->config());
    } catch (const std::exception& e) {
        ctx.scratch_error = fmt::format("cannot make a throwaway local store: {}", e.what());
        ctx.scratch.reset();
    }
}

}  // namespace

int test_command_main(int argc, char** argv) {
    CLI::App app{"Check that every build machine works: connect, host key, auth, store CLI, decompressors, "
                 "import of a fresh item and export of one back (all machines at once).\n"
                 "Prints `✔ NAME` or `✗ NAME: STEP: reason` per machine.\n"
                 "Exit status: 0 all passed, 1 some failed, 2 usage or configuration error.",
                 "ferry test"};
    std::string file, regex;
    double timeout = 60;
    app.add_option("FILE", file,
                   "machines.scm or Nix machines file (default: /etc/nix/machines if it exists, else "
                   "$GUIX_CONFIGURATION_DIRECTORY/machines.scm)");
    app.add_option("REGEX", regex, "only machines whose name matches (ECMAScript regex, searched)");
    app.add_option("--timeout", timeout, "seconds each machine may take for all its checks (default 60)")
        ->check(CLI::PositiveNumber);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    auto selected = select_targets_or_report("test", file, regex);
    if (!selected) return 2;
    ops_selection sel = std::move(*selected);

    test_context ctx;
    ctx.nonce = random_nonce();
    auto deadline = milliseconds(static_cast<long long>(timeout * 1000));
    ctx.step_deadline = deadline;
    prepare_scratch(ctx, sel.targets);  // before any thread exists (mount namespace)

    std::vector<test_row> rows(sel.targets.size());
    run_per_machine(
        rows.size(), deadline, [&](std::size_t i) { return test_machine(sel.targets[i], ctx, rows[i]); },
        [&](std::size_t i, std::error_code code, const std::string& message) {
            if (rows[i].step.empty()) rows[i].step = "cleanup";
            rows[i].error = code == errc::timed_out ? fmt::format("timed out after {} s", timeout) : message;
        });

    bool all = true;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& name = sel.targets[i].name;
        for (const auto& w : rows[i].warnings) fmt::print(stderr, "ferry test: {}: {}\n", name, w);
        if (rows[i].error.empty()) {
            fmt::print("✔ {}\n", name);
        } else {
            all = false;
            fmt::print("✗ {}: {}: {}\n", name, rows[i].step, rows[i].error);
        }
    }
    std::fflush(stdout);
    return all ? 0 : 1;
}

}  // namespace ferry::cli
