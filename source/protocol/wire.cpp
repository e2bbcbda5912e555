#include "ferry/protocol/wire.hpp"

#include <algorithm>

#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::protocol::wire {

void append_u64(std::string& out, std::uint64_t value) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void append_string(std::string& out, std::string_view value) {
    append_u64(out, value.size());
    out.append(value);
    out.append(padding_of(value.size()), '\0');
}

void append_strings(std::string& out, const std::vector<std::string>& values) {
    append_u64(out, values.size());
    for (const auto& v : values) append_string(out, v);
}

std::optional<std::uint64_t> cursor::u64() {
    if (bytes_.size() - position_ < 8) return std::nullopt;
    std::uint64_t value = 0;
    for (int i = 0; i < 8; ++i)
        value |= std::uint64_t(static_cast<unsigned char>(bytes_[position_ + i])) << (8 * i);
    position_ += 8;
    return value;
}

std::optional<std::string_view> cursor::string(std::uint64_t max_length) {
    auto start = position_;
    auto length = u64();
    if (!length) return std::nullopt;
    if (*length > max_length)
        throw failure(errc::too_large, fmt::format("string of {} bytes at offset {} exceeds the limit of {}",
                                                   *length, base_offset_ + start, max_length));
    auto padded = *length + padding_of(*length);
    if (bytes_.size() - position_ < padded) {
        position_ = start;
        return std::nullopt;
    }
    auto value = bytes_.substr(position_, *length);
    for (auto i = *length; i < padded; ++i)
        if (bytes_[position_ + i] != '\0')
            throw failure(errc::bad_input,
                          fmt::format("non-zero padding at offset {}", base_offset_ + position_ + i));
    position_ += padded;
    return value;
}

std::optional<std::vector<std::string>> cursor::strings(std::uint64_t max_count, std::uint64_t max_length) {
    auto start = position_;
    auto count = u64();
    if (!count) return std::nullopt;
    if (*count > max_count)
        throw failure(errc::too_large, fmt::format("list of {} strings at offset {} exceeds the limit of {}",
                                                   *count, base_offset_ + start, max_count));
    std::vector<std::string> values;
    // Each string takes at least 8 bytes: never reserve more than the buffer can hold.
    values.reserve(std::min<std::uint64_t>(*count, (bytes_.size() - position_) / 8));
    for (std::uint64_t i = 0; i < *count; ++i) {
        auto s = string(max_length);
        if (!s) {
            position_ = start;
            return std::nullopt;
        }
        values.emplace_back(*s);
    }
    return values;
}

}  // namespace ferry::protocol::wire
