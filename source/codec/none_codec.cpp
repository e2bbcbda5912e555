#include <algorithm>

#include "codecs.hpp"

namespace ferry::codec::detail {
namespace {

std::size_t copy_prefix(std::span<const std::byte> in, std::string& out, std::size_t limit) {
    auto n = std::min(in.size(), limit);
    out.append(reinterpret_cast<const char*>(in.data()), n);
    return n;
}

class none_compressor final : public compressor {
public:
    none_compressor(compression_plan plan, const compression_options& options)
        : compressor(std::move(plan), options) {}

private:
    std::size_t do_compress(std::span<const std::byte> in, std::string& out, std::size_t limit) override {
        return copy_prefix(in, out, limit);
    }
    bool do_drain(drain_mode, std::string&, std::size_t) override { return true; }
    void do_apply(const compression_plan&) override {}
};

class none_decompressor final : public decompressor {
public:
    explicit none_decompressor(const decompression_options& options)
        : decompressor(codec_kind::none, options) {}

private:
    step do_decompress(std::span<const std::byte> in, std::string& out, std::size_t limit,
                       std::uint64_t) override {
        return {copy_prefix(in, out, limit), false};
    }
    bool do_finish(std::string&, std::size_t, std::uint64_t) override { return true; }
};

}  // namespace

std::unique_ptr<compressor> make_none_compressor(compression_plan plan, const compression_options& options) {
    return std::make_unique<none_compressor>(std::move(plan), options);
}

std::unique_ptr<decompressor> make_none_decompressor(const decompression_options& options) {
    return std::make_unique<none_decompressor>(options);
}

}  // namespace ferry::codec::detail
