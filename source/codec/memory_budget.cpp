#include "ferry/codec/memory_budget.hpp"

#include <algorithm>
#include <bit>
#include <thread>

#include <fmt/format.h>

#include "counting_allocator.hpp"  // zstd.h with the static-linking-only estimates
#include "ferry/util/error.hpp"

namespace ferry::codec {
namespace {

constexpr double mib = 1024.0 * 1024.0;

// zstdmt's default overlap (lib/compress/zstdmt_compress.c, 1.5.x): a fraction of
// the window that each job re-reads from the previous one, by strategy.
int zstd_overlap_log(ZSTD_strategy strategy) {
    switch (strategy) {
    case ZSTD_btultra2: return 9;
    case ZSTD_btultra:
    case ZSTD_btopt: return 8;
    case ZSTD_btlazy2:
    case ZSTD_lazy2: return 7;
    default: return 6;
    }
}

std::uint64_t zstd_memory(int level, unsigned threads) {
    auto params = ZSTD_getCParams(level, ZSTD_CONTENTSIZE_UNKNOWN, 0);
    if (threads <= 1) return ZSTD_estimateCStreamSize_usingCParams(params);

    // With workers, input is cut into jobs of 4 windows (at least 1 MiB); zstdmt
    // keeps a round buffer of (workers + 2 or 3) jobs, an output buffer of
    // compressBound(job) per job in flight (at most 2*workers + 3) and a match
    // state per worker. The output buffers are the worst case and rarely all live.
    std::uint64_t workers = threads;
    std::uint64_t job = std::uint64_t{1} << std::min(30U, std::max(20U, params.windowLog + 2));
    int overlap_rlog = 9 - zstd_overlap_log(params.strategy);
    bool overlap = overlap_rlog < 8;
    std::uint64_t round_buffer = job * (workers + 2 + (overlap ? 1 : 0));
    std::uint64_t output_buffers = (2 * workers + 3) * ZSTD_compressBound(job);
    std::uint64_t match_states = workers * ZSTD_estimateCCtxSize_usingCParams(params);
    return round_buffer + output_buffers + match_states + (std::uint64_t{1} << 20);
}

std::uint64_t xz_memory(int preset, unsigned threads) {
    std::uint64_t need;
    if (threads <= 1) {
        need = lzma_easy_encoder_memusage(static_cast<std::uint32_t>(preset));
    } else {
        lzma_mt mt{};
        mt.threads = threads;
        mt.preset = static_cast<std::uint32_t>(preset);
        mt.check = LZMA_CHECK_CRC64;
        need = lzma_stream_encoder_mt_memusage(&mt);
    }
    if (need == UINT64_MAX)
        throw failure(errc::unsupported, fmt::format("xz:{}: liblzma rejects this preset", preset));
    return need;
}

}  // namespace

std::uint64_t compression_memory(const codec_spec& spec, unsigned threads) {
    switch (spec.kind) {
    case codec_kind::none: return 0;
    case codec_kind::zstd: check_level(spec.kind, spec.level); return zstd_memory(spec.level, threads);
    case codec_kind::xz: check_level(spec.kind, spec.level); return xz_memory(spec.level, threads);
    case codec_kind::auto_select: break;
    }
    throw failure(errc::unsupported, "codec auto must be resolved before its memory is known");
}

compression_plan plan_compression(const codec_spec& spec, unsigned requested_threads,
                                  std::uint64_t memory_budget) {
    if (spec.is_auto())
        throw failure(errc::unsupported, "codec auto must be resolved before compressing");
    compression_plan plan;
    plan.spec = spec;
    plan.requested_threads =
        requested_threads != 0 ? requested_threads : std::max(1U, std::thread::hardware_concurrency());
    if (spec.kind == codec_kind::none) {
        plan.threads = 1;
        return plan;
    }
    for (unsigned threads = plan.requested_threads; threads >= 1; --threads) {
        auto need = compression_memory(spec, threads);
        if (need <= memory_budget) {
            plan.threads = threads;
            plan.memory_estimate = need;
            if (threads < plan.requested_threads)
                plan.note = fmt::format(
                    "{} with {} threads needs {:.0f} MiB, over the memory budget of {:.0f} MiB: "
                    "using {} thread{} ({:.0f} MiB)",
                    to_string(spec), plan.requested_threads,
                    compression_memory(spec, plan.requested_threads) / mib, memory_budget / mib,
                    threads, threads == 1 ? "" : "s", need / mib);
            return plan;
        }
    }
    // Name the highest level that fits on one thread, so the message says what to do.
    int fitting = -1;
    int lowest = spec.kind == codec_kind::zstd ? min_zstd_level : min_xz_level;
    for (int level = spec.level - 1; level >= lowest; --level)
        if (compression_memory({spec.kind, level}, 1) <= memory_budget) {
            fitting = level;
            break;
        }
    auto advice = fitting >= 0 ? fmt::format("use {}:{} or lower, or raise the budget", name(spec.kind), fitting)
                               : std::string("raise the budget");
    throw failure(errc::too_large,
                  fmt::format("{} needs {:.0f} MiB even with one thread, over the memory budget of "
                              "{:.0f} MiB: {}",
                              to_string(spec), compression_memory(spec, 1) / mib,
                              memory_budget / mib, advice));
}

unsigned zstd_window_log_max(std::uint64_t memory_budget) {
    // The window dominates a decoder's memory: allow windows up to half the budget,
    // between zstd's minimum (10) and its default limit (27).
    auto half = std::max<std::uint64_t>(memory_budget / 2, 1);
    unsigned log = static_cast<unsigned>(std::bit_width(half) - 1);
    return std::clamp(log, 10U, 27U);
}

}  // namespace ferry::codec
