// g++ 12 reports a false -Wmismatched-new-delete on every Asio coroutine frame.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "ferry/cli/ops_status.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <vector>

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "ferry/cli/ops_runner.hpp"
#include "ferry/cli/ops_target.hpp"
#include "ferry/remote/command.hpp"
#include "ferry/schedule/slot.hpp"
#include "ferry/schedule/state.hpp"
#include "ferry/ssh/quote.hpp"
#include "ferry/util/error.hpp"

namespace ferry::cli {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view key_prefix = "ferry-status ";

std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> lines;
    for (std::size_t pos = 0; pos < text.size();) {
        auto nl = text.find('\n', pos);
        auto line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        lines.push_back(line);
    }
    return lines;
}

// "1700000000.123456789" (GNU date), "1700000000.N" (BSD date has no %N): seconds.
std::optional<double> parse_epoch(std::string_view text) {
    auto dot = text.find('.');
    std::string_view whole = text.substr(0, dot);
    std::int64_t seconds = 0;
    auto [end, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), seconds);
    if (ec != std::errc() || end != whole.data() + whole.size() || whole.empty()) return std::nullopt;
    double fraction = 0;
    if (dot != std::string_view::npos) {
        std::string_view digits = text.substr(dot + 1);
        double scale = 0.1;
        for (char c : digits) {
            if (c < '0' || c > '9') {
                fraction = 0;
                break;
            }
            fraction += (c - '0') * scale;
            scale /= 10;
        }
    }
    return static_cast<double>(seconds) + fraction;
}

double now_epoch() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string clock_command() { return "date +%s.%N"; }

std::optional<double> parse_clock_output(std::string_view output) {
    while (!output.empty() && (output.back() == '\n' || output.back() == '\r')) output.remove_suffix(1);
    auto nl = output.rfind('\n');
    if (nl != std::string_view::npos) output = output.substr(nl + 1);  // banners before
    return parse_epoch(output);
}

std::string status_command(std::string_view store_dir) {
    std::string script =
        "printf 'ferry-status host %s\\n' \"$(uname -n 2>/dev/null)\"; "
        "printf 'ferry-status kernel %s\\n' \"$(uname -sr 2>/dev/null)\"; "
        "printf 'ferry-status arch %s\\n' \"$(uname -m 2>/dev/null)\"; " +
        schedule::probe_script(store_dir);
    return "sh -c " + ssh::shell_quote(script);
}

status_facts parse_status_output(std::string_view output) {
    status_facts facts;
    facts.probe = schedule::parse_probe_output(output);  // frames, truncation, values
    bool host = false, kernel = false, arch = false;
    std::size_t line_no = 0;
    for (auto line : lines_of(output)) {
        ++line_no;
        if (line == "ferry-probe 1") break;  // the probe's part starts
        if (!line.starts_with(key_prefix)) continue;  // banners, motd
        auto rest = line.substr(key_prefix.size());
        auto space = rest.find(' ');
        auto key = rest.substr(0, space);
        auto value = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
        if (key == "host") {
            facts.host_name = value;
            host = true;
        } else if (key == "kernel") {
            facts.kernel = value;
            kernel = true;
        } else if (key == "arch") {
            facts.arch = value;
            arch = true;
        }
    }
    if (!host || !kernel || !arch)
        throw failure(errc::truncated,
                      fmt::format("status output: expected 'ferry-status host/kernel/arch' lines before the probe "
                                  "(got {} lines)",
                                  line_no));
    return facts;
}

unsigned slots_in_use(const fs::path& state_dir, const schedule::machine& m) {
    fs::path dir = schedule::slot_directory(state_dir, m);
    unsigned used = 0;
    for (unsigned n = 0; n < m.max_jobs; ++n) {
        std::string file = (dir / std::to_string(n)).string();
        int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;  // never created: free
        struct flock query {};
        query.l_type = F_WRLCK;
        query.l_whence = SEEK_SET;
        query.l_start = 0;
        query.l_len = 0;
        // F_OFD_GETLK reports OFD and classic (guix offload) locks alike.
        if (::fcntl(fd, F_OFD_GETLK, &query) == 0 && query.l_type != F_UNLCK) ++used;
        ::close(fd);
    }
    return used;
}

