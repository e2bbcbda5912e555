// Writable space at the end of a std::string for a C library to fill: the string
// grows by `room` bytes, and shrinks back to what was used when the window closes
// (also when the library call throws).
#pragma once

#include <cstddef>
#include <string>

namespace ferry::codec::detail {

// Large enough for zstd's blocks (128 KiB), small enough that growing the string
// by a window costs little when a call produces few bytes.
inline constexpr std::size_t window_chunk = std::size_t{256} << 10;

class output_window {
public:
    output_window(std::string& out, std::size_t room) : out_(out), start_(out.size()), room_(room) {
        out_.resize(start_ + room_);
    }
    ~output_window() { out_.resize(start_ + used_); }
    output_window(const output_window&) = delete;
    output_window& operator=(const output_window&) = delete;

    void* data() { return out_.data() + start_; }
    unsigned char* bytes() { return reinterpret_cast<unsigned char*>(out_.data() + start_); }
    std::size_t size() const { return room_; }
    void use(std::size_t used) { used_ = used; }

private:
    std::string& out_;
    std::size_t start_;
    std::size_t room_;
    std::size_t used_ = 0;
};

inline std::size_t window_size(std::size_t limit, std::size_t produced) {
    auto left = limit - produced;
    return left < window_chunk ? left : window_chunk;
}

}  // namespace ferry::codec::detail
