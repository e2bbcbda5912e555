// Store-layer throughput (not part of the tests): NAR dump of a tree (with SHA-256),
// NAR restore from a NAR file read in 1 MiB chunks (parse + write + canonicalise +
// SHA-256), and both piped chunk by chunk. MB/s = 10^6 NAR bytes per second of wall
// time; peak RSS shows that memory stays bounded. Build and data: bench/store_speed.sh.
//
//   store_speed TREE NAR_FILE OUT_DIR
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ferry/store/hash.hpp"
#include "ferry/store/nar_dump.hpp"
#include "ferry/store/nar_restore.hpp"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

long peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1024;
}

void report(const char* what, std::uint64_t bytes, double s, const std::string& hash) {
    fmt::print("{:<28} {:>8.1f} MB  {:>6.2f} s  {:>7.1f} MB/s  peak RSS {:>4} MB  {}\n", what, bytes / 1e6, s,
               bytes / 1e6 / s, peak_rss_mb(), hash);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: store_speed TREE NAR_FILE OUT_DIR\n");
        return 2;
    }
    std::string tree = argv[1], nar_file = argv[2], out = argv[3];
    namespace store = ferry::store;

    {  // dump
        auto t = std::chrono::steady_clock::now();
        store::nar_source src(tree);
        for (auto c = src.next_chunk(); !c.empty(); c = src.next_chunk()) {
        }
        report("dump (+sha256)", src.bytes_produced(), seconds_since(t), store::to_nix_base32(src.digest()));
    }
    {  // restore from file
        store::remove_tree(out);
        auto t = std::chrono::steady_clock::now();
        std::ifstream in(nar_file, std::ios::binary);
        std::vector<char> buf(1 << 20);
        store::nar_restore_stream r(out);
        while (in) {
            in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
            r.feed(std::string_view(buf.data(), static_cast<std::size_t>(in.gcount())));
        }
        auto d = r.finish();
        r.restorer().release();
        report("restore from NAR (+sha256)", r.nar_size(), seconds_since(t), store::to_nix_base32(d));
    }
    {  // dump piped into restore
        store::remove_tree(out);
        auto t = std::chrono::steady_clock::now();
        store::nar_source src(tree);
        store::nar_restore_stream r(out);
        for (auto c = src.next_chunk(); !c.empty(); c = src.next_chunk()) r.feed(c);
        auto d = r.finish();
        r.restorer().release();
        report("dump | restore", r.nar_size(), seconds_since(t), store::to_nix_base32(d));
    }
    store::remove_tree(out);
}