namespace {

struct status_row {
    std::string error;  // empty: answered
    std::optional<status_facts> facts;
    std::optional<double> clock_offset;
    unsigned slots_used = 0;
    std::optional<schedule::backoff_record> backoff;
};

asio::awaitable<void> query_machine(const ops_target& t, std::chrono::milliseconds deadline, status_row& row) {
    auto options = t.ssh;
    options.connect_timeout = std::min(options.connect_timeout, deadline);
    ssh::session s = co_await ssh::session::connect(options);
    // The clock first, alone: the shorter the round trip, the tighter the estimate.
    double before = now_epoch();
    auto clock = co_await remote::run_command(s, clock_command(), deadline);
    double after = now_epoch();
    auto outcome = co_await remote::run_command(s, status_command(t.remote.store_dir), deadline);
    s.close();
    if (outcome.error) throw failure(outcome.error, outcome.message);
    if (!outcome.status.success())
        throw failure(errc::remote_failed, fmt::format("{}: the status command failed ({}): {}", t.name,
                                                       outcome.status.describe(), outcome.err));
    row.facts = parse_status_output(outcome.out);
    // The remote read its clock somewhere in [before, after]: assume the middle.
    if (clock.ok()) row.facts->remote_time = parse_clock_output(clock.out);
    if (row.facts->remote_time) row.clock_offset = *row.facts->remote_time - (before + after) / 2;
}

std::string human_bytes(std::uint64_t bytes) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1000 && u < 5) {
        v /= 1000;
        ++u;
    }
    return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string backoff_text(const std::optional<schedule::backoff_record>& b) {
    if (!b || b->failures == 0) return "-";
    auto left = std::chrono::duration_cast<std::chrono::seconds>(b->retry_at - std::chrono::system_clock::now());
    if (left.count() <= 0) return fmt::format("{} failure(s), retry due", b->failures);
    return fmt::format("{} failure(s), retry in {}s", b->failures, left.count());
}

std::string tools_text(const schedule::probe_result& p) {
    std::string out;
    auto add = [&](bool has, const char* name) {
        if (!has) return;
        if (!out.empty()) out += ',';
        out += name;
    };
    add(p.has_nix_store, "nix-store");
    add(p.has_zstd, "zstd");
    add(p.has_xz, "xz");
    add(p.has_guix, "guix");
    return out.empty() ? "-" : out;
}

void print_table(const ops_selection& sel, const std::vector<status_row>& rows) {
    std::vector<std::vector<std::string>> cells;
    cells.push_back({"NAME", "HOST", "KERNEL", "ARCH", "CORES", "LOAD/CORE", "FREE", "CLOCK", "SLOTS", "TOOLS",
                     "BACKOFF"});
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& t = sel.targets[i];
        const auto& r = rows[i];
        std::string slots = fmt::format("{}/{}", r.slots_used, t.slots.max_jobs);
        if (!r.facts) {
            cells.push_back({t.name, "-", "-", "-", "-", "-", "-", "-", slots, "-", backoff_text(r.backoff)});
            continue;
        }
        const auto& f = *r.facts;
        cells.push_back({t.name, f.host_name, f.kernel, f.arch, std::to_string(f.probe.cores),
                         fmt::format("{:.2f}", f.probe.load_per_core()),
                         f.probe.free_bytes ? human_bytes(*f.probe.free_bytes) : "?",
                         r.clock_offset ? fmt::format("{:+.2f}s", *r.clock_offset) : "?", slots,
                         tools_text(f.probe), backoff_text(r.backoff)});
    }
    std::vector<std::size_t> width(cells[0].size(), 0);
    for (const auto& row : cells)
        for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    for (const auto& row : cells) {
        std::string line;
        for (std::size_t c = 0; c < row.size(); ++c) {
            line += row[c];
            if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
        }
        fmt::print("{}\n", line);
    }
    for (std::size_t i = 0; i < rows.size(); ++i)
        if (!rows[i].error.empty()) fmt::print("{}: {}\n", sel.targets[i].name, rows[i].error);
}

