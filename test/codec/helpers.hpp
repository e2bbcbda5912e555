// Test helpers for the codec layer: sample data, whole-buffer drivers that check
// the per-call output bound, and running the stock zstd/xz tools.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "ferry/codec/compressor.hpp"
#include "ferry/codec/decompressor.hpp"

namespace ferry::codec::test {

// Deterministic text-like data (words, lines, numbers) and incompressible bytes.
std::string text_data(std::size_t size, unsigned seed = 1);
std::string noise_data(std::size_t size, unsigned seed = 2);

inline std::span<const std::byte> bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Feeds data in chunks of `chunk` bytes, then finishes. Every call's output is
// checked against `limit` (the compressor's output_limit); a call that makes no
// progress twice in a row fails the test.
std::string compress_all(compressor& c, std::string_view data, std::size_t chunk,
                         std::size_t limit = default_output_limit, bool finish = true);
std::string decompress_all(decompressor& d, std::string_view data, std::size_t chunk,
                           std::size_t limit = std::size_t{1} << 20);

// Runs `command` with input on stdin (through a temporary file) and returns its
// stdout; the exit status goes to *status.
std::string run_command(const std::string& command, std::string_view input, int* status);

}  // namespace ferry::codec::test
