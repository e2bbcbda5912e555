#include "ferry/codec/auto_rule.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "ferry/util/error.hpp"

namespace ferry::codec {
namespace {

constexpr double infinity = std::numeric_limits<double>::infinity();

double mb(double bytes_per_s) { return bytes_per_s / 1e6; }

// CPU time per closure byte is what the cores share: compression plus encrypting
// what is left of the byte after compression; with a machine on the same kernel,
// also its decryption, decoding (decode_speed: closure bytes per second) and import.
double cpu_bound(const codec_measurement& m, const auto_inputs& in, double decode_speed) {
    unsigned cores = std::max(1u, in.local_cores);
    double usable_cores = 1.0 + (cores - 1) * in.thread_efficiency;
    double per_byte = 1.0 / (m.ratio * in.cipher_bytes_per_s);
    if (m.spec.kind != codec_kind::none) per_byte += 1.0 / m.compress_bytes_per_s;
    if (in.remote_shares_cpu) {
        per_byte += 1.0 / (m.ratio * in.cipher_bytes_per_s) + 1.0 / decode_speed;
        if (in.import_cpu_bytes_per_s > 0) per_byte += 1.0 / in.import_cpu_bytes_per_s;
    }
    return usable_cores / per_byte;
}

}  // namespace

prediction predict(const codec_measurement& m, const auto_inputs& in) {
    prediction p{m.spec, 0, "link", true};
    double link = in.link_bytes_per_s * m.ratio;
    double decode = infinity;
    if (m.spec.kind == codec_kind::zstd) {
        decode = in.remote_zstd_decode_bytes_per_s;
        p.usable = in.remote_has_zstd;
    } else if (m.spec.kind == codec_kind::xz) {
        decode = in.remote_xz_decode_bytes_per_s;
        p.usable = in.remote_has_xz;
    }
    double cpu = cpu_bound(m, in, decode);
    double sink = in.sink_bytes_per_s > 0 ? in.sink_bytes_per_s : infinity;
    p.bytes_per_s = link;
    if (cpu < p.bytes_per_s) p = {m.spec, cpu, "cpu", p.usable};
    if (decode < p.bytes_per_s) p = {m.spec, decode, "decode", p.usable};
    if (sink < p.bytes_per_s) p = {m.spec, sink, "import", p.usable};
    return p;
}

auto_choice choose_codec(const auto_inputs& in) {
    if (!(in.link_bytes_per_s > 0))
        throw failure(errc::bad_input, "auto codec: the link throughput must be measured (> 0 bytes/s)");
    std::vector<codec_measurement> candidates{{codec_spec{codec_kind::none, 0}, infinity, 1.0}};
    for (const auto& c : in.candidates) {
        if (c.spec.is_auto()) throw failure(errc::bad_input, "auto codec: `auto` cannot be a candidate");
        if (c.spec.kind == codec_kind::none) continue;
        if (!(c.compress_bytes_per_s > 0) || !(c.ratio > 0))
            throw failure(errc::bad_input,
                          fmt::format("auto codec: candidate {} has no measured speed/ratio", to_string(c.spec)));
        candidates.push_back(c);
    }

    auto_choice choice;
    double best = 0;
    for (const auto& c : candidates) {
        choice.considered.push_back(predict(c, in));
        if (choice.considered.back().usable) best = std::max(best, choice.considered.back().bytes_per_s);
    }
    // Cheapest in CPU among those "as fast": none first, then the fastest compressor.
    const prediction* pick = nullptr;
    double pick_speed = -1;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        const auto& p = choice.considered[i];
        if (!p.usable || p.bytes_per_s < best * (1 - in.tolerance)) continue;
        if (candidates[i].compress_bytes_per_s > pick_speed) {
            pick = &p;
            pick_speed = candidates[i].compress_bytes_per_s;
        }
    }
    choice.spec = pick->spec;
    choice.predicted_bytes_per_s = pick->bytes_per_s;
    choice.limit = pick->limit;
    choice.reason = fmt::format("link {:.1f} MB/s, {} cores{}: {} predicted {:.1f} MB/s ({}-bound)",
                                mb(in.link_bytes_per_s), in.local_cores,
                                in.remote_shares_cpu ? " shared with the machine" : "", to_string(pick->spec),
                                mb(pick->bytes_per_s), pick->limit);
    // The runners-up, so that a surprising choice can be checked against its figures.
    std::string others;
    for (const auto& p : choice.considered)
        if (&p != pick && p.usable)
            others += fmt::format("{}{} {:.0f}", others.empty() ? "" : ", ", to_string(p.spec), mb(p.bytes_per_s));
    if (!others.empty()) choice.reason += "; others: " + others;
    return choice;
}

int adjust_zstd_level(int level, double compressor_busy, double link_busy, int min_level, int max_level) {
    int next = level;
    if (compressor_busy > 0.9 && link_busy < 0.7) {
        // Compression holds the link back: step down fast (levels above 3 cost a lot).
        next = level > 3 ? level - 2 : level - 1;
    } else if (link_busy > 0.9 && compressor_busy < 0.5) {
        next = level + 1;
    }
    return std::clamp(next, min_level, std::max(min_level, max_level));
}

}  // namespace ferry::codec
