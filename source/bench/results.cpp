#include "ferry/bench/results.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "ferry/util/error.hpp"

namespace ferry::bench {
namespace {

double mb_per_s(std::uint64_t bytes, double seconds) { return seconds > 0 ? bytes / 1e6 / seconds : 0; }

// Keeps JSON numbers finite and readable (3 decimals are plenty for seconds and MB/s).
double round3(double v) { return std::round(v * 1000) / 1000; }

}  // namespace

double median(std::vector<double> values) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    std::size_t n = values.size();
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

summary summarize(const row& r) {
    if (r.runs.empty()) throw failure(errc::bad_input, fmt::format("bench row {} {}: no runs", r.codec, r.direction));
    std::vector<double> seconds;
    for (const auto& run : r.runs) seconds.push_back(run.seconds);
    // The run whose time is the (lower) median supplies the other figures, so they
    // belong together (bytes, CPU and busy times of one and the same transfer).
    std::vector<std::size_t> order(r.runs.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return r.runs[a].seconds < r.runs[b].seconds; });
    const run_figures& m = r.runs[order[(order.size() - 1) / 2]];

    summary s;
    s.median_seconds = median(seconds);
    s.min_seconds = *std::min_element(seconds.begin(), seconds.end());
    s.max_seconds = *std::max_element(seconds.begin(), seconds.end());
    // Rates over the median time (the runs move the same bytes), so the columns agree.
    s.closure_mb_s = mb_per_s(m.closure_bytes, s.median_seconds);
    s.wire_mb_s = mb_per_s(m.wire_bytes, s.median_seconds);
    s.ratio = m.wire_bytes ? static_cast<double>(m.closure_bytes) / m.wire_bytes : 0;
    s.cpu_percent = m.seconds > 0 ? 100.0 * m.cpu_seconds / m.seconds : 0;
    double top = -1;
    for (const auto& st : m.stages) {
        double busy = m.seconds > 0 ? 100.0 * st.busy_seconds / m.seconds : 0;
        s.stages[st.name] = {st.bytes, busy};
        if (busy > top) {
            top = busy;
            s.bottleneck = st.name;
        }
    }
    if (!m.bottleneck.empty()) s.bottleneck = m.bottleneck;
    s.level_changes = m.level_changes;
    return s;
}

double compare_ratio(const compare_result& c) {
    double nix = median(c.runs);
    return c.vs_seconds > 0 ? nix / c.vs_seconds : 0;
}

nlohmann::json to_json(const bench_result& r, const std::string& ferry_version) {
    using nlohmann::json;
    json doc = {{"ferry_version", ferry_version},
                {"machine", r.machine},
                {"closure", {{"paths", r.closure_paths}, {"bytes", r.closure_bytes}}},
                {"results", json::array()}};
    for (const auto& row : r.rows) {
        summary s = summarize(row);
        json runs = json::array();
        for (const auto& run : row.runs) runs.push_back({{"seconds", round3(run.seconds)}, {"wire_bytes", run.wire_bytes}});
        json stages = json::object();
        for (const auto& [name, v] : s.stages)
            stages[name] = {{"bytes", v.first}, {"busy_percent", round3(v.second)}};
        json item = {{"codec", row.codec},
                     {"direction", row.direction},
                     {"runs", runs},
                     {"median_seconds", round3(s.median_seconds)},
                     {"min_seconds", round3(s.min_seconds)},
                     {"max_seconds", round3(s.max_seconds)},
                     {"closure_mb_s", round3(s.closure_mb_s)},
                     {"wire_mb_s", round3(s.wire_mb_s)},
                     {"ratio", round3(s.ratio)},
                     {"cpu_percent", round3(s.cpu_percent)},
                     {"stages", stages},
                     {"bottleneck", s.bottleneck},
                     {"chosen", row.chosen.empty() ? row.codec : row.chosen}};
        if (!row.auto_reason.empty()) item["auto_reason"] = row.auto_reason;
        if (!s.level_changes.empty()) {
            json changes = json::array();
            for (const auto& c : s.level_changes)
                changes.push_back({{"at_seconds", round3(c.at_seconds)}, {"stream", c.stream}, {"from", c.from},
                                   {"to", c.to}});
            item["level_changes"] = std::move(changes);
        }
        doc["results"].push_back(std::move(item));
    }
    if (r.compare) {
        json runs = json::array();
        for (double s : r.compare->runs) runs.push_back(round3(s));
        doc["compare"] = {{"tool", r.compare->tool},
                          {"median_seconds", round3(median(r.compare->runs))},
                          {"ratio", round3(compare_ratio(*r.compare))},
                          {"runs", runs},
                          {"vs_codec", r.compare->vs_codec}};
    }
    return doc;
}

