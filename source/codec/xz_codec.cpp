#include <fmt/format.h>

#include "codecs.hpp"
#include "counting_allocator.hpp"
#include "ferry/util/error.hpp"
#include "output_window.hpp"

namespace ferry::codec::detail {
namespace {

constexpr double mib = 1024.0 * 1024.0;

std::string_view describe(lzma_ret ret) {
    switch (ret) {
    case LZMA_MEM_ERROR: return "out of memory";
    case LZMA_MEMLIMIT_ERROR: return "memory limit reached";
    case LZMA_FORMAT_ERROR: return "not in the .xz format";
    case LZMA_OPTIONS_ERROR: return "unsupported options";
    case LZMA_DATA_ERROR: return "compressed data is corrupt";
    case LZMA_BUF_ERROR: return "unexpected end of input";
    case LZMA_PROG_ERROR: return "programming error";
    case LZMA_UNSUPPORTED_CHECK: return "unsupported integrity check";
    default: return "unexpected result";
    }
}

class xz_compressor final : public compressor {
public:
    xz_compressor(compression_plan plan, const compression_options& options)
        : compressor(plan, options), plan_(std::move(plan)) {
        stream_.allocator = allocator_.lzma();
    }
    ~xz_compressor() override { lzma_end(&stream_); }

    std::uint64_t memory_in_use() const override { return allocator_.in_use(); }
    std::uint64_t peak_memory() const override { return allocator_.peak(); }

private:
    void check(lzma_ret ret, const char* step) const {
        if (ret == LZMA_OK || ret == LZMA_STREAM_END) return;
        throw failure(ret == LZMA_MEM_ERROR ? errc::too_large : errc::unsupported,
                      fmt::format("xz:{} compression: {} failed: {}", plan_.spec.level, step, describe(ret)));
    }

    // A new .xz stream; lzma reuses the stream's memory when it can.
    void start_stream() {
        auto preset = static_cast<std::uint32_t>(plan_.spec.level);
        if (plan_.threads > 1) {
            lzma_mt mt{};
            mt.threads = plan_.threads;
            mt.preset = preset;
            mt.check = LZMA_CHECK_CRC64;  // what `xz` writes by default
            check(lzma_stream_encoder_mt(&stream_, &mt), "starting the multi-threaded encoder");
        } else {
            check(lzma_easy_encoder(&stream_, preset, LZMA_CHECK_CRC64), "starting the encoder");
        }
        stream_open_ = true;
    }

    std::size_t do_compress(std::span<const std::byte> in, std::string& out, std::size_t limit) override {
        if (!stream_open_) start_stream();
        stream_.next_in = reinterpret_cast<const std::uint8_t*>(in.data());
        stream_.avail_in = in.size();
        std::size_t produced = 0;
        while (stream_.avail_in > 0 && produced < limit) {
            output_window window(out, window_size(limit, produced));
            stream_.next_out = window.bytes();
            stream_.avail_out = window.size();
            auto ret = lzma_code(&stream_, LZMA_RUN);
            auto used = window.size() - stream_.avail_out;
            window.use(used);
            produced += used;
            check(ret, "compressing");
        }
        auto consumed = in.size() - stream_.avail_in;
        stream_.next_in = nullptr;
        stream_.avail_in = 0;
        return consumed;
    }

    bool do_drain(drain_mode mode, std::string& out, std::size_t limit) override {
        if (!stream_open_) start_stream();  // finish() with no input: an empty stream
        // LZMA_FULL_FLUSH ends the block: both the single- and multi-threaded encoders
        // support it (LZMA_SYNC_FLUSH is single-threaded only).
        auto action = mode == drain_mode::flush ? LZMA_FULL_FLUSH : LZMA_FINISH;
        std::size_t produced = 0;
        while (produced < limit) {
            output_window window(out, window_size(limit, produced));
            stream_.next_out = window.bytes();
            stream_.avail_out = window.size();
            auto ret = lzma_code(&stream_, action);
            auto used = window.size() - stream_.avail_out;
            window.use(used);
            produced += used;
            check(ret, mode == drain_mode::flush ? "flushing" : "ending the stream");
            if (ret == LZMA_STREAM_END) {
                if (mode == drain_mode::end) stream_open_ = false;
                return true;
            }
        }
        return false;
    }

    void do_apply(const compression_plan& plan) override {
        plan_ = plan;  // the next stream starts with it
    }

