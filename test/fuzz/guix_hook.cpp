// libFuzzer target: the Guix build-hook decoder (request lines and the two path
// lines after accept) on arbitrary bytes, plus the request-line parser alone.
// Byte 0: bits 0-3 pick the feed chunk size, bit 4 the reply (accept or decline).
// Invariants: only ferry::failure escapes; "need more" never consumes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "ferry/protocol/guix_hook.hpp"
#include "ferry/util/error.hpp"
#include "hook_decoder_feed.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    using namespace ferry::protocol;
    std::size_t chunk = std::size_t{1} << (data[0] & 0x0f);
    auto reply = (data[0] & 0x10) != 0 ? hook_reply::accept : hook_reply::decline;
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    try {
        auto line = input.substr(0, input.find('\n'));
        auto request = parse_guix_request_line(line, 1);
        if (request.drv_path.empty() || request.system.empty()) std::abort();
    } catch (const ferry::failure&) {
    }
    guix_hook_limits limits;
    limits.max_line = 1 << 16;
    limits.max_paths = 1024;
    guix_hook_decoder decoder(limits);
    ferry_fuzz::feed_hook_decoder<guix_build_request>(decoder, input, chunk, reply);
    return 0;
}
