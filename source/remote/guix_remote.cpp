#include "ferry/remote/guix_remote.hpp"

#include <array>
#include <csignal>
#include <set>
#include <exception>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/core.h>

#include "ferry/codec/commands.hpp"
#include "ferry/codec/compressor.hpp"
#include "ferry/codec/decompressor.hpp"
#include "ferry/io/child_process.hpp"
#include "ferry/io/deadline.hpp"
#include "ferry/protocol/export_bundle.hpp"
#include "ferry/ssh/quote.hpp"
#include "ferry/store/store_path.hpp"
#include "ferry/util/error.hpp"

namespace ferry::remote {

namespace {

std::string in_sh(const std::string& script) { return "sh -c " + ssh::shell_quote(script); }

void check_paths(const guix_remote_options& o, const std::vector<std::string>& paths) {
    for (const auto& p : paths) store::parse_store_path(o.store_dir, p);
}

nix_remote_options roots_options(const guix_remote_options& o) {
    nix_remote_options n;
    n.store_dir = o.store_dir;
    n.state_dir = o.state_dir;
    return n;
}

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

using clock = std::chrono::steady_clock;

// Reads the command's stderr to its end (into tail and sink). channel::wait()
// discards what was not read yet, so everything is read before waiting.
asio::awaitable<void> read_stderr_to_end(ssh::channel& ch, stderr_tail& tail, const log_sink& sink) {
    std::string buf(16384, '\0');
    for (;;) {
        auto n = co_await ch.read(asio::buffer(buf), ssh::stream::err);
        if (n == 0) co_return;
        std::string_view bytes(buf.data(), n);
        tail.append(bytes);
        if (sink) co_await sink(bytes);
    }
}

}  // namespace

std::string guix_missing_command(const guix_remote_options& o) {
    return ssh::shell_quote(o.guix_program) + " archive --missing";
}

std::string guix_import_command(const guix_remote_options& o, codec::codec_kind kind) {
    std::string import = ssh::shell_quote(o.guix_program) + " archive --import";
    if (kind == codec::codec_kind::none) return import;
    return in_sh(codec::decompress_command(kind) + " | " + import);
}

std::string guix_export_command(const guix_remote_options& o, const std::vector<std::string>& paths,
                                const codec::codec_spec& codec, unsigned threads) {
    check_paths(o, paths);
    std::string exp = ssh::shell_quote(o.guix_program) + " archive --export";
    for (const auto& p : paths) exp += " " + ssh::shell_quote(p);
    if (codec.kind == codec::codec_kind::none) return exp;
    // POSIX sh has no pipefail: say the export's failure on stderr instead.
    return in_sh("{ " + exp + " || echo \"ferry: export failed (status $?)\" >&2; } | " +
                 codec::compress_command(codec, threads));
}

std::string guix_build_command(const guix_remote_options& o, std::string_view root, std::uint64_t max_silent_time,
                               std::uint64_t timeout, std::string_view drv_path) {
    store::parse_store_path(o.store_dir, drv_path);
    return fmt::format("{} build -r {} --max-silent-time={} --timeout={} {}", ssh::shell_quote(o.guix_program),
                       ssh::shell_quote(root), max_silent_time, timeout, ssh::shell_quote(drv_path));
}

std::vector<std::string> local_export_argv(std::string_view local_guix, const std::vector<std::string>& paths,
                                           const codec::codec_spec& codec, unsigned threads) {
    (void)codec;
    (void)threads;
    // Compression happens in-process (the send loop): the local side only exports.
    // "$0" is the program, "$@" the paths: nothing is re-split or re-quoted.
    std::vector<std::string> argv{"/bin/sh", "-c", "exec \"$0\" archive --export \"$@\"", std::string(local_guix)};
    argv.insert(argv.end(), paths.begin(), paths.end());
    return argv;
}

guix_build_verdict classify_guix_build(int exit_code, std::string_view tail) {
    if (exit_code == 0) return guix_build_verdict::built;
    // `guix build` reports every store-protocol-error with exit code 1
    // (guix/ui.scm with-error-handling -> leave); offload.scm maps a
    // store-protocol-error of the build to 100 (transfer-and-offload). The
    // daemon's timeout messages (build.cc: "timed out after N seconds [of
    // silence]") become 101.
    if (exit_code != 1 || !contains(tail, "guix build: error:")) return guix_build_verdict::transient;
    if (contains(tail, "timed out after")) return guix_build_verdict::timed_out;
    if (contains(tail, "failed") && !contains(tail, "No space left on device")) return guix_build_verdict::failed;
    return guix_build_verdict::transient;
}

guix_build_machine::guix_build_machine(ssh::session& s, guix_remote_options options)
    : session_(&s), options_(std::move(options)) {}

asio::awaitable<void> guix_build_machine::protect(const std::vector<std::string>& paths) {
    check_paths(options_, paths);
    if (!roots_) roots_ = std::make_unique<remote_roots>(co_await remote_roots::create(*session_, roots_options(options_)));
    co_await roots_->add(paths);
}

asio::awaitable<std::vector<std::string>> guix_build_machine::missing_paths(const std::vector<std::string>& paths) {
    check_paths(options_, paths);
    std::string input;
    for (const auto& p : paths) input += p + "\n";
    auto r = co_await ssh::run(*session_, guix_missing_command(options_), std::move(input), 64 << 20);
    if (!r.status.success())
        throw failure(errc::remote_failed, fmt::format("{}: `{}` ended with {}: {}", host(), guix_missing_command(options_),
                                                       r.status.describe(), r.err));
    // Only paths that were asked about: a machine naming another local path must
    // not get it exported (and signed with the local key).
    const std::set<std::string> asked(paths.begin(), paths.end());
    std::vector<std::string> missing;
    std::size_t pos = 0;
    while (pos < r.out.size()) {
        auto nl = r.out.find('\n', pos);
        if (nl == std::string::npos) nl = r.out.size();
        std::string line = r.out.substr(pos, nl - pos);
        pos = nl + 1;
        if (line.empty()) continue;
        store::parse_store_path(options_.store_dir, line);  // a banner or junk is an error, not a path
        if (!asked.count(line))
            throw failure(errc::bad_input, fmt::format("{}: `{}` named {}, which was not asked about", host(),
                                                       guix_missing_command(options_), line));
        missing.push_back(std::move(line));
    }
    co_return missing;
}

bundle_source local_cli_export(std::string local_guix, std::vector<std::string> paths) {
    bundle_source source;
    source.name = fmt::format("the local `{} archive --export`", local_guix);
    source.produce = [local_guix, paths = std::move(paths)](bundle_sink sink) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        io::process_options po;
        po.argv = local_export_argv(local_guix, paths, {});
        po.in = io::stdio::null;
        auto child = io::child_process::spawn(ex, po);
        std::string local_err;
        // Its stderr is read beside its stdout (it must never block on it).
        auto drain_err = [&]() -> asio::awaitable<void> {
            std::array<char, 4096> buf;
            for (;;) {
                auto [ec, n] = co_await child.err().async_read_some(asio::buffer(buf),
                                                                    asio::experimental::as_tuple(asio::use_awaitable));
                if (ec) co_return;
                if (local_err.size() < 16384) local_err.append(buf.data(), n);
            }
        };
        // Its stdout into the sink; if the sink fails, the exporter is killed so that
        // its stderr ends too (it must not block on a pipe nobody reads).
        auto read_out = [&]() -> asio::awaitable<void> {
            try {
                std::string buf(std::size_t{1} << 18, '\0');
                for (;;) {
                    auto [ec, n] = co_await child.out().async_read_some(
                        asio::buffer(buf), asio::experimental::as_tuple(asio::use_awaitable));
                    if (ec == asio::error::eof) break;
                    if (ec) throw failure(ec, fmt::format("reading the local `{} archive --export`", local_guix));
                    co_await sink(std::string_view(buf.data(), n));
                }
            } catch (...) {
                child.kill(SIGKILL);
                throw;
            }
        };
        // Both at once: a chatty exporter fills its stderr pipe while we read stdout.
        auto [order, out_error, err_error] =
            co_await asio::experimental::make_parallel_group(asio::co_spawn(ex, read_out(), asio::experimental::deferred),
                                                             asio::co_spawn(ex, drain_err(), asio::experimental::deferred))
                .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        (void)order;
        (void)err_error;
        int status = co_await child.wait();
        if (out_error) std::rethrow_exception(out_error);
        if (status != 0)
            throw failure(errc::remote_failed, fmt::format("the local `{} archive --export` of {} paths ended with "
                                                           "status {}: {}",
                                                           local_guix, paths.size(), status, local_err));
    };
    return source;
}