std::string format_table(const bench_result& r) {
    std::string out = fmt::format("machine: {}\nclosure: {} paths, {:.1f} MB\n\n", r.machine, r.closure_paths,
                                  r.closure_bytes / 1e6);
    out += fmt::format("{:<20} {:<7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6} {:>6}  {:<11} {}\n", "codec", "dir",
                       "median s", "min s", "max s", "closure", "wire", "ratio", "cpu%", "bottleneck",
                       "busy % per stage");
    out += fmt::format("{:<20} {:<7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6} {:>6}  {:<11}\n", "", "", "", "", "",
                       "MB/s", "MB/s", "", "", "");
    for (const auto& row : r.rows) {
        summary s = summarize(row);
        std::string codec = row.codec;
        if (!row.chosen.empty() && row.chosen != row.codec) codec += "\u2192" + row.chosen;
        std::string stages;
        for (const auto& [name, v] : s.stages) stages += fmt::format("{}{} {:.0f}", stages.empty() ? "" : ", ", name, v.second);
        // The arrow is 3 bytes but one column: pad by display width.
        std::size_t width = codec.size() - (codec.find("\u2192") != std::string::npos ? 2 : 0);
        out += fmt::format("{}{} {:<7} {:>8.2f} {:>8.2f} {:>8.2f} {:>9.1f} {:>8.1f} {:>6.2f} {:>6.0f}  {:<11} {}\n", codec,
                           std::string(width < 20 ? 20 - width : 0, ' '), row.direction, s.median_seconds,
                           s.min_seconds, s.max_seconds, s.closure_mb_s, s.wire_mb_s, s.ratio, s.cpu_percent,
                           s.bottleneck, stages);
    }
    for (const auto& row : r.rows) {
        if (!row.auto_reason.empty()) out += fmt::format("auto ({}): {}\n", row.direction, row.auto_reason);
        std::string steps;
        for (const auto& c : summarize(row).level_changes)
            steps += fmt::format("{}{}->{} at {:.1f} s{}", steps.empty() ? "" : ", ", c.from, c.to, c.at_seconds,
                                 c.stream ? fmt::format(" (stream {})", c.stream) : "");
        if (!steps.empty()) out += fmt::format("zstd level ({} {}): {}\n", row.chosen, row.direction, steps);
    }
    if (r.compare) {
        out += fmt::format("\n{}: median {:.2f} s over {} run(s); ferry {} send {:.2f} s: ferry is {:.2f}x {}\n",
                           r.compare->tool, median(r.compare->runs), r.compare->runs.size(), r.compare->vs_codec,
                           r.compare->vs_seconds, compare_ratio(*r.compare),
                           compare_ratio(*r.compare) >= 1 ? "faster" : "as fast (slower)");
    }
    return out;
}

std::string progress_line(const std::string& label, std::uint64_t done_bytes, std::uint64_t total_bytes,
                          std::size_t done_items, std::size_t total_items, int width) {
    double fraction = total_bytes ? std::min(1.0, static_cast<double>(done_bytes) / total_bytes) : 0;
    int filled = static_cast<int>(fraction * width);
    return fmt::format("{} [{}{}] {:3.0f}%  {}/{} paths  {:.1f}/{:.1f} MB", label, std::string(filled, '#'),
                       std::string(width - filled, '.'), fraction * 100, done_items, total_items, done_bytes / 1e6,
                       total_bytes / 1e6);
}

}  // namespace ferry::bench
