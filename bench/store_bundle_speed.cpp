// Export / import of whole bundles (not part of the tests), the two halves that
// bench/store_bundle_speed.sh times against `nix-store --export` / `--import`.
// The store is the one NIX_STORE_DIR / NIX_STATE_DIR name, as for nix-store.
//
//   store_bundle_speed export PATH...   bundle to stdout (1 MiB chunks)
//   store_bundle_speed import           bundle from stdin, restore + register
// Prints bytes, seconds and peak RSS (getrusage) to stderr.
// FERRY_HASH_THREADS=N: hash workers of the export (default: one per core), and
// for the import 0 = hash on the calling thread (default: a helper thread).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ferry/store/database.hpp"
#include "ferry/store/exporter.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/importer.hpp"

namespace store = ferry::store;

namespace {

// CPU seconds (user + system) of each live thread, main thread first: with idle
// cores the wall time cannot go below the largest of them (the critical path).
std::string thread_cpu() {
    std::vector<std::pair<long, double>> threads;
    const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
    for (auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream in(e.path() / "stat");
        std::string line;
        std::getline(in, line);
        std::istringstream fields(line.substr(line.rfind(')') + 2));  // after "pid (comm) "
        std::string f;
        double utime = 0, stime = 0;
        for (int i = 3; fields >> f; ++i) {
            if (i == 14) utime = std::stod(f);
            if (i == 15) stime = std::stod(f);
        }
        threads.emplace_back(std::stol(e.path().filename().string()), (utime + stime) / tick);
    }
    std::sort(threads.begin(), threads.end());
    std::string out;
    for (auto& [tid, cpu] : threads) out += fmt::format(" {:.2f}", cpu);
    return out;
}

void report(const char* what, std::uint64_t bytes, std::chrono::steady_clock::time_point t0) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    fmt::print(stderr, "ferry {}: {:.1f} MB in {:.2f} s ({:.0f} MB/s), peak RSS {} MB, CPU s per thread:{}\n", what,
               bytes / 1e6, s, bytes / 1e6 / s, u.ru_maxrss / 1024, thread_cpu());
}

bool write_all(int fd, std::string_view b) {
    while (!b.empty()) {
        auto n = ::write(fd, b.data(), b.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        b.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) try {
    std::string mode = argc > 1 ? argv[1] : "";
    auto config = store::store_config::from_environment();
    store::store_database db(config);
    const char* threads_env = std::getenv("FERRY_HASH_THREADS");
    const int threads = threads_env ? std::atoi(threads_env) : store::bundle_source::automatic;
    const char* chunk_env = std::getenv("FERRY_CHUNK_KB");  // export chunk size (experiments)
    const std::size_t chunk = chunk_env ? std::strtoul(chunk_env, nullptr, 10) << 10 : 1 << 20;
    auto t0 = std::chrono::steady_clock::now();
    if (mode == "export") {
        store::bundle_source src(db, std::vector<std::string>(argv + 2, argv + argc), chunk, threads);
        for (auto c = src.next_chunk(); !c.empty(); c = src.next_chunk())
            if (!write_all(1, c)) return 1;
        report("export", src.bytes_produced(), t0);
    } else if (mode == "import") {
        store::temp_roots roots(config);
        store::import_options options;
        options.hash_thread = threads != 0;
        store::bundle_importer importer(db, roots, options);
        const char* feed_env = std::getenv("FERRY_FEED_KB");  // read size (experiments)
        std::vector<char> buf(feed_env ? std::strtoul(feed_env, nullptr, 10) << 10 : 1 << 20);
        std::uint64_t total = 0;
        for (;;) {
            auto n = ::read(0, buf.data(), buf.size());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return 1;
            if (n == 0) break;
            total += static_cast<std::uint64_t>(n);
            importer.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
        }
        auto paths = importer.finish();
        report(fmt::format("import of {} paths", paths.size()).c_str(), total, t0);
    } else {
        std::fprintf(stderr, "usage: store_bundle_speed export PATH... | import\n");
        return 2;
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "store_bundle_speed: %s\n", e.what());
    return 1;
}