asio::awaitable<std::uint64_t> guix_build_machine::send(bundle_source source, codec::codec_spec codec,
                                                        guix_progress_fn progress,
                                                        std::chrono::milliseconds progress_every) {
    const std::string command = guix_import_command(options_, codec.kind);
    auto ch = co_await session_->exec(command);
    stderr_tail remote_err;
    std::uint64_t wire = 0;
    std::unique_ptr<codec::compressor> comp;
    if (codec.kind != codec::codec_kind::none) comp = codec::make_compressor(codec);
    protocol::export_bundle::parser parser;
    guix_transfer_progress p;
    auto last = clock::now();
    std::string out;
    auto put = [&]() -> asio::awaitable<void> {
        if (out.empty()) co_return;
        co_await ch.write(asio::buffer(out));
        wire += out.size();
        out.clear();
    };
    // Each piece of the bundle: counted (and its framing checked), compressed, sent.
    bundle_sink sink = [&](std::string_view chunk) -> asio::awaitable<void> {
        for (std::string_view rest = chunk; !rest.empty();) {
            auto st = parser.next(rest);
            if (st.ev && st.ev->type == protocol::export_bundle::event_type::item_end) ++p.items;
            rest.remove_prefix(st.consumed);
            if (st.consumed == 0 && !st.ev) break;
        }
        if (comp) {
            auto bytes = std::as_bytes(std::span(chunk.data(), chunk.size()));
            while (!bytes.empty()) {
                bytes = bytes.subspan(comp->feed(bytes, out));
                co_await put();
            }
        } else {
            out.assign(chunk);
            co_await put();
        }
        p.bytes = wire;
        if (progress && clock::now() - last >= progress_every) {
            progress(p);
            last = clock::now();
        }
    };
    auto pump = [&]() -> asio::awaitable<void> {
        co_await source.produce(sink);
        if (!parser.done())
            throw failure(errc::truncated, fmt::format("{} ended before the end of its bundle", source.name));
        if (comp) {
            while (!comp->finish(out)) co_await put();
            co_await put();
        }
        co_await ch.send_eof();
    };
    try {
        co_await with_stderr(ch, pump(), remote_err);
    } catch (const failure& e) {
        ch.close();
        throw failure(e.code(), fmt::format("{}: sending to `{}`: {}", host(), command, e.what()));
    } catch (const std::exception& e) {
        ch.close();
        throw failure(errc::remote_failed, fmt::format("{}: sending to `{}`: {}", host(), command, e.what()));
    }
    co_await read_stderr_to_end(ch, remote_err, {});
    auto status = co_await ch.wait();
    if (!status.success())
        throw failure(errc::remote_failed,
                      fmt::format("{}: `{}` ended with {}{}", host(), command, status.describe(), remote_err.quote()));
    p.bytes = wire;
    if (progress) progress(p);
    co_return wire;
}

