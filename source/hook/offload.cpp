#include "ferry/hook/offload.hpp"

#include <algorithm>
#include <exception>
#include <optional>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/core.h>

#include "ferry/util/error.hpp"

// What both daemons' flows share: settings, ssh options, names, the watchdog.
// The choice is in choose_machine.cpp, the Nix machine's offload in
// nix_machine_offload.cpp.
namespace ferry::hook {

using clock = std::chrono::steady_clock;

std::string megabytes(std::uint64_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6); }

asio::awaitable<bool> offload_failed(asio::awaitable<void> steps, offload_outcome& outcome, std::string_view drv,
                                     std::string_view machine) {
    std::optional<std::string> why;
    try {
        co_await std::move(steps);
    } catch (const std::exception& e) {
        why = e.what();
    }
    if (!why) co_return false;
    outcome.exit_code = 1;
    outcome.message = fmt::format("offload of '{}' to '{}' failed: {}", drv, machine, *why);
    co_return true;
}

offload_settings settings_from(const machines::settings& conf, schedule::daemon_kind daemon) {
    offload_settings s;
    s.state_dir = conf.state_dir;
    s.probe_deadline = conf.probe_deadline;
    s.probe_cache_ttl = conf.probe_cache;
    s.slot_wait = conf.slot_wait;
    s.connect_timeout = conf.connect_timeout;
    s.keepalive_interval = conf.keepalive_interval;
    s.min_free_bytes = conf.min_free_space;
    s.codec = codec::parse_codec_spec(conf.codec);
    s.compression_threads = conf.compression_threads;
    s.memory_budget = conf.memory_budget;
    s.import_streams = conf.parallel_import_streams;
    s.daemon = daemon;
    return s;
}

ssh::session_options session_options_for(const machines::machine& m, std::chrono::milliseconds connect_timeout) {
    ssh::session_options o;
    o.host = m.host;
    o.port = m.port;
    o.user = m.user;
    if (m.identity) o.identity = *m.identity;
    o.host_key = m.host_key;  // empty: known_hosts (the ssh layer never accepts any key)
    o.connect_timeout = connect_timeout;
    return o;
}

ssh::session_options session_options_for(const machines::machine& m, const offload_settings& settings) {
    auto o = session_options_for(m, settings.connect_timeout);
    o.keepalive_interval = settings.keepalive_interval;
    ssh::apply_ssh_command_options(settings.ssh_command_options, o);
    return o;
}

remembered_link::remembered_link(const offload_settings& settings, const machines::machine& m)
    : target_(schedule_machine_for(m)) {
    if (settings.state_dir.empty()) return;
    cache_.emplace(settings.state_dir);
    reusable_ = cache_->fresh(target_);
}

void remembered_link::after_send(double measured_bytes_per_s) {
    if (cache_ && !reusable_ && measured_bytes_per_s > 0) cache_->store(target_, measured_bytes_per_s);
}

schedule::machine schedule_machine_for(const machines::machine& m) {
    schedule::machine s;
    s.name = m.host;
    s.port = m.port.value_or(22);
    s.max_jobs = std::max(1u, m.max_jobs);
    s.speed = m.speed > 0 ? m.speed : 1.0;
    s.overload_threshold = m.overload_threshold;
    return s;
}

std::string machine_uri(const machines::machine& m) { return "ssh://" + m.display_name(); }

// Limits on the build, enforced here whatever the remote does (both daemons).
asio::awaitable<void> build_watchdog(watchdog_state& st, std::uint64_t max_silent_time, std::uint64_t timeout) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        auto deadline = clock::time_point::max();
        if (max_silent_time) deadline = std::min(deadline, st.last_output + std::chrono::seconds(max_silent_time));
        if (timeout) deadline = std::min(deadline, st.started + std::chrono::seconds(timeout));
        if (clock::now() >= deadline) {
            if (timeout && clock::now() >= st.started + std::chrono::seconds(timeout))
                st.why = fmt::format("timed out after {} seconds", timeout);
            else
                st.why = fmt::format("timed out after {} seconds of silence", max_silent_time);
            co_return;
        }
        timer.expires_at(deadline);
        co_await timer.async_wait(asio::use_awaitable);
    }
}

}  // namespace ferry::hook
