// Export / import of whole bundles (not part of the tests), the two halves that
// bench/store_bundle_speed.sh times against `nix-store --export` / `--import`.
// The store is the one NIX_STORE_DIR / NIX_STATE_DIR name, as for nix-store.
//
//   store_bundle_speed export PATH...   bundle to stdout (1 MiB chunks)
//   store_bundle_speed import           bundle from stdin, restore + register
// Prints bytes, seconds and peak RSS (getrusage) to stderr.
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ferry/store/database.hpp"
#include "ferry/store/exporter.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/importer.hpp"

namespace store = ferry::store;

namespace {

void report(const char* what, std::uint64_t bytes, std::chrono::steady_clock::time_point t0) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    fmt::print(stderr, "ferry {}: {:.1f} MB in {:.2f} s ({:.0f} MB/s), peak RSS {} MB\n", what, bytes / 1e6, s,
               bytes / 1e6 / s, u.ru_maxrss / 1024);
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
    auto t0 = std::chrono::steady_clock::now();
    if (mode == "export") {
        store::bundle_source src(db, std::vector<std::string>(argv + 2, argv + argc));
        for (auto c = src.next_chunk(); !c.empty(); c = src.next_chunk())
            if (!write_all(1, c)) return 1;
        report("export", src.bytes_produced(), t0);
    } else if (mode == "import") {
        store::temp_roots roots(config);
        store::bundle_importer importer(db, roots);
        std::vector<char> buf(1 << 20);
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