asio::awaitable<guix_build_machine::build_outcome> guix_build_machine::build(std::string drv_path,
                                                                             std::uint64_t max_silent_time,
                                                                             std::uint64_t timeout, log_sink log) {
    if (!roots_) roots_ = std::make_unique<remote_roots>(co_await remote_roots::create(*session_, roots_options(options_)));
    const std::string root = roots_->directory() + "/result";
    const std::string command = guix_build_command(options_, root, max_silent_time, timeout, drv_path);
    auto ch = co_await session_->exec(command);
    stderr_tail tail;
    build_outcome outcome;
    try {
        // The log is the whole stderr; stdout (the output file names, a few lines)
        // stays buffered and is discarded by wait().
        co_await read_stderr_to_end(ch, tail, log);
        outcome.status = co_await ch.wait();
    } catch (...) {
        ch.close();  // hang up: the remote guix build must not outlive us
        throw;
    }
    outcome.verdict = classify_guix_build(outcome.status.code, tail.text());
    if (outcome.verdict != guix_build_verdict::built)
        outcome.message = fmt::format("{}: `{}` ended with {}{}", host(), command, outcome.status.describe(), tail.quote());
    co_return outcome;
}

asio::awaitable<std::uint64_t> guix_build_machine::receive(std::vector<std::string> outputs, codec::codec_spec codec,
                                                           received_sink sink, guix_progress_fn progress,
                                                           std::chrono::milliseconds progress_every) {
    const std::string command = guix_export_command(options_, outputs, codec);
    auto ch = co_await session_->exec(command);
    stderr_tail tail;
    std::unique_ptr<codec::decompressor> dec;
    if (codec.kind != codec::codec_kind::none) dec = codec::make_decompressor(codec.kind);
    guix_transfer_progress p;
    auto last = clock::now();
    auto pump = [&]() -> asio::awaitable<void> {
        std::string buf(std::size_t{1} << 18, '\0');
        std::string out;
        for (;;) {
            auto n = co_await ch.read(asio::buffer(buf));
            if (n == 0) break;
            p.bytes += n;
            if (dec) {
                auto bytes = std::as_bytes(std::span(buf.data(), n));
                while (!bytes.empty() || dec->has_pending_output()) {
                    auto used = dec->feed(bytes, out);
                    bytes = bytes.subspan(used);
                    sink(out);
                    out.clear();
                }
            } else {
                sink(std::string_view(buf.data(), n));
            }
            if (progress && clock::now() - last >= progress_every) {
                progress(p);
                last = clock::now();
            }
        }
        if (dec) {
            while (!dec->finish(out)) {
                sink(out);
                out.clear();
            }
            sink(out);
        }
    };
    try {
        co_await with_stderr(ch, pump(), tail);
    } catch (const failure& f) {
        ch.close();
        throw failure(f.code(), fmt::format("{} (receiving from `{}`{})", f.what(), command, tail.quote()));
    }
    co_await read_stderr_to_end(ch, tail, {});
    auto status = co_await ch.wait();
    if (!status.success() || contains(tail.text(), "ferry: export failed"))
        throw failure(errc::remote_failed,
                      fmt::format("{}: `{}` ended with {}{}", host(), command, status.describe(), tail.quote()));
    if (progress) progress(p);
    co_return p.bytes;
}

asio::awaitable<void> guix_build_machine::finish() noexcept {
    if (roots_) co_await detail::remove_roots_quietly(*roots_, std::chrono::seconds(30));
}

}  // namespace ferry::remote
