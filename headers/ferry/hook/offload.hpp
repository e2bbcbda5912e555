// One offload, daemon-agnostic: choose a machine, then send -> build -> receive
// -> exit status. The daemon front ends (nix_hook.hpp for nix-daemon's binary
// protocol, guix_offload.hpp for guix-daemon's text protocol) own the conversation
// with the daemon; everything here only reports through an `offload_events`
// object, so the same flow serves both.
//
//   auto choice = co_await choose_machine(machines, request, options);   // decline / postpone / accept
//   if (choice.reply == hook_reply::accept)
//       auto outcome = co_await offload_to_nix_machine(job, events);      // exit status + reason
//
// Choice (schedule layer): candidates = machines that can build the system and
// features (machines::machine::can_build); slots, probes and scoring by
// schedule::select_machine; the reply by schedule::decide. The decision log (which
// machines were considered, their probe figures, why the winner won) is handed to
// events as lines at log_level::talkative (machines and figures) / chatty (details).
//
// Offload to a Nix build machine (`nix-store --serve --write`, what Nix's own
// build-remote speaks), in this order, as build-remote.cc does:
//   1. connect (pinned host key from the machine line, else known_hosts; never
//      accept-any), open the serve connection;
//   2. protect the inputs from the remote GC (temp roots of the serve process,
//      nix_build_machine::protect), ask which are missing (with the substitute
//      flag under builders-use-substitutes),
//      send those (transfer::send_paths) — only the inputs: BuildDerivation does not
//      need the .drv closure on the remote;
//   3. BuildDerivation with the BasicDerivation whose inputSrcs is the whole input
//      set when the derivation has inputDrvs; the log streams to events.log as it
//      comes; max-silent-time and timeout are ENFORCED here (a watchdog cancels the
//      build, which closes the channel: the remote's hang-up monitor kills the
//      builder) as well as passed to the remote;
//   4. protect the outputs, receive the missing ones (transfer::receive_paths) and
//      register them, passing them as locked by the caller (the daemon holds their
//      locks: locking them again would deadlock);
//   5. always: close the connection (which drops the temp roots).
// Exit status (the daemons' convention): 0 built and outputs valid locally; 100
// the remote build failed permanently; 101 timed out (remote or ferry's
// watchdog); 1 anything else (lost connection, disk full, missing tools, ...).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/codec/memory_budget.hpp"
#include "ferry/machines/ferry_conf.hpp"
#include "ferry/machines/machine.hpp"
#include "ferry/protocol/hook_reply.hpp"
#include "ferry/schedule/decision.hpp"
#include "ferry/schedule/probe.hpp"
#include "ferry/schedule/select.hpp"
#include "ferry/schedule/slot.hpp"
#include "ferry/schedule/state.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/ssh/ssh_options.hpp"
#include "ferry/store/store_path.hpp"
#include "ferry/transfer/report.hpp"
#include "ferry/util/error.hpp"

