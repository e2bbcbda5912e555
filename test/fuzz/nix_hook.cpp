// libFuzzer target: the Nix build-hook decoder (the hook's stdin) on arbitrary bytes.
// Byte 0: bits 0-3 pick the feed chunk size (1 byte .. 32 KiB), bits 4-5 the
// reply given to each request (accept, decline, postpone, decline-permanently).
// Invariants: only ferry::failure escapes; "need more" never consumes; a
// message never consumes more than it was given.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "ferry/protocol/nix_hook.hpp"
#include "ferry/util/error.hpp"
#include "hook_decoder_feed.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    using namespace ferry::protocol;
    std::size_t chunk = std::size_t{1} << (data[0] & 0x0f);
    auto reply = static_cast<hook_reply>((data[0] >> 4) & 3);
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    nix_hook_limits limits;
    limits.max_settings = 256;
    limits.max_setting_value = 4096;
    limits.max_paths = 1024;
    nix_hook_decoder decoder(limits);
    ferry_fuzz::feed_hook_decoder<nix_build_request>(decoder, input, chunk, reply);
    return 0;
}
