// g++ 12 reports a false -Wmismatched-new-delete on every Asio coroutine frame
// (awaitable_frame_base's class-specific operator new/delete).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <memory>

#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/schedule/probe.hpp"
#include "ferry/util/error.hpp"

namespace ferry::schedule {

namespace {

// Shared by the probe coroutines and the waiting one; lives as long as the
// last of them (cancelled probes may finish after probe_machines returned).
struct probe_run {
    explicit probe_run(asio::any_io_executor ex, std::size_t n)
        : wake(ex), outcomes(n), signals(new asio::cancellation_signal[n]) {}

    asio::steady_timer wake;  // cancelled to wake the waiting coroutine
    std::vector<probe_outcome> outcomes;
    std::unique_ptr<asio::cancellation_signal[]> signals;
    std::size_t pending = 0;
    bool finished = false;  // the caller has its answer: later completions are ignored
};

asio::awaitable<probe_outcome> probe_one(run_remote_fn run, machine m, std::string command) {
    probe_outcome out;
    try {
        remote_result r = co_await run(m, command);
        if (r.error) {
            out.state = probe_state::failed;
            out.error = r.error;
            out.message = fmt::format("probing {}: {}", m.name, r.message.empty() ? r.error.message() : r.message);
        } else if (r.exit_status != 0) {
            out.state = probe_state::failed;
            out.error = errc::remote_failed;
            out.message = fmt::format("probing {}: the probe command exited with status {}", m.name, r.exit_status);
        } else {
            out.result = parse_probe_output(r.output);
            out.state = probe_state::ok;
        }
    } catch (const failure& f) {
        out.state = probe_state::failed;
        out.error = f.code();
        out.message = fmt::format("probing {}: {}", m.name, f.what());
    } catch (const std::system_error& e) {
        out.state = probe_state::failed;
        out.error = e.code();
        out.message = fmt::format("probing {}: {}", m.name, e.what());
    } catch (const std::exception& e) {
        out.state = probe_state::failed;
        out.error = errc::remote_failed;
        out.message = fmt::format("probing {}: {}", m.name, e.what());
    }
    co_return out;
}

}  // namespace

asio::awaitable<std::vector<probe_outcome>> probe_machines(std::vector<machine> machines,
                                                           run_remote_fn run_remote, probe_options options,
                                                           probe_stop_fn enough) {
    auto executor = co_await asio::this_coro::executor;
    const std::size_t n = machines.size();
    auto run = std::make_shared<probe_run>(executor, n);
    if (n == 0) co_return std::vector<probe_outcome>{};

    const std::string command = probe_command(options.store_dir);
    const auto deadline = std::chrono::steady_clock::now() + options.deadline;
    run->pending = n;
    for (std::size_t i = 0; i < n; ++i) {
        asio::co_spawn(executor, probe_one(run_remote, machines[i], command),
                       asio::bind_cancellation_slot(
                           run->signals[i].slot(), [run, i](std::exception_ptr, probe_outcome out) {
                               if (run->finished) return;
                               if (out.state == probe_state::pending) {  // an exception escaped probe_one
                                   out.state = probe_state::failed;
                                   out.error = errc::remote_failed;
                                   out.message = "probe aborted";
                               }
                               run->outcomes[i] = std::move(out);
                               --run->pending;
                               run->wake.cancel();
                           }));
    }

    bool stopped_early = false;
    run->wake.expires_at(deadline);
    while (run->pending > 0) {
        if (enough && enough(run->outcomes)) {
            stopped_early = true;
            break;
        }
        if (std::chrono::steady_clock::now() >= deadline) break;
        // Completes at the deadline, or earlier when a probe cancels it.
        co_await run->wake.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    run->finished = true;

    for (std::size_t i = 0; i < n; ++i) {
        auto& out = run->outcomes[i];
        if (out.state != probe_state::pending) continue;
        run->signals[i].emit(asio::cancellation_type::terminal);
        if (stopped_early) {
            out.state = probe_state::cancelled;
        } else {
            out.state = probe_state::failed;
            out.error = errc::timed_out;
            out.message = fmt::format("probing {}: no answer within the probe deadline of {} ms", machines[i].name,
                                      options.deadline.count());
        }
    }
    co_return run->outcomes;
}

}  // namespace ferry::schedule
