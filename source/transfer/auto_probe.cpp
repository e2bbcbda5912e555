#include "ferry/transfer/auto_probe.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <functional>
#include <optional>
#include <fstream>
#include <thread>

#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/thread_pool.hpp>
#include <fmt/format.h>

#include "ferry/codec/compressor.hpp"
#include "ferry/store/nar_dump.hpp"
#include "ferry/util/error.hpp"

namespace ferry::transfer {

using clock = std::chrono::steady_clock;

asio::awaitable<double> measure_upload(ssh::session& s, std::chrono::milliseconds duration, std::uint64_t max_bytes) {
    // Random-looking bytes: nothing on the way (ssh compression is off anyway) can shrink them.
    std::string piece(1 << 20, '\0');
    std::uint64_t x = 0x9e3779b97f4a7c15ull;
    for (std::size_t i = 0; i + 8 <= piece.size(); i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        std::memcpy(piece.data() + i, &x, 8);
    }
    auto ch = co_await s.exec("cat >/dev/null");
    auto start = clock::now();
    std::uint64_t sent = 0;
    while (clock::now() - start < duration && sent < max_bytes) {
        co_await ch.write(asio::buffer(piece));
        sent += piece.size();
    }
    co_await ch.send_eof();
    auto status = co_await ch.wait();
    double seconds = std::chrono::duration<double>(clock::now() - start).count();
    if (!status.success())
        throw failure(errc::remote_failed, fmt::format("{}: link probe `cat >/dev/null` failed: {}", s.host(),
                                                       status.describe()));
    co_return seconds > 0 ? sent / seconds : 0;
}

std::string sample_nars(const std::vector<std::string>& paths, std::size_t bytes) {
    constexpr std::size_t piece = 64 << 10;
    std::string sample;
    if (paths.empty()) return sample;
    std::size_t pieces = std::max<std::size_t>(1, bytes / piece);
    std::size_t step = std::max<std::size_t>(1, paths.size() / pieces);
    // Several passes over the spread-out paths: later passes take the next 64 KiB.
    for (std::size_t pass = 0; sample.size() < bytes && pass < 64; ++pass) {
        std::size_t before = sample.size();
        for (std::size_t i = 0; i < paths.size() && sample.size() < bytes; i += step) {
            store::nar_source nar(paths[i], piece);
            std::size_t skipped = 0, want = pass * piece;
            std::string_view c;
            while (skipped < want && !(c = nar.next_chunk()).empty()) skipped += c.size();
            if (skipped < want) continue;
            std::size_t taken = 0;
            while (taken < piece && !(c = nar.next_chunk()).empty()) {
                c = c.substr(0, std::min(c.size(), piece - taken));
                sample.append(c);
                taken += c.size();
            }
        }
        if (sample.size() == before) break;  // every path exhausted
    }
    if (sample.size() > bytes) sample.resize(bytes);
    return sample;
}

namespace {

// One-thread speed and ratio of one codec on the sample; nullopt when `wanted`
// turned false on the way (checked every 256 KiB: a speculative xz measurement
// must not hold up a choice that no longer needs it).
std::optional<codec::codec_measurement> measure_codec(const std::string& sample, const codec::codec_spec& spec,
                                                      const std::function<bool()>& wanted) {
    auto c = codec::make_compressor(spec, {.threads = 1, .memory_budget = codec::default_memory_budget,
                                           .output_limit = std::size_t{1} << 20});
    std::string buf;
    std::uint64_t compressed = 0;
    auto start = clock::now();
    auto rest = std::as_bytes(std::span(sample.data(), sample.size()));
    while (!rest.empty()) {
        if (wanted && !wanted()) return std::nullopt;
        auto piece = rest.first(std::min<std::size_t>(rest.size(), 256 << 10));
        while (!piece.empty()) {
            auto used = c->feed(piece, buf);
            piece = piece.subspan(used);
            rest = rest.subspan(used);
            compressed += buf.size();
            buf.clear();
        }
    }
    while (!c->finish(buf)) {
        compressed += buf.size();
        buf.clear();
    }
    compressed += buf.size();
    double seconds = std::chrono::duration<double>(clock::now() - start).count();
    return codec::codec_measurement{spec, seconds > 0 ? sample.size() / seconds : 1e12,
                                    compressed ? static_cast<double>(sample.size()) / compressed : 1.0};
}

bool among(const codec::codec_spec& spec, const std::vector<codec::codec_spec>& list) {
    return std::find(list.begin(), list.end(), spec) != list.end();
}

// What the sampler thread and the I/O side share.
struct sampling_state {
    std::atomic<double> link{0};  // bytes/s once measured; 0 while unknown
    std::atomic<bool> abandoned{false};  // the probe failed: stop
};

// On a worker thread while the link is measured: every candidate the link may
// call for, cheap ones first; once the link is known only those it calls for.
std::vector<codec::codec_measurement> measure_while_linking(const std::vector<std::string>& paths,
                                                            const sampling_state& st, unsigned cores) {
    const std::string sample = sample_nars(paths);
    std::vector<codec::codec_measurement> out;
    for (const auto& spec : auto_candidates(0, cores)) {  // 0: unknown, so every candidate
        auto wanted = [&] {
            double known = st.link.load();
            return !st.abandoned && (known <= 0 || among(spec, auto_candidates(known, cores)));
        };
        if (!wanted()) continue;
        if (auto m = measure_codec(sample, spec, wanted)) out.push_back(*m);
    }
    return out;
}

}  // namespace

std::vector<codec::codec_measurement> measure_codecs(const std::string& sample,
                                                     const std::vector<codec::codec_spec>& candidates) {
    std::vector<codec::codec_measurement> out;
    for (const auto& spec : candidates) out.push_back(*measure_codec(sample, spec, {}));
    return out;
}

bool same_kernel(std::string_view remote_output) {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string local;
    std::getline(in, local);
    if (local.empty()) return false;
    return remote_output.find("boot " + local + "\n") != std::string_view::npos;
}

std::vector<codec::codec_spec> auto_candidates(double link_bytes_per_s, unsigned cores) {
    using codec::codec_kind;
    const double most = std::max(1u, cores) * 1.0;  // every core at one-thread speed: an upper bound
    std::vector<codec::codec_spec> c = {{codec_kind::zstd, 1}, {codec_kind::zstd, 3}, {codec_kind::zstd, 6}};
    if (link_bytes_per_s < most * 60e6) c.push_back({codec_kind::zstd, 9});
    if (link_bytes_per_s < most * 25e6) c.push_back({codec_kind::xz, 0});
    if (link_bytes_per_s < 5e6) c.push_back({codec_kind::xz, 3});
    return c;
}

asio::awaitable<probed_choice> probe_and_choose(ssh::session& s, const std::vector<std::string>& paths,
                                                std::optional<double> known_link) {
    using namespace asio::experimental::awaitable_operators;
    // The codecs are measured on a sample (CPU, on a thread of its own) while the
    // link and the machine's decoders are (I/O): one after the other they took
    // 0.3-1.2 s.
    codec::auto_inputs in;
    in.local_cores = std::max(1u, std::thread::hardware_concurrency());
    sampling_state shared;
    if (known_link) shared.link = *known_link;
    asio::thread_pool sampler(1);
    // The sampler never throws into the `&&` below: its error would come out wrapped
    // with the session side's "cancelled" (asio::multiple_exceptions), losing it.
    struct sampling {
        std::vector<codec::codec_measurement> measured;
        std::exception_ptr error;
    };
    auto sampled = asio::co_spawn(
        sampler, [&]() -> asio::awaitable<sampling> {
            sampling r;
            try {
                r.measured = measure_while_linking(paths, shared, in.local_cores);
            } catch (...) {
                r.error = std::current_exception();
            }
            co_return r;
        },
        asio::use_awaitable);
    // The link, then the decoders (both on the session); a failure stops the
    // sampler too, at its next check.
    auto on_the_session = [&]() -> asio::awaitable<ssh::command_result> {
        try {
            if (!known_link) shared.link = co_await measure_upload(s);
            co_return co_await ssh::run(s, "sh -c 'command -v zstd; command -v xz; "
                                           "echo boot $(cat /proc/sys/kernel/random/boot_id 2>/dev/null); true'");
        } catch (...) {
            shared.abandoned = true;
            throw;
        }
    };
    sampling sample;
    ssh::command_result tools;
    try {
        auto [t, m] = co_await (on_the_session() && std::move(sampled));
        tools = std::move(t);
        sample = std::move(m);
    } catch (...) {
        shared.abandoned = true;
        sampler.join();
        throw;
    }
    sampler.join();
    if (sample.error) std::rethrow_exception(sample.error);
    const auto& measured = sample.measured;
    in.link_bytes_per_s = shared.link.load();
    in.remote_has_zstd = tools.out.find("zstd") != std::string::npos;
    in.remote_has_xz = tools.out.find("xz") != std::string::npos;
    in.remote_shares_cpu = same_kernel(tools.out);
    for (const auto& spec : auto_candidates(in.link_bytes_per_s, in.local_cores))
        for (const auto& m : measured)
            if (m.spec == spec) in.candidates.push_back(m);
    co_return probed_choice{codec::choose_codec(in), in.link_bytes_per_s};
}

}  // namespace ferry::transfer
