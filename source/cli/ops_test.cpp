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
#include "ferry/hook/guix_offload.hpp"
#include "ferry/machines/ferry_conf.hpp"
#include "ferry/machines/locate.hpp"
#include "ferry/protocol/export_bundle.hpp"
#include "ferry/protocol/nar.hpp"
#include "ferry/remote/command.hpp"
#include "ferry/remote/guix_remote.hpp"
#include "ferry/remote/serve_connection.hpp"
#include "ferry/ssh/quote.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/guix_signature.hpp"
#include "ferry/store/hash.hpp"
#include "ferry/store/importer.hpp"
#include "ferry/transfer/receive.hpp"
#include "ferry/transfer/send.hpp"
#include "ferry/util/error.hpp"

namespace ferry::cli {

namespace {

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

[[noreturn]] void fail(const std::string& message, errc code = errc::remote_failed) { throw failure(code, message); }

std::string random_nonce() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
}

std::string store_program(const ops_target& t) {
    std::string cmd = ssh::shell_quote(t.remote.remote_program);
    if (!t.remote.remote_store.empty()) cmd += " --store " + ssh::shell_quote(t.remote.remote_store);
    return cmd;
}

// Runs `command`; fails the step on transport errors, returns the outcome otherwise.
asio::awaitable<remote::command_outcome> run(ssh::session& s, const std::string& command, milliseconds deadline,
                                             std::string input = {}) {
    auto outcome = co_await remote::run_command(s, command, deadline, std::move(input));
    if (outcome.error) throw failure(outcome.error, outcome.message);
    co_return outcome;
}

std::string last_line(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
    auto nl = text.rfind('\n');
    return nl == std::string::npos ? text : text.substr(nl + 1);  // the last line says most (errors end there)
}

std::string describe_failure(const std::string& what, const remote::command_outcome& o) {
    if (o.status.code == 127) return fmt::format("{}: command not found on the machine", what);
    std::string err = last_line(o.err);
    return fmt::format("{} failed ({}){}", what, o.status.describe(), err.empty() ? "" : ": " + err);
}

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

// The machine as the hook reaches it: ferry.conf's guix-program and
// remote-state-dir, the local store directory (Guix has one for all machines).
remote::guix_remote_options guix_options(const ops_target& t, const test_context& ctx) {
    auto c = ctx.conf.for_machine(t.name);
    remote::guix_remote_options o;
    o.guix_program = c.guix_program;
    o.store_dir = ctx.guix ? ctx.guix->store_dir : t.remote.store_dir;
    if (!c.remote_state_dir.empty()) o.state_dir = c.remote_state_dir;  // else guix_remote_options' /var/guix
    return o;
}

asio::awaitable<void> check_guix_store(ssh::session& s, const remote::guix_remote_options& o,
                                       const test_context& ctx) {
    const std::string guix = ssh::shell_quote(o.guix_program);
    auto version = co_await run(s, guix + " --version", ctx.step_deadline);
    if (!version.status.success()) fail(describe_failure(fmt::format("`{} --version`", o.guix_program), version));
    // `guix archive --missing` with no input connects to the machine's daemon.
    auto missing = co_await run(s, guix + " archive --missing", ctx.step_deadline);
    if (!missing.status.success())
        fail(describe_failure(fmt::format("`{} archive --missing`", o.guix_program), missing));
}

// --- decompressors -----------------------------------------------------------

enum class tool_state { works, missing };

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

// --- import / export, Guix ------------------------------------------------------
// As `guix offload test` (offload.scm assert-machine-is-healthy): a fresh text item
// sent to the machine, signed as the local daemon would sign it (the machine's
// `guix archive --import` takes only items signed by a key of its ACL), then
// exported back and restored locally after its signature verified against the
// local ACL, as the hook restores outputs.

// Nix/Guix makeTextPath for an item without references (store-api.cc).
std::string text_store_path(const std::string& store_dir, const std::string& name, const std::string& content) {
    auto fingerprint = fmt::format("text:sha256:{}:{}:{}", store::to_base16(store::sha256_of(content)), store_dir, name);
    auto full = store::sha256_of(fingerprint);
    std::array<unsigned char, 20> compressed{};
    for (std::size_t i = 0; i < full.size(); ++i) compressed[i % compressed.size()] ^= full[i];
    return store_dir + "/" + store::to_nix_base32(compressed) + "-" + name;
}

// The local machine's key (`guix archive --generate-key`); never quoted in messages.
std::string read_signing_key(const test_context& ctx, std::filesystem::path& file) {
    file = ctx.guix->config_dir / "signing-key.sec";
    std::ifstream in(file, std::ios::binary);
    std::string key;
    if (in) key.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (key.empty())
        fail(fmt::format("cannot read the local signing key {} (Guix machines import only items signed by a key "
                         "in their ACL; make one with `guix archive --generate-key`, and authorize its .pub there)",
                         file.string()),
             errc::bad_input);
    return key;
}

asio::awaitable<std::string> check_guix_import(ssh::session& s, const ops_target& t,
                                               const remote::guix_remote_options& o, test_context& ctx,
                                               codec::codec_spec codec) {
    std::filesystem::path key_file;
    const std::string key = read_signing_key(ctx, key_file);
    const std::string name = "ferry-test-import-" + ctx.nonce;
    const std::string content = fmt::format("ferry test import {} {}\n", t.name, ctx.nonce);
    const std::string path = text_store_path(o.store_dir, name, content);
    protocol::export_bundle::item_trailer trailer;
    trailer.path = path;  // no references, no deriver, as add-text-to-store makes it
    std::string bundle = store::guix_signed_export_item(protocol::nar::regular_file_nar(content), trailer, key, key_file.string());
    protocol::export_bundle::append_end(bundle);
    if (codec.kind != codec::codec_kind::none) bundle = compress_locally(codec.kind, bundle);
    auto imported = co_await run(s, remote::guix_import_command(o, codec.kind), ctx.step_deadline, std::move(bundle));
    if (!imported.status.success())
        fail(describe_failure(fmt::format("`{} archive --import` of {} (signed with {})", o.guix_program, path,
                                          key_file.string()),
                              imported));
    auto missing = co_await run(s, remote::guix_missing_command(o), ctx.step_deadline, path + "\n");
    if (!missing.status.success())
        fail(describe_failure(fmt::format("after sending {}, `{} archive --missing`", path, o.guix_program), missing));
    if (missing.out.find(path) != std::string::npos)
        fail(fmt::format("after sending {}, `{} archive --missing` on the machine still lists it", path,
                         o.guix_program));
    co_return path;
}

asio::awaitable<void> check_guix_export(ssh::session& s, const ops_target& t, const remote::guix_remote_options& o,
                                        test_context& ctx, codec::codec_spec codec, const std::string& path) {
    store::store_database db(ctx.local);
    auto acl = store::load_guix_acl(ctx.guix->config_dir);
    store::bundle_importer importer(db, *ctx.roots);
    store::guix_signed_bundle_filter verify(acl, [&](std::string_view bytes) { importer.feed(bytes); },
                                            fmt::format("the export of {}", t.name));
    remote::guix_build_machine m(s, o);
    std::vector<std::string> paths{path};
    remote::guix_progress_fn no_progress;
    co_await m.receive(std::move(paths), codec, [&](std::string_view bytes) { verify.feed(bytes); }, no_progress,
                       ctx.step_deadline);
    verify.finish();
    importer.finish();
    if (!db.is_valid(path)) fail(fmt::format("{} is not valid in the local store after receiving it", path));
    std::ifstream in(path, std::ios::binary);
    std::ostringstream got;
    got << in.rdbuf();
    if (got.str() != fmt::format("ferry test import {} {}\n", t.name, ctx.nonce))
        fail(fmt::format("{} came back with different content", path), errc::bad_input);
}

asio::awaitable<void> test_guix_transfers(ssh::session& s, const ops_target& t, const remote::guix_remote_options& o,
                                          test_context& ctx, codec::codec_spec codec, test_row& row) {
    if (!ctx.scratch) fail(ctx.scratch_error, errc::unsupported);
    std::string path;
    std::exception_ptr error;
    try {
        path = co_await check_guix_import(s, t, o, ctx, codec);
        row.step = "export";
        co_await check_guix_export(s, t, o, ctx, codec, path);
    } catch (...) {
        error = std::current_exception();
    }
    // Leave nothing behind on the machine (best effort: unreferenced, so deletable).
    if (!path.empty() && s.is_open()) {
        try {
            co_await remote::run_command(
                s, ssh::shell_quote(o.guix_program) + " gc --delete " + ssh::shell_quote(path), ctx.step_deadline);
        } catch (...) {
        }
    }
    if (error) std::rethrow_exception(error);
}

// --- one machine -------------------------------------------------------------

// A machines.scm machine is checked the way the hook drives it
// (hook::remote_flavour_for): forced by ferry.conf's remote-flavour, else a named
// guix-program means Guix, else what the machine has (guix, or nix-store only).
asio::awaitable<bool> driven_with_guix(ssh::session& s, const ops_target& t, const test_context& ctx) {
    auto c = ctx.conf.for_machine(t.name);
    std::optional<schedule::probe_result> tools;
    if (c.flavour == machines::remote_flavour::auto_detect && c.guix_program == "guix") {
        auto r = co_await run(s,
                              "sh -c 'command -v guix >/dev/null && echo has-guix; "
                              "command -v nix-store >/dev/null && echo has-nix-store; true'",
                              ctx.step_deadline);
        tools.emplace();
        tools->has_guix = r.out.find("has-guix") != std::string::npos;
        tools->has_nix_store = r.out.find("has-nix-store") != std::string::npos;
    }
    co_return hook::remote_flavour_for(c, tools) == machines::remote_flavour::guix;
}

// A machines.scm machine driven through nix-store --serve, as the hook reaches
// it: the local (Guix) store directory, its remote-state-dir or Nix's.
ops_target as_nix_machine(const ops_target& t, const test_context& ctx) {
    ops_target n = t;
    n.remote.store_dir = ctx.guix->store_dir;
    auto c = ctx.conf.for_machine(t.name);
    n.remote.state_dir = c.remote_state_dir.empty() ? "/nix/var/nix" : c.remote_state_dir;
    return n;
}

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

// Guix: the local Guix's store and state directories, covered by the scratch
// store; its database inside it, whatever GUIX_DATABASE_DIRECTORY says.
void prepare_guix_scratch(test_context& ctx) {
    auto real = store::store_config::make(store::store_flavour::guix, ctx.guix->store_dir, ctx.guix->state_dir);
    ctx.scratch.emplace(scratch_store::create(real));
    ctx.local = ctx.scratch->config();
    ctx.local.database_path = ctx.local.state_dir + "/db/db.sqlite";
    store::create_guix_database(ctx.local.database_path);
    ctx.roots = std::make_unique<store::temp_roots>(ctx.local);
}

// The fresh item that machines.scm machines driven through nix-store --serve
// import: a text item made and registered by ferry in the scratch store (never
// by the local nix-store, whose database is not Guix's).
std::string add_text_item(test_context& ctx, const std::string& name, const std::string& content) {
    const std::string path = text_store_path(ctx.local.store_dir, name, content);
    protocol::export_bundle::item_trailer trailer;
    trailer.path = path;
    std::string bundle;
    protocol::export_bundle::append_item_begin(bundle);
    bundle += protocol::nar::regular_file_nar(content);
    protocol::export_bundle::append_item_trailer(bundle, trailer);
    protocol::export_bundle::append_end(bundle);
    store::store_database db(ctx.local);
    store::bundle_importer importer(db, *ctx.roots);
    importer.feed(bundle);
    importer.finish();
    return path;
}

void prepare_guix(test_context& ctx) {
    auto env = machines::environment::from_process();
    ctx.guix = hook::guix_environment::from([](const char* name) { return std::getenv(name); });
    ctx.conf = machines::load_ferry_conf(env, ctx.guix->state_dir.string());
    try {
        prepare_guix_scratch(ctx);
        ctx.item = add_text_item(ctx, "ferry-test-import-" + ctx.nonce, "ferry test import " + ctx.nonce + "\n");
    } catch (const std::exception& e) {
        ctx.scratch_error = fmt::format("cannot make a throwaway local store: {}", e.what());
        ctx.scratch.reset();
    }
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
