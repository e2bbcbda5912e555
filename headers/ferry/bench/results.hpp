// What `ferry bench` measured, and its two renderings: the JSON document of the
// outside contract (../shared/reference/cli-contract.md, `ferry bench --json`) and
// the table printed on stdout. MB = 10^6 bytes throughout.
//
// JSON (every key of the contract, always present, with these types):
//   {"ferry_version": str, "machine": str, "closure": {"paths": int, "bytes": int},
//    "results": [{"codec": str, "direction": "send"|"receive",
//                 "runs": [{"seconds": num, "wire_bytes": int}],
//                 "median_seconds": num, "closure_mb_s": num, "wire_mb_s": num,
//                 "ratio": num, "cpu_percent": num,
//                 "stages": {"<stage>": {"bytes": int, "busy_percent": num}},
//                 "bottleneck": str}],
//    "compare": {"tool": "nix-copy-closure", "median_seconds": num, "ratio": num}}
// "compare" only with --compare. Extensions (extra keys, allowed by the contract):
// per result "min_seconds", "max_seconds", "chosen" (what `auto` resolved to),
// "auto_reason" and "level_changes" ([{"at_seconds", "stream", "from", "to"}]: zstd
// levels changed while streaming, median run; only when there were any); in "compare" "runs" and "vs_codec" (the row the ratio is against).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ferry::bench {

struct run_figures {
    double seconds = 0;
    std::uint64_t closure_bytes = 0;  // NAR bytes moved
    std::uint64_t wire_bytes = 0;     // bytes on the ssh channel
    double cpu_seconds = 0;           // this process's user + system time during the run
    struct stage {
        std::string name;
        std::uint64_t bytes = 0;      // bytes the stage produced (its output)
        double busy_seconds = 0;
    };
    std::vector<stage> stages;
    std::string bottleneck;           // the transfer's own verdict ("" = compute it here)
    // zstd level changes while streaming (auto -> zstd adapts to the link).
    struct level_step {
        double at_seconds = 0;
        std::size_t stream = 0;
        int from = 0, to = 0;
    };
    std::vector<level_step> level_changes;
};

struct row {
    std::string codec;      // as asked: "auto", "zstd:1", ...
    std::string chosen;     // the concrete codec used ("zstd:1"); for auto the rule's pick
    std::string auto_reason;
    std::string direction;  // "send" | "receive"
    std::vector<run_figures> runs;
};

struct summary {
    double median_seconds = 0, min_seconds = 0, max_seconds = 0;
    double closure_mb_s = 0, wire_mb_s = 0, ratio = 0, cpu_percent = 0;
    std::map<std::string, std::pair<std::uint64_t, double>> stages;  // name -> (bytes, busy %)
    std::string bottleneck;  // stage with the highest busy %
    std::vector<run_figures::level_step> level_changes;  // of the median run
};

// Figures of the median run (an even count takes the mean of the middle two for the
// seconds and the lower-middle run for everything else). Throws on zero runs.
summary summarize(const row& r);

// The median of values (mean of the middle two for an even count); 0 for none.
double median(std::vector<double> values);

struct compare_result {
    std::string tool = "nix-copy-closure";
    std::vector<double> runs;  // seconds
    std::string vs_codec;      // the ferry send row the ratio compares with
    double vs_seconds = 0;     // that row's median
};

struct bench_result {
    std::string machine;     // the machine line / name, or "local-host (ssh://...)"
    std::size_t closure_paths = 0;
    std::uint64_t closure_bytes = 0;
    std::vector<row> rows;
    std::optional<compare_result> compare;
};

// compare ratio = nix-copy-closure median / ferry median: > 1 means ferry was faster.
double compare_ratio(const compare_result& c);

nlohmann::json to_json(const bench_result& r, const std::string& ferry_version);
// The table on stdout: a header line and one line per row, then the compare line.
std::string format_table(const bench_result& r);

// "[#####.....]  42%  12/30 paths  8.4/20.0 MB" for the terminal progress line.
std::string progress_line(const std::string& label, std::uint64_t done_bytes, std::uint64_t total_bytes,
                          std::size_t done_items, std::size_t total_items, int width = 30);

}  // namespace ferry::bench
