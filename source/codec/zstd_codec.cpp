#include <fmt/format.h>

#include "codecs.hpp"
#include "counting_allocator.hpp"
#include "ferry/util/error.hpp"
#include "output_window.hpp"

namespace ferry::codec::detail {
namespace {

constexpr double mib = 1024.0 * 1024.0;

void check_compress(std::size_t result, const char* step) {
    if (!ZSTD_isError(result)) return;
    auto code = ZSTD_getErrorCode(result) == ZSTD_error_memory_allocation ? errc::too_large
                                                                          : errc::unsupported;
    throw failure(code, fmt::format("zstd compression: {} failed: {}", step, ZSTD_getErrorName(result)));
}

class zstd_compressor final : public compressor {
public:
    zstd_compressor(compression_plan plan, const compression_options& options)
        : compressor(plan, options), cctx_(ZSTD_createCCtx_advanced(allocator_.zstd())) {
        if (cctx_ == nullptr) throw failure(errc::too_large, "zstd compression: out of memory");
        configure(plan);
    }
    ~zstd_compressor() override { ZSTD_freeCCtx(cctx_); }

    std::uint64_t memory_in_use() const override { return allocator_.in_use(); }
    std::uint64_t peak_memory() const override { return allocator_.peak(); }

private:
    void configure(const compression_plan& plan) {
        check_compress(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, plan.spec.level), "setting the level");
        // Stock `zstd -c` writes a checksum: keep the same guarantee.
        check_compress(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_checksumFlag, 1), "enabling the checksum");
        // One thread means no workers: the caller's (pool) thread does the work.
        int workers = plan.threads > 1 ? static_cast<int>(plan.threads) : 0;
        check_compress(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_nbWorkers, workers), "setting the workers");
    }

    std::size_t do_compress(std::span<const std::byte> in, std::string& out, std::size_t limit) override {
        ZSTD_inBuffer input{in.data(), in.size(), 0};
        std::size_t produced = 0;
        while (input.pos < input.size && produced < limit) {
            output_window window(out, window_size(limit, produced));
            ZSTD_outBuffer output{window.data(), window.size(), 0};
            auto result = ZSTD_compressStream2(cctx_, &output, &input, ZSTD_e_continue);
            window.use(output.pos);
            produced += output.pos;
            check_compress(result, "compressing");
            if (output.pos < output.size && input.pos == input.size) break;
        }
        return input.pos;
    }

    bool do_drain(drain_mode mode, std::string& out, std::size_t limit) override {
        auto directive = mode == drain_mode::flush ? ZSTD_e_flush : ZSTD_e_end;
        ZSTD_inBuffer input{nullptr, 0, 0};
        std::size_t produced = 0;
        while (produced < limit) {
            output_window window(out, window_size(limit, produced));
            ZSTD_outBuffer output{window.data(), window.size(), 0};
            auto remaining = ZSTD_compressStream2(cctx_, &output, &input, directive);
            window.use(output.pos);
            produced += output.pos;
            check_compress(remaining, mode == drain_mode::flush ? "flushing" : "ending the frame");
            if (remaining == 0) return true;
        }
        return false;
    }

    void do_apply(const compression_plan& plan) override { configure(plan); }

    counting_allocator allocator_;  // outlives cctx_ (declared first)
    ZSTD_CCtx* cctx_;
};

