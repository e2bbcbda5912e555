// libFuzzer target: the `nix-store --serve` client's reply decoder on arbitrary
// server bytes. Byte 0: bits 0-3 pick the feed chunk size; bytes 1-4 pick the
// requests that were sent after hello (one of 6 kinds each), so every reply
// decoder is reached. Invariants: only ferry::failure escapes; "need more" never
// consumes; a reply never consumes more than it was given.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "ferry/protocol/serve.hpp"
#include "ferry/util/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 5) return 0;
    using namespace ferry::protocol::serve;
    std::size_t chunk = std::size_t{1} << (data[0] & 0x0f);
    serve_limits limits;
    limits.max_paths = 1024;
    limits.max_error_msg = 1 << 16;
    serve_client client(limits);
    client.hello();
    std::string_view input(reinterpret_cast<const char*>(data + 5), size - 5);
    std::string buffer;
    std::size_t next_request = 1;
    auto send_next = [&] {
        // Requests that need the server version can only be made after hello.
        if (next_request > 4) return;
        switch (data[next_request++] % 6) {
        case 0: client.query_valid_paths({"/nix/store/a-b"}, false, false); break;
        case 1: client.query_path_infos({"/nix/store/a-b"}); break;
        case 2: client.query_closure({"/nix/store/a-b"}, true); break;
        case 3: client.import_paths(); break;
        case 4: client.build_derivation("/nix/store/a-b.drv", {}, {}); break;
        case 5: client.dump_store_path("/nix/store/a-b"); break;
        }
    };
    try {
        for (std::size_t i = 0; i < input.size(); i += chunk) {
            buffer += input.substr(i, chunk);
            for (;;) {
                if (client.pending() == 0) send_next();
                if (client.pending() == 0) break;
                auto r = client.decode(buffer);
                if (r.consumed > buffer.size()) std::abort();
                if (r.need_more()) {
                    if (r.consumed != 0) std::abort();
                    break;
                }
                buffer.erase(0, r.consumed);
            }
        }
    } catch (const ferry::failure&) {
    }
    return 0;
}
