#include "ferry/schedule/state.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "ferry/util/error.hpp"

namespace ferry::schedule {

namespace fs = std::filesystem;
using json = nlohmann::json;

wall_clock system_wall_clock() {
    return [] { return std::chrono::system_clock::now(); };
}

std::chrono::seconds backoff_delay(unsigned failures, const backoff_policy& policy) {
    if (failures == 0) return std::chrono::seconds(0);
    auto delay = policy.initial;
    for (unsigned i = 1; i < failures && delay < policy.cap; ++i) delay *= policy.factor;
    return std::min(delay, policy.cap);
}

namespace {

std::int64_t to_ms(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::chrono::system_clock::time_point from_ms(std::int64_t ms) {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

std::optional<json> read_json(const fs::path& file) {
    std::ifstream in(file);
    if (!in) return std::nullopt;
    std::stringstream text;
    text << in.rdbuf();
    // A damaged file is no record: the worst outcome is one probe too many.
    json j = json::parse(text.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    return j;
}

// A writer killed between its write and its rename leaves "<file>.tmp.<pid>.<n>":
// the next writer of the same record removes those of processes that are gone.
void remove_dead_writers_temporaries(const fs::path& file) {
    const std::string prefix = file.filename().string() + ".tmp.";
    std::error_code ec;
    for (auto& e : fs::directory_iterator(file.parent_path(), ec)) {
        const auto name = e.path().filename().string();
        if (!name.starts_with(prefix)) continue;
        const auto rest = std::string_view(name).substr(prefix.size());
        long pid = 0;
        auto [end, err] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
        if (err != std::errc{} || end == rest.data() || *end != '.' || pid <= 0 || pid == ::getpid()) continue;
        if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) fs::remove(e.path(), ec);
    }
}

void write_json(const fs::path& file, const json& j) {
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    if (ec) throw failure(ec, fmt::format("creating {}: {}", file.parent_path().string(), ec.message()));
    fs::path tmp = file;
    // Unique per process and per write: several schedulers may share a process.
    static std::atomic<unsigned> counter{0};
    tmp += fmt::format(".tmp.{}.{}", ::getpid(), counter++);
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << j.dump() << '\n';
        if (!out.flush()) throw failure(errc::no_space, fmt::format("writing {}", tmp.string()));
    }
    fs::rename(tmp, file, ec);
    if (ec) {
        fs::remove(tmp, ec);
        throw failure(ec, fmt::format("renaming {} to {}", tmp.string(), file.string()));
    }
    remove_dead_writers_temporaries(file);
}

// A record written with write_json and a "time_ms" stamp, if it is younger than
// `ttl` by `clock` (a stamp from the future is not trusted); nullopt otherwise,
// also for a missing or damaged file. What else it holds is the caller's to read.
std::optional<json> read_fresh_record(const fs::path& file, const wall_clock& clock, std::chrono::milliseconds ttl) {
    auto j = read_json(file);
    if (!j) return std::nullopt;
    try {
        auto at = from_ms(j->at("time_ms").get<std::int64_t>());
        auto now = clock();
        if (at > now || now - at >= ttl) return std::nullopt;
        return j;
    } catch (const json::exception&) {
        return std::nullopt;
    }
}

}  // namespace

// --- backoff ---------------------------------------------------------------

backoff_store::backoff_store(fs::path state_dir, wall_clock clock, backoff_policy policy)
    : dir_(std::move(state_dir) / "ferry" / "backoff"), clock_(std::move(clock)), policy_(policy) {}

fs::path backoff_store::file(const machine& m) const { return dir_ / machine_key(m); }

std::optional<backoff_record> backoff_store::read(const machine& m) const {
    auto j = read_json(file(m));
    if (!j) return std::nullopt;
    try {
        backoff_record r;
        r.failures = j->at("failures").get<unsigned>();
        r.retry_at = from_ms(j->at("retry_at_ms").get<std::int64_t>());
        r.last_error = j->value("last_error", "");
        return r;
    } catch (const json::exception&) {
        return std::nullopt;
    }
}

bool backoff_store::backed_off(const machine& m) const {
    auto r = read(m);
    return r && r->failures > 0 && clock_() < r->retry_at;
}

backoff_record backoff_store::record_failure(const machine& m, const std::string& error) {
    // Read-modify-write without a lock: two hooks failing at the same moment both
    // write failures = n+1, which is right (one outage, one step of backoff).
    backoff_record r;
    if (auto old = read(m)) r.failures = old->failures;
    ++r.failures;
    r.retry_at = clock_() + backoff_delay(r.failures, policy_);
    r.last_error = error;
    write_json(file(m), json{{"failures", r.failures}, {"retry_at_ms", to_ms(r.retry_at)}, {"last_error", error}});
    return r;
}

void backoff_store::record_success(const machine& m) {
    std::error_code ec;
    fs::remove(file(m), ec);  // already absent is fine
}

// --- probe cache -------------------------------------------------------------

probe_cache::probe_cache(fs::path state_dir, wall_clock clock, std::chrono::milliseconds ttl)
    : dir_(std::move(state_dir) / "ferry" / "probe"), clock_(std::move(clock)), ttl_(ttl) {}

fs::path probe_cache::file(const machine& m) const { return dir_ / machine_key(m); }

std::optional<probe_result> probe_cache::fresh(const machine& m) const {
    if (ttl_.count() <= 0) return std::nullopt;
    auto j = read_fresh_record(file(m), clock_, ttl_);
    if (!j) return std::nullopt;
    try {
        probe_result r;
        r.os = j->at("os").get<std::string>();
        r.cores = j->at("cores").get<unsigned>();
        r.load1 = j->at("load1").get<double>();
        r.load5 = j->at("load5").get<double>();
        r.load15 = j->at("load15").get<double>();
        if (j->contains("free_bytes") && !j->at("free_bytes").is_null())
            r.free_bytes = j->at("free_bytes").get<std::uint64_t>();
        r.has_nix_store = j->at("nix_store").get<bool>();
        r.has_zstd = j->at("zstd").get<bool>();
        r.has_xz = j->at("xz").get<bool>();
        r.has_guix = j->at("guix").get<bool>();
        if (r.cores == 0) return std::nullopt;
        return r;
    } catch (const json::exception&) {
        return std::nullopt;
    }
}

void probe_cache::store(const machine& m, const probe_result& r) {
    json j{{"time_ms", to_ms(clock_())}, {"os", r.os},       {"cores", r.cores},
           {"load1", r.load1},           {"load5", r.load5}, {"load15", r.load15},
           {"nix_store", r.has_nix_store}, {"zstd", r.has_zstd}, {"xz", r.has_xz},
           {"guix", r.has_guix}};
    j["free_bytes"] = r.free_bytes ? json(*r.free_bytes) : json(nullptr);
    write_json(file(m), j);
}

void probe_cache::forget(const machine& m) {
    std::error_code ec;
    fs::remove(file(m), ec);  // none stored is fine
}

link_cache::link_cache(fs::path state_dir, wall_clock clock, std::chrono::milliseconds ttl)
    : dir_(std::move(state_dir) / "ferry" / "link"), clock_(std::move(clock)), ttl_(ttl) {}

fs::path link_cache::file(const machine& m) const { return dir_ / machine_key(m); }

std::optional<double> link_cache::fresh(const machine& m) const {
    auto j = read_fresh_record(file(m), clock_, ttl_);
    if (!j) return std::nullopt;
    try {
        auto speed = j->at("bytes_per_s").get<double>();
        if (!(speed > 0)) return std::nullopt;
        return speed;
    } catch (const json::exception&) {
        return std::nullopt;
    }
}

void link_cache::store(const machine& m, double bytes_per_s) {
    write_json(file(m), json{{"time_ms", to_ms(clock_())}, {"bytes_per_s", bytes_per_s}});
}

slot_wait_memory::slot_wait_memory(fs::path state_dir, wall_clock clock, std::chrono::milliseconds window)
    : file_(std::move(state_dir) / "ferry" / "slot-wait-missed"), clock_(std::move(clock)), window_(window) {}

bool slot_wait_memory::recently_missed() const { return read_fresh_record(file_, clock_, window_).has_value(); }

void slot_wait_memory::record_miss() { write_json(file_, json{{"time_ms", to_ms(clock_())}}); }

}  // namespace ferry::schedule
