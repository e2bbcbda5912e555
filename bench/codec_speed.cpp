// Standalone codec benchmark (not part of the tests): compresses one file in memory
// with ferry's codec stages and prints MB/s (10^6 bytes of input per second of
// wall time), CPU use, ratio, ferry's decompression speed, and the memory estimate
// next to the measured peak. Build and data: bench/codec_speed.sh.
//
//   codec_speed FILE [SPEC:THREADS[@MiB] ...]
//   codec_speed --plan      (memory estimates of every level, no data needed)
// SPEC as on the command line (zstd:3, xz:0, none); THREADS 1-N; @MiB limits the
// input to its first MiB (for the slow levels). Default: a fixed list.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ferry/codec/compressor.hpp"
#include "ferry/codec/decompressor.hpp"
#include "ferry/util/error.hpp"

namespace {

using namespace ferry::codec;

struct config {
    codec_spec spec;
    unsigned threads;
    std::size_t limit_mib;  // 0 = whole file
};

config parse_config(const std::string& text) {
    config c{};
    auto at = text.find('@');
    auto head = text.substr(0, at);
    c.limit_mib = at == std::string::npos ? 0 : std::stoul(text.substr(at + 1));
    auto colon = head.rfind(':');
    c.threads = static_cast<unsigned>(std::stoul(head.substr(colon + 1)));
    c.spec = parse_codec_spec(head.substr(0, colon));
    return c;
}

double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

std::span<const std::byte> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

void run(const config& c, std::string_view data) {
    if (c.limit_mib != 0 && data.size() > (c.limit_mib << 20)) data = data.substr(0, c.limit_mib << 20);
    constexpr std::size_t chunk = 1 << 20;  // what the pipeline hands a stage

    auto comp = make_compressor(c.spec, {.threads = c.threads});
    std::string packed, out;
    packed.reserve(data.size() / 2);
    auto cpu0 = cpu_seconds();
    auto t0 = std::chrono::steady_clock::now();
    for (auto rest = data; !rest.empty();) {
        rest.remove_prefix(comp->feed(as_bytes(rest.substr(0, chunk)), out));
        packed += out;
        out.clear();
    }
    while (!comp->finish(out)) {
        packed += out;
        out.clear();
    }
    packed += out;
    out.clear();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = cpu_seconds() - cpu0;

    auto dec = make_decompressor(c.spec.kind);
    std::uint64_t plain = 0;
    auto d0 = std::chrono::steady_clock::now();
    for (auto rest = std::string_view(packed); !rest.empty() || dec->has_pending_output();) {
        rest.remove_prefix(dec->feed(as_bytes(rest.substr(0, chunk)), out));
        plain += out.size();
        out.clear();
    }
    while (!dec->finish(out)) {
        plain += out.size();
        out.clear();
    }
    plain += out.size();
    double dseconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
    if (plain != data.size()) throw std::runtime_error("round trip size mismatch");

    fmt::print("| {:<7} | {:>2}/{:<2} | {:>5.0f} | {:>8.1f} | {:>4.0f}% | {:>5.2f} | {:>8.0f} | {:>6.0f} | {:>6.0f} |\n",
               to_string(c.spec), comp->plan().threads, c.threads, data.size() / 1e6,
               data.size() / 1e6 / seconds, 100 * cpu / seconds,
               packed.empty() ? 0.0 : double(data.size()) / double(packed.size()), data.size() / 1e6 / dseconds,
               comp->plan().memory_estimate / 1048576.0, comp->peak_memory() / 1048576.0);
    std::fflush(stdout);
}

void print_plans() {
    fmt::print("| codec   | est MiB 1 thread | est MiB 2 threads | threads granted of 2 in 128 MiB |\n");
    fmt::print("|---------|------------------|-------------------|---------------------------------|\n");
    auto row = [](codec_spec spec) {
        std::string granted;
        try {
            granted = std::to_string(plan_compression(spec, 2).threads);
        } catch (const ferry::failure& f) {
            granted = f.what();
        }
        fmt::print("| {:<7} | {:>16.1f} | {:>17.1f} | {} |\n", to_string(spec),
                   compression_memory(spec, 1) / 1048576.0, compression_memory(spec, 2) / 1048576.0, granted);
    };
    for (int level = min_zstd_level; level <= max_zstd_level; ++level) row({codec_kind::zstd, level});
    for (int level = min_xz_level; level <= max_xz_level; ++level) row({codec_kind::xz, level});
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "--plan") {
        print_plans();
        return 0;
    }
    if (argc < 2) {
        std::fprintf(stderr, "usage: codec_speed FILE [SPEC:THREADS[@MiB] ...]\n");
        return 2;
    }
    std::ifstream file(argv[1], std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    std::vector<std::string> specs(argv + 2, argv + argc);
    if (specs.empty())
        specs = {"none:1",    "zstd:1:1", "zstd:1:2",    "zstd:3:1",   "zstd:3:2",   "zstd:6:1",
                 "zstd:6:2",  "zstd:9:1", "zstd:9:2",    "zstd:19:1@16", "zstd:19:2@16", "xz:0:1@64",
                 "xz:0:2@64", "xz:3:2@16", "xz:6:1@16"};
    fmt::print("input: {} ({:.0f} MB); MB = 10^6 bytes of input; threads = granted/requested "
               "(128 MiB budget)\n\n",
               argv[1], data.size() / 1e6);
    fmt::print("| codec   | thr   | MB in | comp MB/s | CPU   | ratio | dec MB/s | est MiB | peak MiB |\n");
    fmt::print("|---------|-------|-------|-----------|-------|-------|----------|---------|----------|\n");
    for (const auto& s : specs) {
        try {
            run(parse_config(s), data);
        } catch (const std::exception& e) {
            fmt::print("| {:<7} | refused: {}\n", s, e.what());
        }
    }
}
