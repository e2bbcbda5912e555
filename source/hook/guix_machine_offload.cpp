#include "ferry/hook/guix_machine_offload.hpp"

#include <algorithm>
#include <exception>
#include <set>

#include <asio/co_spawn.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/core.h>

#include "ferry/daemon/worker_connection.hpp"
#include "ferry/schedule/state.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/guix_signature.hpp"
#include "ferry/store/importer.hpp"
#include "ferry/store/temp_sweep.hpp"
#include "ferry/transfer/auto_probe.hpp"
#include "ferry/util/error.hpp"

namespace ferry::hook {

namespace {

using clock = std::chrono::steady_clock;

struct guix_run : event_reporter {
    guix_offload_job job;
    offload_settings settings;
    offload_outcome outcome;
    remote::guix_progress_fn progress(offload_events::phase p, std::size_t total) {
        if (!events.progress) return {};
        return [this, p, total](const remote::guix_transfer_progress& g) {
            transfer::progress t;
            t.items_done = g.items;
            t.items_total = total;
            t.bytes_done = g.bytes;
            events.progress(p, t);
        };
    }

    codec::codec_spec codec;  // job.codec with auto resolved
    asio::awaitable<remote::bundle_source> upload_source(const std::vector<std::string>& paths);
    asio::awaitable<void> resolve_codec(ssh::session& s, const std::vector<std::string>& missing);
    asio::awaitable<void> run();
    asio::awaitable<void> steps(remote::guix_build_machine& m, ssh::session& s);
    asio::awaitable<bool> build(remote::guix_build_machine& m);
    asio::awaitable<void> receive(remote::guix_build_machine& m);
};

std::string host_of(const machines::machine& m) { return m.host; }

asio::awaitable<void> guix_run::run() {
    start(offload_events::phase::connect, 0, 0);
    std::shared_ptr<ssh::session> kept = std::move(job.session);
    if (!kept || !kept->is_open())
        kept = std::make_shared<ssh::session>(co_await ssh::session::connect(session_options_for(job.machine, settings)));
    remote::guix_build_machine machine(*kept, job.remote);
    end(offload_events::phase::connect);
    std::exception_ptr error;
    try {
        co_await steps(machine, *kept);
    } catch (...) {
        error = std::current_exception();
    }
    co_await machine.finish();  // the roots go on every path out
    kept->close();
    if (error) std::rethrow_exception(error);
}

asio::awaitable<void> guix_run::steps(remote::guix_build_machine& m, ssh::session& s) {
    const std::string name = host_of(job.machine);
    // 1. inputs (+ .drv): protect, ask, send what is missing.
    std::vector<std::string> inputs = job.inputs;
    if (std::find(inputs.begin(), inputs.end(), job.drv_path) == inputs.end()) inputs.push_back(job.drv_path);
    co_await m.protect(inputs);
    auto missing = co_await m.missing_paths(inputs);
    say(log_level::talkative,
        fmt::format("ferry: {} of {} inputs missing on '{}'", missing.size(), inputs.size(), name));
    co_await resolve_codec(s, missing);
    if (!missing.empty()) {
        start(offload_events::phase::send, missing.size(), 0);
        try {
            outcome.sent.wire_bytes = co_await m.send(co_await upload_source(missing), codec,
                                                      progress(offload_events::phase::send, missing.size()),
                                                      job.progress_every);
        } catch (const failure& e) {
            throw failure(e.code(), fmt::format("sending inputs: {}", e.what()));
        }
        outcome.sent.paths = missing.size();
        end(offload_events::phase::send);
    }
    // 2. build.
    if (!co_await build(m)) co_return;
    // 3. outputs.
    co_await receive(m);
    outcome.exit_code = 0;
}

asio::awaitable<void> guix_run::resolve_codec(ssh::session& s, const std::vector<std::string>& missing) {
    codec = job.codec;
    if (!codec.is_auto()) co_return;
    const std::uint64_t bytes = store::store_database(job.local_store).nar_size_total(missing);
    codec = job.remote_has_zstd ? codec::codec_spec{codec::codec_kind::zstd, codec::default_zstd_level}
                                : codec::codec_spec{codec::codec_kind::none, 0};
    if (bytes < auto_measure_threshold) co_return;
    remembered_link link(settings, job.machine);
    auto probed = co_await transfer::probe_and_choose(s, missing, link.reusable());
    codec = probed.choice.spec;
    link.after_send(probed.link_bytes_per_s);
    say(log_level::talkative, fmt::format("ferry: auto: {}", probed.choice.reason));
}

// The inputs' signed bundle, references first, as offload.scm's send-files gets
// it: from the local daemon (export-path with sign) over its socket; when no
// daemon listens there, from the local `guix archive --export`.
asio::awaitable<remote::bundle_source> guix_run::upload_source(const std::vector<std::string>& paths) {
    std::vector<std::string> ordered;
    {
        store::store_database db(job.local_store);
        ordered = db.topo_sort(paths);  // referrers first
        std::reverse(ordered.begin(), ordered.end());
    }
    std::string no_daemon;
    try {
        auto c = std::make_shared<daemon::worker_connection>(
            co_await daemon::worker_connection::connect(job.daemon_socket));
        say(log_level::talkative, fmt::format("ferry: exports signed by the local {} daemon at {} (protocol 0x{:x})",
                                              protocol::worker::to_string(c->dialect()), job.daemon_socket,
                                              c->server_version()));
        remote::bundle_source source;
        source.name = fmt::format("the local daemon at {}", job.daemon_socket);
        source.produce = [c, ordered](remote::bundle_sink sink) -> asio::awaitable<void> {
            co_await daemon::export_bundle(*c, ordered, true, sink);
        };
        co_return source;
    } catch (const failure& e) {
        if (e.code() != make_error_code(errc::connect_failed)) throw;
        no_daemon = e.what();
    }
    if (job.local_guix.empty())
        throw failure(errc::unsupported, fmt::format("no local daemon to sign the exports ({}) and no local guix "
                                                     "(set FERRY_GUIX)", no_daemon));
    say(log_level::talkative, fmt::format("ferry: no daemon at {}: exporting with {} archive --export",
                                          job.daemon_socket, job.local_guix));
    co_return remote::local_cli_export(job.local_guix, ordered);
}

// False when the build did not succeed (outcome set).
asio::awaitable<bool> guix_run::build(remote::guix_build_machine& m) {
    const std::string name = host_of(job.machine);
    start(offload_events::phase::build, 0, 0);
    watchdog_state wd;
    auto sink = [this, &wd](std::string_view bytes) -> asio::awaitable<void> {
        wd.last_output = clock::now();
        if (events.log) co_await events.log(bytes);
    };
    // The remote daemon enforces the limits itself and says so ("timed out after
    // N seconds"); ferry steps in only for a remote that does not.
    // The grace: a tenth of the limit, at least 1 s, at most watchdog_grace.
    const auto most = static_cast<std::uint64_t>(std::max<std::int64_t>(1, job.watchdog_grace.count()));
    auto with_grace = [most](std::uint64_t limit) {
        return limit ? limit + std::clamp<std::uint64_t>(limit / 10, 1, most) : 0;
    };
    const std::uint64_t silent = with_grace(job.max_silent_time);
    const std::uint64_t total = with_grace(job.build_timeout);
    auto built = co_await build_under_watchdog(m.build(job.drv_path, job.max_silent_time, job.build_timeout, sink), wd,
                                               silent, total);
    outcome.build_time = clock::now() - wd.started;
    end(offload_events::phase::build);
    if (!built) {
        outcome.exit_code = 101;
        outcome.message = fmt::format("derivation '{}' offloaded to '{}' {} (killed by ferry)", job.drv_path, name,
                                      wd.why);
        co_return false;
    }
    const auto& result = *built;
    switch (result.verdict) {
    case remote::guix_build_verdict::built: co_return true;
    case remote::guix_build_verdict::failed:
        outcome.exit_code = 100;
        outcome.message = fmt::format("derivation '{}' offloaded to '{}' failed: {}", job.drv_path, name, result.message);
        break;
    case remote::guix_build_verdict::timed_out:
        outcome.exit_code = 101;
        outcome.message = fmt::format("derivation '{}' offloaded to '{}' timed out: {}", job.drv_path, name,
                                      result.message);
        break;
    case remote::guix_build_verdict::transient:
        outcome.exit_code = 1;
        outcome.message = fmt::format("offloading '{}' to '{}': {}", job.drv_path, name, result.message);
        break;
    }
    co_return false;
}

asio::awaitable<void> guix_run::receive(remote::guix_build_machine& m) {
    if (job.outputs.empty()) co_return;
    const std::string name = host_of(job.machine);
    co_await m.protect(job.outputs);
    auto config = job.local_store;
    store::store_database db(config);
    std::vector<std::string> wanted;
    for (const auto& o : job.outputs)
        if (!db.is_valid(o)) wanted.push_back(o);
    if (wanted.empty()) co_return;
    if (auto swept = store::sweep_dead_import_temporaries(db); swept.temporaries)
        say(log_level::talkative, fmt::format("ferry: removed {} import temporaries of killed processes",
                                              swept.temporaries));
    // Every item must carry a signature by a key of the local ACL, as guix-daemon's
    // importPath demands: checked before the importer sees the item's last byte.
    auto acl = store::load_guix_acl(job.config_dir);
    store::temp_roots roots(config);
    store::import_options io;
    io.locked_by_caller = std::set<std::string>(wanted.begin(), wanted.end());
    store::bundle_importer importer(db, roots, io);
    store::guix_signed_bundle_filter verify(acl, [&](std::string_view bytes) { importer.feed(bytes); },
                                            fmt::format("the export of {}", name));
    start(offload_events::phase::receive, wanted.size(), 0);
    try {
        outcome.received.wire_bytes =
            co_await m.receive(wanted, codec, [&](std::string_view bytes) { verify.feed(bytes); },
                               progress(offload_events::phase::receive, wanted.size()), job.progress_every);
        verify.finish();
        importer.finish();
    } catch (const failure& e) {
        throw failure(e.code(), fmt::format("receiving outputs: {}", e.what()));
    }
    outcome.received.paths = wanted.size();
    end(offload_events::phase::receive);
    for (const auto& out : wanted)
        if (!db.is_valid(out))
            throw failure(errc::remote_failed,
                          fmt::format("receiving outputs: '{}' did not arrive in the local store from '{}'", out, name));
}

}  // namespace

asio::awaitable<offload_outcome> offload_to_guix_machine(guix_offload_job job, offload_settings settings,
                                                         offload_events events) {
    guix_run r{{std::move(events)}, std::move(job), std::move(settings), {}, {}};
    co_await offload_failed(r.run(), r.outcome, r.job.drv_path, host_of(r.job.machine));
    co_return std::move(r.outcome);
}

}  // namespace ferry::hook