class zstd_decompressor final : public decompressor {
public:
    explicit zstd_decompressor(const decompression_options& options)
        : decompressor(codec_kind::zstd, options),
          window_log_max_(zstd_window_log_max(options.memory_budget)),
          budget_(options.memory_budget),
          dctx_(ZSTD_createDCtx_advanced(allocator_.zstd())) {
        if (dctx_ == nullptr) throw failure(errc::too_large, "zstd decompression: out of memory");
        auto result = ZSTD_DCtx_setParameter(dctx_, ZSTD_d_windowLogMax, static_cast<int>(window_log_max_));
        if (ZSTD_isError(result)) {
            ZSTD_freeDCtx(dctx_);
            throw failure(errc::unsupported,
                          fmt::format("zstd decompression: window limit: {}", ZSTD_getErrorName(result)));
        }
    }
    ~zstd_decompressor() override { ZSTD_freeDCtx(dctx_); }

private:
    [[noreturn]] void fail(std::size_t result, std::uint64_t offset) const {
        auto code = ZSTD_getErrorCode(result);
        if (code == ZSTD_error_frameParameter_windowTooLarge)
            throw failure(errc::too_large,
                          fmt::format("zstd: the frame starting at compressed offset {} needs a window "
                                      "over 2^{} bytes, more than the memory budget of {:.0f} MiB allows",
                                      frame_start_, window_log_max_, budget_ / mib));
        if (code == ZSTD_error_memory_allocation)
            throw failure(errc::too_large, "zstd decompression: out of memory");
        throw failure(errc::bad_input,
                      fmt::format("zstd: corrupt input at compressed offset {} (frame {} starting at "
                                  "offset {}): {}; expected a zstd frame as written by `zstd -c`",
                                  offset, frames_ + 1, frame_start_, ZSTD_getErrorName(result)));
    }

    // One call of the library; keeps track of frame boundaries.
    std::size_t run(ZSTD_inBuffer& input, ZSTD_outBuffer& output, std::uint64_t base_offset) {
        auto before = input.pos;
        auto hint = ZSTD_decompressStream(dctx_, &output, &input);
        if (ZSTD_isError(hint)) fail(hint, base_offset + input.pos);
        if (input.pos > before && !in_frame_) {
            in_frame_ = true;
            frame_start_ = base_offset + before;
        }
        if (hint == 0 && in_frame_) {  // a frame was decoded and flushed completely
            in_frame_ = false;
            ++frames_;
        }
        return hint;
    }

    step do_decompress(std::span<const std::byte> in, std::string& out, std::size_t limit,
                       std::uint64_t offset) override {
        ZSTD_inBuffer input{in.data(), in.size(), 0};
        std::size_t produced = 0;
        bool full = false;
        while (produced < limit) {
            output_window window(out, window_size(limit, produced));
            ZSTD_outBuffer output{window.data(), window.size(), 0};
            auto before = input.pos;
            run(input, output, offset);
            window.use(output.pos);
            produced += output.pos;
            full = output.pos == output.size;
            if (!full && (input.pos == input.size || input.pos == before)) break;
        }
        return {input.pos, full && produced >= limit};
    }

    bool do_finish(std::string& out, std::size_t limit, std::uint64_t offset) override {
        ZSTD_inBuffer input{nullptr, 0, 0};
        std::size_t produced = 0;
        while (produced < limit) {
            output_window window(out, window_size(limit, produced));
            ZSTD_outBuffer output{window.data(), window.size(), 0};
            run(input, output, offset);
            window.use(output.pos);
            produced += output.pos;
            if (output.pos < output.size) break;
        }
        if (produced >= limit) return false;
        if (offset == 0)
            throw failure(errc::truncated, "zstd: the input is empty; expected at least one zstd frame");
        if (in_frame_)
            throw failure(errc::truncated,
                          fmt::format("zstd: input ends at compressed offset {} inside frame {} "
                                      "(starting at offset {}); expected the rest of the frame",
                                      offset, frames_ + 1, frame_start_));
        return true;
    }

    counting_allocator allocator_;
    unsigned window_log_max_;
    std::uint64_t budget_;
    ZSTD_DCtx* dctx_;
    bool in_frame_ = false;
    std::uint64_t frame_start_ = 0;
    std::uint64_t frames_ = 0;
};

}  // namespace

std::unique_ptr<compressor> make_zstd_compressor(compression_plan plan, const compression_options& options) {
    return std::make_unique<zstd_compressor>(std::move(plan), options);
}

std::unique_ptr<decompressor> make_zstd_decompressor(const decompression_options& options) {
    return std::make_unique<zstd_decompressor>(options);
}

}  // namespace ferry::codec::detail
