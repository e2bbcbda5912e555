// hook::offload_to_nix_machine: one offload to a machine driven through
// `nix-store --serve --write` (the steps are listed in hook/offload.hpp).
#include "ferry/hook/offload.hpp"

#include <algorithm>
#include <exception>
#include <iterator>
#include <map>
#include <set>

#include <asio/co_spawn.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/core.h>

#include "ferry/remote/build_machine.hpp"
#include "ferry/remote/command.hpp"
#include "ferry/schedule/state.hpp"
#include "ferry/schedule/upload_lock.hpp"
#include "ferry/ssh/quote.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/derivation.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/temp_sweep.hpp"
#include "ferry/transfer/receive.hpp"
#include "ferry/transfer/send.hpp"
#include "ferry/util/error.hpp"

namespace ferry::hook {

namespace serve = protocol::serve;
using clock = std::chrono::steady_clock;

namespace {

bool is_loopback(const std::string& host) {
    return host == "localhost" || host == "::1" || host.starts_with("127.");
}

codec::codec_spec pick_codec(const offload_settings& settings, const machines::machine& m,
                             const std::optional<schedule::probe_result>& probe) {
    if (!settings.codec.is_auto()) return settings.codec;
    // Without link figures the auto rule has nothing to weigh. Loopback is memory
    // speed: compressing only costs CPU (measured: zstd:1 0.4 s slower per 100 MB
    // on 2 busy cores). Elsewhere zstd:1 costs little CPU and wins on slow links.
    if (is_loopback(m.host)) return {codec::codec_kind::none, 0};
    if (probe && probe->has_zstd) return {codec::codec_kind::zstd, 1};
    return {codec::codec_kind::none, 0};
}

// Codec auto with a sizeable send (auto_measure_threshold): measured by the
// transfer layer, which also adapts the zstd level while streaming.
codec::codec_spec pick_send_codec(const offload_settings& settings, const offload_job& job,
                                  std::uint64_t missing_bytes) {
    if (settings.codec.is_auto() && missing_bytes >= auto_measure_threshold) return settings.codec;
    return pick_codec(settings, job.machine, job.probe);
}

// "; zstd level 1->2 at 1.3 s (stream 1), ..." or "".
std::string level_steps(const transfer::transfer_report& r) {
    std::string out;
    for (const auto& c : r.level_changes)
        out += fmt::format("{}{}->{} at {:.1f} s (stream {})", out.empty() ? "; zstd level " : ", ", c.from, c.to,
                           std::chrono::duration<double>(c.at).count(), c.stream);
    return out;
}

// The machine's own record of each output (QueryPathInfos): what arrives is
// checked against it (an export bundle carries no hash), and an output the build
// did not leave valid there is named before any export runs.
asio::awaitable<std::map<std::string, store::path_info>> remote_output_infos(remote::nix_build_machine& m,
                                                                             const std::vector<std::string>& outputs,
                                                                             const std::string& uri) {
    auto reported = co_await m.control().query_path_infos(outputs);
    std::map<std::string, store::path_info> infos;
    for (auto& r : reported) {
        store::path_info p;
        p.path = r.path;
        p.nar_hash = r.nar_hash;
        p.nar_size = r.nar_size;
        p.deriver = r.deriver;
        p.references = std::move(r.references);
        infos.emplace(r.path, std::move(p));
    }
    for (const auto& o : outputs)
        if (!infos.count(o))
            throw failure(errc::remote_failed,
                          fmt::format("receiving outputs: {} is not valid on {} after its build", o, uri));
    co_return infos;
}

struct offload_run : event_reporter {
    offload_job job;
    offload_settings settings;
    offload_outcome outcome;

