// g++ 12 reports a false -Wmismatched-new-delete on every Asio coroutine frame.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

// `ferry test` for machines.scm machines: the Guix checks (as `guix offload
// test`), and which machines get them (remote-flavour) instead of the Nix ones.
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/machines/locate.hpp"
#include "ferry/protocol/export_bundle.hpp"
#include "ferry/protocol/nar.hpp"
#include "ferry/ssh/quote.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/guix_signature.hpp"
#include "ferry/store/hash.hpp"
#include "ferry/store/importer.hpp"
#include "ops_test_parts.hpp"

namespace ferry::cli::ops_test_parts {

namespace {

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

}  // namespace

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

}  // namespace ferry::cli::ops_test_parts
