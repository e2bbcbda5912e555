#include "codec/helpers.hpp"

#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <fstream>
#include <random>
#include <sys/wait.h>
#include <unistd.h>

namespace ferry::codec::test {

std::string text_data(std::size_t size, unsigned seed) {
    static const char* words[] = {"store", "path", "nix", "derivation", "closure", "the", "a", "of",
                                  "build", "output", "hash", "sha256", "lib", "share", "usr", "bin",
                                  "ferry", "remote", "machine", "zstd", "xz", "compress", "level"};
    std::mt19937 rng(seed);
    std::string s;
    s.reserve(size + 32);
    while (s.size() < size) {
        auto r = rng();
        if (r % 13 == 0) {
            s += std::to_string(r % 100000);
        } else {
            s += words[r % std::size(words)];
        }
        s += (r % 11 == 0) ? '\n' : ' ';
    }
    s.resize(size);
    return s;
}

std::string noise_data(std::size_t size, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::string s(size, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
}

std::string compress_all(compressor& c, std::string_view data, std::size_t chunk, std::size_t limit,
                         bool finish) {
    std::string result, out;
    int stalls = 0;
    while (!data.empty()) {
        auto piece = data.substr(0, chunk);
        auto n = c.feed(bytes(piece), out);
        BOOST_REQUIRE_LE(out.size(), limit);
        stalls = (n == 0 && out.empty()) ? stalls + 1 : 0;
        BOOST_REQUIRE_LT(stalls, 2);
        data.remove_prefix(n);
        result += out;
        out.clear();
    }
    if (finish) {
        for (int calls = 0;; ++calls) {
            bool done = c.finish(out);
            BOOST_REQUIRE_LE(out.size(), limit);
            BOOST_REQUIRE(done || !out.empty());
            result += out;
            out.clear();
            if (done) break;
        }
    }
    return result;
}

std::string decompress_all(decompressor& d, std::string_view data, std::size_t chunk, std::size_t limit) {
    std::string result, out;
    int stalls = 0;
    while (!data.empty() || d.has_pending_output()) {
        auto piece = data.substr(0, chunk);
        auto n = d.feed(bytes(piece), out);
        BOOST_REQUIRE_LE(out.size(), limit);
        stalls = (n == 0 && out.empty()) ? stalls + 1 : 0;
        BOOST_REQUIRE_LT(stalls, 2);
        data.remove_prefix(n);
        result += out;
        out.clear();
    }
    for (;;) {
        bool done = d.finish(out);
        BOOST_REQUIRE_LE(out.size(), limit);
        result += out;
        out.clear();
        if (done) break;
    }
    return result;
}

std::string run_command(const std::string& command, std::string_view input, int* status) {
    char path[] = "/tmp/ferry-codec-test-XXXXXX";
    int fd = mkstemp(path);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE_EQUAL(write(fd, input.data(), input.size()), static_cast<ssize_t>(input.size()));
    close(fd);
    std::string full = command + " < " + path;
    FILE* pipe = popen(full.c_str(), "r");
    BOOST_REQUIRE(pipe != nullptr);
    std::string output;
    char buffer[65536];
    std::size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    int raw = pclose(pipe);
    unlink(path);
    *status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    return output;
}

}  // namespace ferry::codec::test