    asio::awaitable<void> run();
    asio::awaitable<void> steps(remote::nix_build_machine& m, ssh::session& s);
};

asio::awaitable<void> offload_run::run() {
    const std::string uri = machine_uri(job.machine);
    start(offload_events::phase::connect, 0, 0);
    std::shared_ptr<ssh::session> kept = std::move(job.session);
    if (!kept || !kept->is_open())
        kept = std::make_shared<ssh::session>(
            co_await ssh::session::connect(session_options_for(job.machine, settings)));
    ssh::session& session = *kept;
    remote::nix_remote_options ro;
    if (job.machine.remote_program) ro.remote_program = *job.machine.remote_program;
    if (job.machine.remote_store) ro.remote_store = *job.machine.remote_store;
    ro.store_dir = settings.remote_store_dir;
    ro.state_dir = settings.remote_state_dir;
    auto machine = co_await remote::nix_build_machine::open(session, ro);
    end(offload_events::phase::connect);
    say(log_level::talkative, fmt::format("ferry: connected to {} (serve protocol 0x{:x})", uri,
                                          machine->control().server_version()));
    std::exception_ptr error;
    try {
        co_await steps(*machine, session);
    } catch (...) {
        error = std::current_exception();
    }
    // Always: the remote GC roots go, the connection closes (hang-up kills a build).
    co_await machine->finish();
    if (machine->roots().active()) {
        // The connection died before the roots could go: one more try on a fresh one.
        auto dir = machine->roots().directory();
        auto r = co_await remote::run_command(session_options_for(job.machine, settings),
                                              "rm -rf " + ssh::shell_quote(dir), std::chrono::seconds(15));
        if (r.ok())
            say(log_level::talkative, fmt::format("ferry: removed the GC roots {} on {} over a new connection", dir, uri));
        else
            say(log_level::error, fmt::format("ferry: could not remove the GC roots {} on {}: {}", dir, uri,
                                              r.message.empty() ? r.status.describe() + ": " + r.err : r.message));
    }
    if (error) std::rethrow_exception(error);
}

asio::awaitable<void> offload_run::steps(remote::nix_build_machine& m, ssh::session& s) {
    const std::string uri = machine_uri(job.machine);
    auto config = job.local_store ? *job.local_store : store::store_config::from_environment(job.local_flavour);
    store::store_database db(config);
    auto drv = store::read_derivation(job.drv_path);

    // 2. inputs: protect and ask (one round trip), then send what is missing.
    auto missing = co_await m.protect_and_find_missing(job.inputs, job.builders_use_substitutes);
    say(log_level::chatty, fmt::format("ferry: {} inputs protected on {}, {} missing", job.inputs.size(), uri,
                                       missing.size()));
    if (job.builders_use_substitutes)
        say(log_level::talkative, fmt::format("ferry: {} substituted what it could (builders-use-substitutes); "
                                              "{} of {} inputs still missing",
                                              uri, missing.size(), job.inputs.size()));
    // Another hook may be sending the same paths to this machine right now: take
    // the machine's upload lock (released before the build), then ask again.
    schedule::upload_lock upload;
    if (!missing.empty() && !settings.state_dir.empty()) {
        const auto target = schedule_machine_for(job.machine);
        upload = co_await schedule::acquire_upload_lock(settings.state_dir, target, job.drv_path);
        if (upload.contended()) say(log_level::info, schedule::describe_wait(upload, uri));
        missing = co_await m.missing_paths(missing);  // what is valid there stays (protected)
        say(log_level::chatty, fmt::format("ferry: upload lock for {} taken, {} inputs still missing", uri,
                                           missing.size()));
    }
    const std::uint64_t missing_bytes = db.nar_size_total(missing);
    auto codec = pick_send_codec(settings, job, missing_bytes);
    say(log_level::talkative,
        fmt::format("ferry: {} of {} input paths missing on {} ({}), sending with {}", missing.size(),
                    job.inputs.size(), uri, megabytes(missing_bytes), codec::to_string(codec)));
    if (!missing.empty()) {
        start(offload_events::phase::send, missing.size(), missing_bytes);
        transfer::send_options so;
        so.codec = codec;
        so.compress_threads = settings.compression_threads;
        so.memory_budget = settings.memory_budget;
        if (settings.import_streams) so.streams = settings.import_streams;
        std::optional<remembered_link> link;
        if (codec.is_auto()) so.link_bytes_per_s = link.emplace(settings, job.machine).reusable();
        so.remote = m.options();
        so.server_version = m.control().server_version();
        if (events.progress)
            so.on_progress = [this](const transfer::progress& p) { events.progress(offload_events::phase::send, p); };
        try {  // the layers below name host and command; the step is said here
            outcome.sent = co_await transfer::send_paths(s, db, missing, so);
        } catch (const failure& e) {
            throw failure(e.code(), fmt::format("sending inputs: {}", e.what()));
        }
        end(offload_events::phase::send);
        if (codec.is_auto()) {
            // What auto resolved to serves the outputs too (the same link back).
            codec = outcome.sent.codec.empty() ? pick_codec(settings, job.machine, job.probe)
                                               : codec::parse_codec_spec(outcome.sent.codec);
            link->after_send(outcome.sent.link_bytes_per_s);
            say(log_level::talkative,
                fmt::format("ferry: auto (chosen in {:.2f} s): {}",
                            std::chrono::duration<double>(outcome.sent.choosing).count(), outcome.sent.auto_reason));
        }
        say(log_level::talkative, fmt::format("ferry: sent {} paths, {} ({} on the wire) in {:.2f} s (busy: {}){}",
                                              outcome.sent.paths, megabytes(outcome.sent.nar_bytes),
                                              megabytes(outcome.sent.wire_bytes), outcome.sent.seconds(),
                                              outcome.sent.busy_summary(), level_steps(outcome.sent)));
    }
    upload.release();  // the next hook's upload to this machine may start

    // 3. build, under ferry's own watchdog.
    remote::build_request req;
    req.drv_path = job.drv_path;
    req.drv = remote::to_basic_derivation(drv, drv.input_drvs.empty() ? drv.input_srcs : job.inputs);
    req.options.max_silent_time = job.max_silent_time;
    req.options.build_timeout = job.build_timeout;
    req.options.max_log_size = job.max_log_size;
    req.options.keep_failed = job.keep_failed;
    req.options.enforce_determinism = true;
    start(offload_events::phase::build, 0, 0);
    watchdog_state wd;
    auto sink = [this, &wd](std::string_view bytes) -> asio::awaitable<void> {
        wd.last_output = clock::now();
        if (events.log) co_await events.log(bytes);
    };
    auto built = co_await build_under_watchdog(m.build(std::move(req), sink), wd, job.max_silent_time,
                                               job.build_timeout);
    outcome.build_time = clock::now() - wd.started;
    end(offload_events::phase::build);
    if (!built) {
        outcome.exit_code = 101;
        outcome.message = fmt::format("build of '{}' on '{}' {} (killed by ferry)", job.drv_path, uri, wd.why);
        co_return;
    }
    const auto& result = *built;
    if (!serve::succeeded(result.status)) {
        outcome.exit_code = serve::hook_exit_code(result.status);
        outcome.message = fmt::format("build of '{}' on '{}' failed: {}{}", job.drv_path, uri,
                                      serve::to_string(result.status),
                                      result.error_msg.empty() ? "" : ": " + result.error_msg);
        co_return;
    }

    // 4. outputs: the wanted ones not valid here.
    std::vector<std::string> wanted;
    for (const auto& name : job.wanted_outputs) {
        const auto* o = drv.output(name);
        if (!o || o->path.empty())
            throw failure(errc::unsupported,
                          fmt::format("{}: output '{}' has no known path (content-addressed outputs are not "
                                      "supported)",
                                      job.drv_path, name));
        if (!db.is_valid(o->path)) wanted.push_back(o->path);
    }
    if (!wanted.empty()) {
        co_await m.protect(wanted);
        start(offload_events::phase::receive, wanted.size(), 0);
        // A hook killed mid-import left its temporary: sweep it before adding ours.
        if (auto swept = store::sweep_dead_import_temporaries(db); swept.temporaries)
            say(log_level::talkative, fmt::format("ferry: removed {} import temporaries of killed processes",
                                                  swept.temporaries));
        store::temp_roots roots(config);
        transfer::receive_options ro;
        ro.codec = codec;
        ro.memory_budget = settings.memory_budget;
        ro.remote = m.options();
        ro.locked_by_caller.insert(wanted.begin(), wanted.end());
        ro.expected = co_await remote_output_infos(m, wanted, uri);
        if (events.progress)
            ro.on_progress = [this](const transfer::progress& p) {
                events.progress(offload_events::phase::receive, p);
            };
        try {
            outcome.received = co_await transfer::receive_paths(s, db, roots, wanted, ro);
        } catch (const failure& e) {
            throw failure(e.code(), fmt::format("receiving outputs: {}", e.what()));
        }
        end(offload_events::phase::receive);
        say(log_level::talkative,
            fmt::format("ferry: received {} paths, {} ({} on the wire) in {:.2f} s", outcome.received.paths,
                        megabytes(outcome.received.nar_bytes), megabytes(outcome.received.wire_bytes),
                        outcome.received.seconds()));
        for (const auto& p : wanted)
            if (!db.is_valid(p))
                throw failure(errc::remote_failed,
                              fmt::format("output {} is not valid locally after copying it from {}", p, uri));
    }
    outcome.exit_code = 0;
}

}  // namespace

asio::awaitable<offload_outcome> offload_to_nix_machine(offload_job job, offload_settings settings,
                                                        offload_events events) {
    offload_run r{{std::move(events)}, std::move(job), std::move(settings), {}};
    if (co_await offload_failed(r.run(), r.outcome, r.job.drv_path, machine_uri(r.job.machine))) {
        // The machine may not be what its cached probe says any more (a full disk):
        // the next decision probes it afresh.
        if (!r.settings.state_dir.empty())
            schedule::probe_cache(r.settings.state_dir).forget(schedule_machine_for(r.job.machine));
    }
    co_return std::move(r.outcome);
}

}  // namespace ferry::hook