    counting_allocator allocator_;  // outlives stream_ (declared first)
    lzma_stream stream_ = LZMA_STREAM_INIT;
    compression_plan plan_;
    bool stream_open_ = false;
};

class xz_decompressor final : public decompressor {
public:
    explicit xz_decompressor(const decompression_options& options)
        : decompressor(codec_kind::xz, options), budget_(options.memory_budget) {
        stream_.allocator = allocator_.lzma();
        lzma_ret ret;
        if (options.threads > 1) {
            lzma_mt mt{};
            mt.flags = LZMA_CONCATENATED;
            mt.threads = options.threads;
            mt.memlimit_threading = budget_;  // beyond it, liblzma decodes in one thread
            mt.memlimit_stop = budget_;
            ret = lzma_stream_decoder_mt(&stream_, &mt);
        } else {
            ret = lzma_stream_decoder(&stream_, budget_, LZMA_CONCATENATED);
        }
        if (ret != LZMA_OK)
            throw failure(errc::unsupported, fmt::format("xz decompression: starting the decoder failed: {}",
                                                         describe(ret)));
    }
    ~xz_decompressor() override { lzma_end(&stream_); }

private:
    [[noreturn]] void fail(lzma_ret ret) {
        auto offset = stream_.total_in;
        if (ret == LZMA_MEMLIMIT_ERROR)
            throw failure(errc::too_large,
                          fmt::format("xz: the stream at compressed offset {} needs {:.0f} MiB to decode, "
                                      "over the memory budget of {:.0f} MiB",
                                      offset, lzma_memusage(&stream_) / mib, budget_ / mib));
        if (ret == LZMA_MEM_ERROR) throw failure(errc::too_large, "xz decompression: out of memory");
        throw failure(errc::bad_input,
                      fmt::format("xz: corrupt input at compressed offset {}: {}; expected an .xz "
                                  "stream as written by `xz -c`",
                                  offset, describe(ret)));
    }

    step do_decompress(std::span<const std::byte> in, std::string& out, std::size_t limit,
                       std::uint64_t) override {
        stream_.next_in = reinterpret_cast<const std::uint8_t*>(in.data());
        stream_.avail_in = in.size();
        std::size_t produced = 0;
        bool full = false;
        while (produced < limit) {
            output_window window(out, window_size(limit, produced));
            stream_.next_out = window.bytes();
            stream_.avail_out = window.size();
            auto avail_before = stream_.avail_in;
            auto ret = lzma_code(&stream_, LZMA_RUN);
            auto used = window.size() - stream_.avail_out;
            window.use(used);
            produced += used;
            // LZMA_BUF_ERROR only says "no progress twice": not an error while running.
            if (ret != LZMA_OK && ret != LZMA_BUF_ERROR) fail(ret);
            full = stream_.avail_out == 0;
            if (!full && (stream_.avail_in == 0 || stream_.avail_in == avail_before)) break;
        }
        auto consumed = in.size() - stream_.avail_in;
        stream_.next_in = nullptr;
        stream_.avail_in = 0;
        return {consumed, full && produced >= limit};
    }

    bool do_finish(std::string& out, std::size_t limit, std::uint64_t offset) override {
        if (offset == 0)
            throw failure(errc::truncated, "xz: the input is empty; expected at least one .xz stream");
        std::size_t produced = 0;
        while (produced < limit) {
            output_window window(out, window_size(limit, produced));
            stream_.next_out = window.bytes();
            stream_.avail_out = window.size();
            auto ret = lzma_code(&stream_, LZMA_FINISH);
            auto used = window.size() - stream_.avail_out;
            window.use(used);
            produced += used;
            if (ret == LZMA_STREAM_END) return true;
            if (ret == LZMA_BUF_ERROR)
                throw failure(errc::truncated,
                              fmt::format("xz: input ends at compressed offset {} inside a stream; "
                                          "expected the rest of the .xz stream",
                                          offset));
            if (ret != LZMA_OK) fail(ret);
        }
        return false;
    }

    counting_allocator allocator_;
    std::uint64_t budget_;
    lzma_stream stream_ = LZMA_STREAM_INIT;
};

}  // namespace

std::unique_ptr<compressor> make_xz_compressor(compression_plan plan, const compression_options& options) {
    return std::make_unique<xz_compressor>(std::move(plan), options);
}

std::unique_ptr<decompressor> make_xz_decompressor(const decompression_options& options) {
    return std::make_unique<xz_decompressor>(options);
}

}  // namespace ferry::codec::detail
