#include "ferry/store/hash.hpp"

#include <openssl/evp.h>

#include <stdexcept>

#include "ferry/util/error.hpp"

namespace ferry::store {

std::string to_base16(const unsigned char* data, std::size_t size) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        out.push_back(digits[data[i] >> 4]);
        out.push_back(digits[data[i] & 0xf]);
    }
    return out;
}

static std::size_t base32_length(std::size_t bytes) { return bytes == 0 ? 0 : (bytes * 8 - 1) / 5 + 1; }

std::string to_nix_base32(const unsigned char* data, std::size_t size) {
    auto length = base32_length(size);
    std::string out;
    out.reserve(length);
    // Character n (counted from the end) holds bits [5n, 5n+5) of the hash read as
    // a little-endian number.
    for (std::size_t n = length; n-- > 0;) {
        std::size_t bit = n * 5, i = bit / 8, j = bit % 8;
        unsigned c = data[i] >> j;
        if (i + 1 < size) c |= unsigned(data[i + 1]) << (8 - j);
        out.push_back(nix_base32_alphabet[c & 0x1f]);
    }
    return out;
}

std::optional<std::vector<unsigned char>> from_base16(std::string_view text) {
    if (text.size() % 2) return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::vector<unsigned char> out(text.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    return out;
}

std::optional<std::vector<unsigned char>> from_nix_base32(std::string_view text, std::size_t bytes) {
    if (text.size() != base32_length(bytes)) return std::nullopt;
    std::vector<unsigned char> out(bytes, 0);
    for (std::size_t k = 0; k < text.size(); ++k) {
        auto digit = nix_base32_alphabet.find(text[k]);
        if (digit == std::string_view::npos) return std::nullopt;
        std::size_t n = text.size() - 1 - k, bit = n * 5, i = bit / 8, j = bit % 8;
        out[i] |= static_cast<unsigned char>(digit << j);
        unsigned carry = unsigned(digit) >> (8 - j);
        if (i + 1 < bytes)
            out[i + 1] |= static_cast<unsigned char>(carry);
        else if (carry)
            return std::nullopt;
    }
    return out;
}

std::optional<sha256_digest> parse_sha256(std::string_view text) {
    if (text.starts_with("sha256:")) text.remove_prefix(7);
    std::optional<std::vector<unsigned char>> raw;
    if (text.size() == 64) raw = from_base16(text);
    else if (text.size() == 52) raw = from_nix_base32(text, 32);
    if (!raw) return std::nullopt;
    sha256_digest d;
    std::copy(raw->begin(), raw->end(), d.begin());
    return d;
}

std::string sha256_db_string(const sha256_digest& d) { return "sha256:" + to_base16(d); }

struct sha256::state {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~state() { EVP_MD_CTX_free(ctx); }
};

sha256::sha256() : state_(std::make_unique<state>()) {
    if (!state_->ctx || EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
}
sha256::~sha256() = default;
sha256::sha256(sha256&&) noexcept = default;
sha256& sha256::operator=(sha256&&) noexcept = default;

void sha256::update(std::string_view bytes) {
    if (EVP_DigestUpdate(state_->ctx, bytes.data(), bytes.size()) != 1)
        throw std::runtime_error("EVP_DigestUpdate failed");
}

sha256_digest sha256::finish() {
    sha256_digest d;
    unsigned int size = 0;
    if (EVP_DigestFinal_ex(state_->ctx, d.data(), &size) != 1 || size != d.size())
        throw std::runtime_error("EVP_DigestFinal_ex failed");
    EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr);
    return d;
}

sha256_digest sha256_of(std::string_view bytes) {
    sha256 h;
    h.update(bytes);
    return h.finish();
}

}  // namespace ferry::store
