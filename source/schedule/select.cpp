// g++ 12 reports a false -Wmismatched-new-delete on every Asio coroutine frame
// (awaitable_frame_base's class-specific operator new/delete).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "ferry/schedule/select.hpp"

#include <algorithm>

#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::schedule {

double score(const machine& m, const probe_result& r) noexcept {
    return m.speed / (1.0 + r.load_per_core());
}

std::string_view to_string(machine_status s) noexcept {
    switch (s) {
    case machine_status::chosen: return "chosen";
    case machine_status::usable: return "usable";
    case machine_status::busy: return "busy";
    case machine_status::backed_off: return "backed off";
    case machine_status::unreachable: return "unreachable";
    case machine_status::overloaded: return "overloaded";
    case machine_status::low_disk: return "low on disk space";
    case machine_status::not_probed: return "not probed";
    }
    return "unknown";
}

machine_status judge(const machine& m, const probe_result& r, std::uint64_t min_free_bytes) noexcept {
    // guix offload's node-load: 1-minute load / cores, capped at 1.0, compared with < threshold.
    if (m.overload_threshold && std::min(r.load_per_core(), 1.0) >= *m.overload_threshold)
        return machine_status::overloaded;
    // Unknown free space (df printed nothing) does not block a build.
    if (r.free_bytes && *r.free_bytes < min_free_bytes) return machine_status::low_disk;
    return machine_status::usable;
}

std::size_t selection::unreachable() const noexcept {
    return static_cast<std::size_t>(std::count_if(reports.begin(), reports.end(), [](const machine_report& r) {
        return r.status == machine_status::unreachable || r.status == machine_status::backed_off;
    }));
}

std::string unreachable_summary(const selection& s, const std::vector<std::string>& names) {
    std::string text;
    for (std::size_t i = 0; i < s.reports.size() && i < names.size(); ++i) {
        const auto& r = s.reports[i];
        if (r.status != machine_status::unreachable && r.status != machine_status::backed_off) continue;
        if (!text.empty()) text += "; ";
        text += fmt::format("{}: {}", names[i], r.message.empty() ? std::string(to_string(r.status)) : r.message);
        if (r.status == machine_status::backed_off) text += " (backed off)";
    }
    return text;
}

decision_facts facts_for(daemon_kind daemon, std::size_t configured, const selection& s,
                         bool can_build_locally) noexcept {
    decision_facts f;
    f.daemon = daemon;
    f.configured = configured;
    f.candidates = s.reports.size();
    f.unreachable = s.unreachable();
    f.chosen = s.chosen.has_value();
    f.can_build_locally = can_build_locally;
    return f;
}

asio::awaitable<selection> select_machine(std::vector<machine> candidates, run_remote_fn run_remote,
                                          select_options options) {
    const std::size_t n = candidates.size();
    selection sel;
    sel.reports.resize(n);
    std::vector<slot> slots(n);
    backoff_store backoff(options.state_dir, options.clock, options.backoff);
    probe_cache cache(options.state_dir, options.clock, options.cache_ttl);

    auto take = [&](std::size_t i, const probe_result& r, bool from_cache) {
        auto& rep = sel.reports[i];
        rep.probe = r;
        rep.from_cache = from_cache;
        rep.score = score(candidates[i], r);
        rep.status = judge(candidates[i], r, options.min_free_bytes);
    };

    // 1-3a: backoff, slots, cache. No network here.
    std::vector<std::size_t> to_probe;
    for (std::size_t i = 0; i < n; ++i) {
        const machine& m = candidates[i];
        if (auto b = backoff.read(m); b && b->failures > 0 && options.clock() < b->retry_at) {
            sel.reports[i].status = machine_status::backed_off;
            sel.reports[i].message = b->last_error;
            continue;
        }
        auto s = try_acquire_slot(options.state_dir, m);
        if (!s) {
            sel.reports[i].status = machine_status::busy;
            continue;
        }
        slots[i] = std::move(*s);
        if (auto cached = cache.fresh(m))
            take(i, *cached, true);
        else
            to_probe.push_back(i);
    }

    auto best_usable_score = [&] {
        double best = -1;
        for (auto& rep : sel.reports)
            if (rep.status == machine_status::usable) best = std::max(best, rep.score);
        return best;
    };
    // No machine can score above its speed (load 0), so once the best usable
    // score is at least the speed of every machine still unanswered, waiting
    // cannot improve the answer.
    auto settled = [&](const std::vector<std::size_t>& unanswered) {
        double best = best_usable_score();
        if (best < 0) return false;
        return std::all_of(unanswered.begin(), unanswered.end(),
                           [&](std::size_t i) { return candidates[i].speed <= best; });
    };

    // 3b: probe what the cache did not answer, unless the cache already settles it.
    if (!to_probe.empty() && !settled(to_probe)) {
        std::vector<machine> probed;
        for (auto i : to_probe) probed.push_back(candidates[i]);
        auto enough = [&](const std::vector<probe_outcome>& outs) {
            std::vector<std::size_t> unanswered;
            for (std::size_t k = 0; k < outs.size(); ++k) {
                auto i = to_probe[k];
                if (outs[k].state == probe_state::ok && sel.reports[i].status == machine_status::not_probed)
                    take(i, *outs[k].result, false);
                if (outs[k].state == probe_state::pending) unanswered.push_back(i);
            }
            return settled(unanswered);
        };
        auto outs = co_await probe_machines(std::move(probed), run_remote, options.probe, enough);
        for (std::size_t k = 0; k < outs.size(); ++k) {
            auto i = to_probe[k];
            const machine& m = candidates[i];
            auto& out = outs[k];
            if (out.state == probe_state::ok) {
                if (sel.reports[i].status == machine_status::not_probed) take(i, *out.result, false);
                backoff.record_success(m);
                cache.store(m, *out.result);
            } else if (out.state == probe_state::failed) {
                sel.reports[i].status = machine_status::unreachable;
                sel.reports[i].message = out.message;
                backoff.record_failure(m, out.message);
            }
        }
    }

    // 4: choose; ties go to the faster machine, then to the earlier one.
    for (std::size_t i = 0; i < n; ++i) {
        if (sel.reports[i].status != machine_status::usable) continue;
        if (!sel.chosen) {
            sel.chosen = i;
            continue;
        }
        auto& best = sel.reports[*sel.chosen];
        auto& rep = sel.reports[i];
        if (rep.score > best.score || (rep.score == best.score && candidates[i].speed > candidates[*sel.chosen].speed))
            sel.chosen = i;
    }
    if (sel.chosen) {
        sel.reports[*sel.chosen].status = machine_status::chosen;
        sel.held = std::move(slots[*sel.chosen]);
    }
    slots.clear();  // release every other slot now, before the caller's long transfer
    co_return sel;
}

}  // namespace ferry::schedule
