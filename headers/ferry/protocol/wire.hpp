// Nix's wire primitives, shared by the NAR format, export bundles, the build-hook
// protocol and `nix-store --serve`: u64 little-endian integers, and strings as
// u64 length + bytes + zero padding to a multiple of 8.
//
// Encoding appends to a std::string. Decoding goes through wire::cursor, which
// reads from a buffer that may hold only a prefix of a message: a getter returns
// std::nullopt when it needs more bytes (nothing is consumed then), and throws
// ferry::failure for malformed input, naming the offset. Lengths are bounded by the
// caller, so a hostile 2^60 prefix never turns into an allocation.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::protocol::wire {

constexpr std::uint64_t padding_of(std::uint64_t length) { return (8 - length % 8) % 8; }

void append_u64(std::string& out, std::uint64_t value);
void append_string(std::string& out, std::string_view value);
void append_strings(std::string& out, const std::vector<std::string>& values);

class cursor {
public:
    // base_offset is added to offsets in error messages (the position of bytes[0]
    // in the whole stream).
    explicit cursor(std::string_view bytes, std::uint64_t base_offset = 0)
        : bytes_(bytes), base_offset_(base_offset) {}

    std::optional<std::uint64_t> u64();
    // A string of at most max_length bytes; the view points into the buffer.
    std::optional<std::string_view> string(std::uint64_t max_length);
    std::optional<std::vector<std::string>> strings(std::uint64_t max_count, std::uint64_t max_length);

    // Bytes consumed so far; a caller that got std::nullopt rewinds by keeping its
    // own copy of the cursor from before the attempt.
    std::size_t consumed() const { return position_; }
    std::string_view rest() const { return bytes_.substr(position_); }
    std::uint64_t stream_offset() const { return base_offset_ + position_; }

private:
    std::string_view bytes_;
    std::uint64_t base_offset_;
    std::size_t position_ = 0;
};

}  // namespace ferry::protocol::wire
