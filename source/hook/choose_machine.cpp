// hook::choose_machine: candidates by system and features, one selection
// (schedule::select_machine: slots, concurrent probes, scoring), a brief wait for
// a slot when every candidate is busy, the daemon's reply and the decision log.
#include "ferry/hook/offload.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/core.h>

#include "ferry/remote/command.hpp"
#include "ferry/schedule/state.hpp"
#include "ferry/util/error.hpp"

namespace ferry::hook {

using clock = std::chrono::steady_clock;

namespace {

std::string describe_probe(const schedule::probe_result& r) {
    std::string s = fmt::format("{} cores, load {:.2f}", r.cores, r.load1);
    if (r.free_bytes) s += ", " + megabytes(*r.free_bytes) + " free";
    s += r.has_zstd ? ", zstd" : ", no zstd";
    return s;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
    std::string s;
    for (const auto& x : v) {
        if (!s.empty()) s += sep;
        s += x;
    }
    return s;
}

}  // namespace

namespace {

// One selection among the candidates (machines[index[c]] is candidate c). The
// probe runs over the same pinned-key ssh the offload uses; the chosen machine's
// connection is handed back in `kept` for the offload.
asio::awaitable<schedule::selection> select_once(const std::vector<machines::machine>& machines,
                                                 const std::vector<std::size_t>& index,
                                                 const std::vector<schedule::machine>& candidates,
                                                 const offload_settings& settings,
                                                 std::shared_ptr<ssh::session>& kept) {
    std::map<std::string, std::size_t> by_key;
    for (std::size_t c = 0; c < candidates.size(); ++c) by_key[schedule::machine_key(candidates[c])] = index[c];
    auto sessions = std::make_shared<std::map<std::size_t, std::shared_ptr<ssh::session>>>();
    auto timeout = settings.connect_timeout;
    schedule::run_remote_fn run = [&machines, &settings, by_key, timeout, sessions](const schedule::machine& m,
                                                                                  const std::string& command)
        -> asio::awaitable<schedule::remote_result> {
        const std::size_t i = by_key.at(schedule::machine_key(m));
        const auto& mm = machines.at(i);
        schedule::remote_result r;
        std::shared_ptr<ssh::session> session;
        try {
            session = std::make_shared<ssh::session>(co_await ssh::session::connect(session_options_for(mm, settings)));
        } catch (const failure& e) {
            r.error = e.code();
            r.message = e.what();
            co_return r;
        }
        auto outcome = co_await remote::run_command(*session, command, timeout);
        r.error = outcome.error;
        r.message = outcome.message;
        r.exit_status = outcome.status.code;
        r.output = std::move(outcome.out);
        if (!r.error && !outcome.status.success() && r.message.empty())
            r.message = outcome.status.describe() + ": " + outcome.err;
        if (!r.error) (*sessions)[i] = std::move(session);
        co_return r;
    };
    schedule::select_options o;
    o.state_dir = settings.state_dir;
    o.probe.store_dir = settings.remote_store_dir;
    o.probe.deadline = settings.probe_deadline;
    o.cache_ttl = settings.probe_cache_ttl;
    o.min_free_bytes = settings.min_free_bytes;
    auto sel = co_await schedule::select_machine(candidates, run, o);
    if (kept) kept->close();
    kept.reset();
    if (sel.chosen) {
        auto it = sessions->find(index[*sel.chosen]);
        if (it != sessions->end()) kept = std::move(it->second);
    }
    for (auto& [i, session] : *sessions)
        if (session) session->close();
    co_return sel;
}

bool any_busy(const schedule::selection& sel) {
    return std::any_of(sel.reports.begin(), sel.reports.end(),
                       [](const auto& r) { return r.status == schedule::machine_status::busy; });
}

// No candidate could take the build and some were only busy (every slot taken):
// polls those machines' slots until one comes free (true) or
// settings.slot_wait runs out (false). The slot is not kept: a fresh selection
// takes the best free one (another hook may win it first; then this one postpones).
asio::awaitable<bool> slot_came_free(const std::vector<schedule::machine>& candidates,
                                     const schedule::selection& sel, const offload_settings& settings) {
    constexpr auto poll = std::chrono::milliseconds(50);
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto until = clock::now() + settings.slot_wait;
    for (;;) {
        for (std::size_t c = 0; c < candidates.size(); ++c)
            if (sel.reports[c].status == schedule::machine_status::busy &&
                schedule::try_acquire_slot(settings.state_dir, candidates[c]))
                co_return true;
        const auto now = clock::now();
        if (now >= until) co_return false;
        timer.expires_after(std::min<clock::duration>(poll, until - now));
        co_await timer.async_wait(asio::use_awaitable);
    }
}

}  // namespace

asio::awaitable<machine_choice> choose_machine(const std::vector<machines::machine>& machines,
                                               const offload_request& request, const offload_settings& settings) {
    machine_choice choice;
    std::set<std::string> required(request.required_features.begin(), request.required_features.end());
    std::vector<std::size_t> index;  // candidates -> configured machines
    std::vector<schedule::machine> candidates;
    for (std::size_t i = 0; i < machines.size(); ++i) {
        const auto& m = machines[i];
        if (m.can_build(request.system, required)) {
            index.push_back(i);
            candidates.push_back(schedule_machine_for(m));
        } else {
            choice.decision_log.push_back(fmt::format(
                "ferry: {} ({}): cannot build {} [{}] (systems {}; features {}; mandatory {})", machine_uri(m),
                m.origin.str(), request.system, join(request.required_features, ","), join(m.systems, ","),
                join(std::vector<std::string>(m.supported_features.begin(), m.supported_features.end()), ","),
                join(std::vector<std::string>(m.mandatory_features.begin(), m.mandatory_features.end()), ",")));
        }
    }
    choice.candidates = candidates.size();

    schedule::selection sel;
    if (!candidates.empty()) sel = co_await select_once(machines, index, candidates, settings, choice.session);
    auto facts = schedule::facts_for(settings.daemon, machines.size(), sel, request.can_build_locally);
    choice.reply = schedule::decide(facts);
    // Postponed, with some candidate only busy (every slot taken; the others down,
    // overloaded or low on disk): the daemon would retry only after its poll
    // interval (5 s by default), while builds often end sooner. Wait briefly for a
    // slot, unless a recent wait ran out (long builds: do not hold the daemon up again).
    if (choice.reply == protocol::hook_reply::postpone && settings.slot_wait.count() > 0 &&
        !settings.state_dir.empty() && any_busy(sel)) {
        schedule::slot_wait_memory memory(settings.state_dir);
        if (!memory.recently_missed()) {
            const auto waited_from = clock::now();
            const bool came_free = co_await slot_came_free(candidates, sel, settings);
            const double waited = std::chrono::duration<double>(clock::now() - waited_from).count();
            if (came_free) {
                choice.decision_log.push_back(fmt::format("ferry: a slot came free after {:.2f} s", waited));
                sel = co_await select_once(machines, index, candidates, settings, choice.session);
                facts = schedule::facts_for(settings.daemon, machines.size(), sel, request.can_build_locally);
                choice.reply = schedule::decide(facts);
            } else {
                memory.record_miss();
                choice.decision_log.push_back(fmt::format(
                    "ferry: no slot came free within {:.1f} s; hooks postpone at once for a while", waited));
            }
        }
    }
    for (std::size_t c = 0; c < candidates.size(); ++c) {
        const auto& rep = sel.reports[c];
        std::string line = fmt::format("ferry: {}: {}", machine_uri(machines[index[c]]), to_string(rep.status));
        if (rep.probe)
            line += fmt::format(" ({}{}; score {:.3f}, speed {})", describe_probe(*rep.probe),
                                rep.from_cache ? ", cached" : "", rep.score, candidates[c].speed);
        if (!rep.message.empty()) line += ": " + rep.message;
        choice.decision_log.push_back(std::move(line));
    }

    if (choice.reply == protocol::hook_reply::accept && sel.chosen) {
        choice.chosen = index[*sel.chosen];
        choice.slot = std::move(sel.held);
        choice.probe = sel.reports[*sel.chosen].probe;
        choice.summary = fmt::format("ferry: building {} on {} (slot {}; best of {} candidate{})", request.drv_path,
                                     machine_uri(machines[*choice.chosen]), choice.slot.index(), candidates.size(),
                                     candidates.size() == 1 ? "" : "s");
    } else {
        if (choice.session) choice.session->close();
        choice.session.reset();
        choice.summary = fmt::format(
            "ferry: {} for {} ({} [{}]): {} machine{} configured, {} can build it, {} unreachable{}",
            protocol::reply_word(choice.reply), request.drv_path, request.system,
            join(request.required_features, ","), machines.size(), machines.size() == 1 ? "" : "s",
            candidates.size(), facts.unreachable,
            request.can_build_locally ? "; the daemon can build it locally" : "");
        // Name every host that is down and why: a postponement is never silent.
        std::vector<std::string> names;
        for (auto i : index) names.push_back(machine_uri(machines[i]));
        if (auto down = schedule::unreachable_summary(sel, names); !down.empty()) choice.summary += " (" + down + ")";
    }
    co_return choice;
}

}  // namespace ferry::hook