namespace ferry::hook {

// Nix's verbosity levels (0 = error ... 7 = vomit); the Guix front end maps them
// to its own lines.
enum class log_level : unsigned { error = 0, warn, notice, info, talkative, chatty, debug, vomit };

// What the daemon asked for.
struct offload_request {
    std::string system;
    std::string drv_path;
    std::vector<std::string> required_features;
    bool can_build_locally = false;  // the daemon could build it itself now
};

// ferry's own knobs for one hook process (ferry.conf + environment).
struct offload_settings {
    std::filesystem::path state_dir;  // slots <state>/offload, ferry files <state>/ferry
    std::chrono::milliseconds probe_deadline{3000};
    std::chrono::milliseconds probe_cache_ttl{5000};
    // Every candidate busy and the reply would be postpone: wait this long for a
    // slot first (schedule::slot_wait_memory says when not to). 0 = never wait.
    std::chrono::milliseconds slot_wait{0};
    std::chrono::milliseconds connect_timeout{10000};
    std::chrono::milliseconds keepalive_interval{30000};  // ferry.conf keepalive-interval
    std::uint64_t min_free_bytes = 100ull << 20;  // skip machines with less free store space
    std::string remote_store_dir = "/nix/store";  // probed with df; the remote's store
    std::string remote_state_dir = "/nix/var/nix";
    codec::codec_spec codec{};  // auto: zstd:1 when the remote has zstd, else none
    // ferry.conf compression-threads, memory-budget, parallel-import-streams
    // (0 = the transfer layer's defaults: all local cores, 2 streams).
    unsigned compression_threads = 0;
    std::uint64_t memory_budget = codec::default_memory_budget;
    unsigned import_streams = 0;
    schedule::daemon_kind daemon = schedule::daemon_kind::nix;
    // NIX_SSHOPTS as far as ferry honours it (ssh/ssh_options.hpp): applied after
    // the machine line's own values.
    ssh::ssh_command_options ssh_command_options;
};

// The knobs both front ends take from ferry.conf (a machine's section or the
// global one); each front end then sets its daemon's own (store, state, ssh).
offload_settings settings_from(const machines::settings& conf, schedule::daemon_kind daemon);

// How to reach one machine over ssh (pinned key when the machine line has one).
ssh::session_options session_options_for(const machines::machine& m, std::chrono::milliseconds connect_timeout);
// The same with settings.connect_timeout and settings.ssh_command_options applied:
// what the hook's probes and offloads use.
ssh::session_options session_options_for(const machines::machine& m, const offload_settings& settings);
// The scheduler's record of a machine (slot files, backoff key).
schedule::machine schedule_machine_for(const machines::machine& m);
// "ssh://user@host:port": what the daemon shows ("building X on Y").
std::string machine_uri(const machines::machine& m);

// The link speed codec auto may reuse for a machine (schedule::link_cache under
// settings.state_dir; none without a state dir), and renewing it: only a new
// measurement renews the record, a reused one would never expire. Both front ends
// (Nix and Guix machines) go through this.
class remembered_link {
public:
    remembered_link(const offload_settings& settings, const machines::machine& m);
    std::optional<double> reusable() const { return reusable_; }  // bytes/s; nullopt: measure
    void after_send(double measured_bytes_per_s);  // 0 = nothing was measured
private:
    std::optional<schedule::link_cache> cache_;
    schedule::machine target_;
    std::optional<double> reusable_;
};

struct machine_choice {
    protocol::hook_reply reply = protocol::hook_reply::decline;
    std::optional<std::size_t> chosen;            // index into the configured machines
    schedule::slot slot;                          // held while the offload runs
    std::optional<schedule::probe_result> probe;  // the chosen machine's figures
    // The probe's connection to the chosen machine, kept open for the offload
    // (one ssh handshake less); null when the probe came from the cache. It lives
    // on the executor choose_machine ran on: keep running that executor (or drop it).
    std::shared_ptr<ssh::session> session;
    std::size_t candidates = 0;
    std::string summary;                          // one line: why this reply
    std::vector<std::string> decision_log;        // one line per machine considered
};

// The decision for one request. Never contacts a machine for a request no
// machine can build. Throws only for local trouble (state directory).
asio::awaitable<machine_choice> choose_machine(const std::vector<machines::machine>& machines,
                                               const offload_request& request, const offload_settings& settings);

// Codec auto with a send of at least this many NAR bytes: the transfer layer
// measures the link (or takes a recent measurement from the link cache) and
// weighs the codecs on a sample (codec/auto_rule.hpp). Below it, ~0.5 s of
// measuring is not worth it and a fixed rule decides.
constexpr std::uint64_t auto_measure_threshold = std::uint64_t{64} << 20;

// "12.3 MB" (10^6 bytes): how the hooks' messages show sizes.
std::string megabytes(std::uint64_t bytes);

// What an offload reports while it runs. Every member may be empty.
struct offload_events {
    // Build log bytes as they come (fd 4 for both daemons). Awaited: back-pressure.
    std::function<asio::awaitable<void>(std::string_view)> log;
    // A human message at a level (errors, the reason of a failure, steps).
    std::function<void(log_level, std::string_view)> message;
    enum class phase { connect, send, build, receive };
    // A phase starts (total paths/bytes when known) and ends.
    std::function<void(phase, std::size_t paths, std::uint64_t bytes)> phase_started;
    std::function<void(phase)> phase_ended;
    // Transfer progress within send / receive.
    std::function<void(phase, const transfer::progress&)> progress;
};

// What an offload tells its events, each call a no-op when that event is unset.
struct event_reporter {
    offload_events events;