void print_json(const ops_selection& sel, const std::vector<status_row>& rows) {
    nlohmann::json machines = nlohmann::json::array();
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& t = sel.targets[i];
        const auto& r = rows[i];
        nlohmann::json m;
        m["name"] = t.name;
        m["answered"] = r.facts.has_value();
        m["error"] = r.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.error);
        nlohmann::json null;
        if (r.facts) {
            const auto& f = *r.facts;
            m["host_name"] = f.host_name;
            m["kernel"] = f.kernel;
            m["arch"] = f.arch;
            m["cores"] = f.probe.cores;
            m["load1"] = f.probe.load1;
            m["load5"] = f.probe.load5;
            m["load15"] = f.probe.load15;
            m["load_per_core"] = f.probe.load_per_core();
            m["free_bytes"] = f.probe.free_bytes ? nlohmann::json(*f.probe.free_bytes) : null;
            m["clock_offset_seconds"] = r.clock_offset ? nlohmann::json(*r.clock_offset) : null;
            nlohmann::json tools = nlohmann::json::array();
            if (f.probe.has_nix_store) tools.push_back("nix-store");
            if (f.probe.has_zstd) tools.push_back("zstd");
            if (f.probe.has_xz) tools.push_back("xz");
            if (f.probe.has_guix) tools.push_back("guix");
            m["tools"] = tools;
        } else {
            for (const char* key : {"host_name", "kernel", "arch", "cores", "load1", "load5", "load15",
                                    "load_per_core", "free_bytes", "clock_offset_seconds", "tools"})
                m[key] = null;
        }
        m["slots"] = {{"in_use", r.slots_used}, {"max", t.slots.max_jobs}};
        if (r.backoff && r.backoff->failures > 0) {
            auto left = std::chrono::duration_cast<std::chrono::seconds>(r.backoff->retry_at -
                                                                         std::chrono::system_clock::now());
            m["backoff"] = {{"failures", r.backoff->failures},
                            {"retry_in_seconds", std::max<std::int64_t>(0, left.count())},
                            {"last_error", r.backoff->last_error}};
        } else {
            m["backoff"] = null;
        }
        machines.push_back(std::move(m));
    }
    nlohmann::json doc = {{"ferry_version", FERRY_VERSION}, {"file", sel.file.string()}, {"machines", machines}};
    fmt::print("{}\n", doc.dump(2));
}

}  // namespace

int status_command_main(int argc, char** argv) {
    CLI::App app{"Show every build machine's host, kernel, cores, load, free store space, clock difference, "
                 "slots in use and backoff state (all machines at once).\n"
                 "Exit status: 0 every machine answered, 1 some did not, 2 usage or configuration error.",
                 "ferry status"};
    std::string file, regex;
    bool json = false;
    double timeout = 10;
    app.add_option("FILE", file,
                   "machines.scm or Nix machines file (default: /etc/nix/machines if it exists, else "
                   "$GUIX_CONFIGURATION_DIRECTORY/machines.scm)");
    app.add_option("REGEX", regex, "only machines whose name matches (ECMAScript regex, searched)");
    app.add_flag("--json", json, "one JSON document on stdout instead of the table");
    app.add_option("--timeout", timeout, "seconds each machine may take (default 10)")->check(CLI::PositiveNumber);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    auto selected = select_targets_or_report("status", file, regex);
    if (!selected) return 2;
    ops_selection sel = std::move(*selected);

    auto deadline = std::chrono::milliseconds(static_cast<long long>(timeout * 1000));
    std::vector<status_row> rows(sel.targets.size());
    schedule::backoff_store backoff(sel.state_dir);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        try {
            rows[i].slots_used = slots_in_use(sel.state_dir, sel.targets[i].slots);
            rows[i].backoff = backoff.read(sel.targets[i].slots);
        } catch (const std::exception&) {
            // Unreadable local state shows as "no record"; the remote facts still count.
        }
    }
    run_per_machine(
        rows.size(), deadline,
        [&](std::size_t i) { return query_machine(sel.targets[i], deadline, rows[i]); },
        [&](std::size_t i, std::error_code code, const std::string& message) {
            rows[i].facts.reset();
            rows[i].error = code == errc::timed_out
                                ? fmt::format("no answer within {} s", timeout)
                                : message;
        });

    if (json)
        print_json(sel, rows);
    else
        print_table(sel, rows);
    bool all = std::all_of(rows.begin(), rows.end(), [](const status_row& r) { return r.facts.has_value(); });
    return all ? 0 : 1;
}

}  // namespace ferry::cli
