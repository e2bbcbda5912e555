// SHA-256 and the two text encodings Nix uses for hashes.
//
// Nix's base-32 is not RFC 4648: the alphabet omits e, o, u, t and the digits are
// emitted from the most significant 5-bit group of a little-endian bit string
// (hash.cc printHash32). A 32-byte SHA-256 gives 52 characters; a 20-byte
// truncated hash (store path hash part) gives 32.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::store {

using sha256_digest = std::array<unsigned char, 32>;

inline constexpr std::string_view nix_base32_alphabet = "0123456789abcdfghijklmnpqrsvwxyz";

std::string to_base16(const unsigned char* data, std::size_t size);
std::string to_nix_base32(const unsigned char* data, std::size_t size);
template <std::size_t N>
std::string to_base16(const std::array<unsigned char, N>& a) { return to_base16(a.data(), N); }
template <std::size_t N>
std::string to_nix_base32(const std::array<unsigned char, N>& a) { return to_nix_base32(a.data(), N); }

// Decoders return std::nullopt on a bad character or length, or (base-32) on
// non-zero overflow bits — the input must be the canonical encoding.
std::optional<std::vector<unsigned char>> from_base16(std::string_view text);
std::optional<std::vector<unsigned char>> from_nix_base32(std::string_view text, std::size_t bytes);

// "sha256:<base16>" | "sha256:<base32>" | bare base16/base32 of 32 bytes.
std::optional<sha256_digest> parse_sha256(std::string_view text);
// The database form Nix 2.8 writes: "sha256:<64 hex digits>".
std::string sha256_db_string(const sha256_digest& d);

// Incremental SHA-256 over OpenSSL's EVP interface.
class sha256 {
public:
    sha256();
    ~sha256();
    sha256(sha256&&) noexcept;
    sha256& operator=(sha256&&) noexcept;
    void update(std::string_view bytes);
    sha256_digest finish();  // once; the object is then reset for reuse

private:
    struct state;
    std::unique_ptr<state> state_;
};

sha256_digest sha256_of(std::string_view bytes);

}  // namespace ferry::store