    void say(log_level level, std::string_view text) const {
        if (events.message) events.message(level, text);
    }
    void start(offload_events::phase p, std::size_t paths, std::uint64_t bytes) const {
        if (events.phase_started) events.phase_started(p, paths, bytes);
    }
    void end(offload_events::phase p) const {
        if (events.phase_ended) events.phase_ended(p);
    }
};

struct offload_job {
    machines::machine machine;
    std::optional<schedule::probe_result> probe;  // from the choice (tools, cores)
    std::shared_ptr<ssh::session> session;        // from the choice; null or closed: connect anew
    std::string drv_path;
    std::vector<std::string> inputs;          // closure of the inputs (no .drv), from the daemon
    std::vector<std::string> wanted_outputs;  // output NAMES
    std::uint64_t max_silent_time = 0;        // seconds, 0 = none
    std::uint64_t build_timeout = 0;          // seconds, 0 = none
    std::uint64_t max_log_size = 0;
    bool keep_failed = false;
    // Nix's builders-use-substitutes: the machine substitutes missing inputs from
    // its own substituters first (QueryValidPaths with substitute = 1, as
    // build-remote's copyPaths does); ferry sends only what is still missing.
    bool builders_use_substitutes = false;
    store::store_flavour local_flavour = store::store_flavour::nix;
    // The local store when it is not the one Nix's variables name (the Guix front
    // end: NIX_STORE_DIR, GUIX_STATE_DIRECTORY, GUIX_DATABASE_DIRECTORY).
    std::optional<store::store_config> local_store;
};

struct offload_outcome {
    int exit_code = 1;    // 0, 100, 101 or 1
    std::string message;  // why, when not 0
    transfer::transfer_report sent, received;
    std::chrono::nanoseconds build_time{0};
};

// Awaits an offload's steps (both machines' flows). If they throw, the outcome
// becomes exit status 1 with "offload of 'DRV' to 'MACHINE' failed: <the
// exception's text>" (every step's failure names its step and machine), and the
// result is true.
asio::awaitable<bool> offload_failed(asio::awaitable<void> steps, offload_outcome& outcome, std::string_view drv,
                                     std::string_view machine);

// Runs the whole offload on a Nix build machine. Never throws: every failure
// becomes an outcome with exit_code 1 (or 100/101) and a message naming the host
// and the step. The remote GC roots are removed on every path out.
asio::awaitable<offload_outcome> offload_to_nix_machine(offload_job job, offload_settings settings,
                                                        offload_events events);

// ferry's own limits on a remote build (both daemons' flows): the build's log sink
// sets last_output as bytes come; build_watchdog completes once a limit is passed
// (0 = none; never with both 0), with `why` ("timed out after N seconds [of
// silence]"). Run it beside the build in a parallel group (wait_for_one) so that
// its completion cancels the build.
struct watchdog_state {
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point last_output = std::chrono::steady_clock::now();
    std::string why;
};
asio::awaitable<void> build_watchdog(watchdog_state& st, std::uint64_t max_silent_time, std::uint64_t timeout);

// Runs a remote build beside build_watchdog(wd, max_silent_time, timeout); the
// first to finish cancels the other (a cancelled build closes its channel, which
// ends the remote builder). nullopt: the watchdog fired (wd.why says why). A
// failure of the build is rethrown with the step named ("building: ...").
template <class Result>
asio::awaitable<std::optional<Result>> build_under_watchdog(asio::awaitable<Result> build, watchdog_state& wd,
                                                            std::uint64_t max_silent_time, std::uint64_t timeout) {
    auto ex = co_await asio::this_coro::executor;
    auto group = asio::experimental::make_parallel_group(
        asio::co_spawn(ex, std::move(build), asio::experimental::deferred),
        asio::co_spawn(ex, build_watchdog(wd, max_silent_time, timeout), asio::experimental::deferred));
    auto [order, build_error, result, watchdog_error] =
        co_await group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)watchdog_error;
    if (order[0] == 1) co_return std::nullopt;
    if (build_error) {
        try {  // the layers below name host and command; the step is said here
            std::rethrow_exception(build_error);
        } catch (const failure& e) {
            throw failure(e.code(), "building: " + std::string(e.what()));
        }
    }
    co_return std::move(result);
}

}  // namespace ferry::hook
