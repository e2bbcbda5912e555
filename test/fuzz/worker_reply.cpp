// libFuzzer target: the daemon worker protocol client's decoder on arbitrary
// daemon bytes. Byte 0: bits 0-3 pick the feed chunk size; bytes 1-4 pick the
// requests made after the handshake (one of 3 kinds each, export_path's sign flag
// from bit 2). The input (from byte 5) starts with the daemon's hello, so both
// dialects and every version gate are reachable. Invariants: only ferry::failure
// escapes; "need more" never consumes; a message never consumes more than it was
// given; a data chunk lies inside the buffer it was decoded from.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "ferry/protocol/worker.hpp"
#include "ferry/util/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 5) return 0;
    using namespace ferry::protocol::worker;
    std::size_t chunk = std::size_t{1} << (data[0] & 0x0f);
    worker_limits limits;
    limits.max_references = 1024;
    limits.max_error_msg = 1 << 16;
    limits.max_log_line = 1 << 16;
    limits.max_data_chunk = 1 << 16;
    worker_client client(limits);
    client.hello();
    std::string_view input(reinterpret_cast<const char*>(data + 5), size - 5);
    std::string buffer;
    std::size_t next_request = 1;
    bool handshake_sent = false;
    auto send_next = [&] {
        if (next_request > 4) return;
        auto pick = data[next_request++];
        switch (pick % 3) {
        case 0: client.export_path("/nix/store/a-b", (pick & 4) != 0); break;
        case 1: client.query_path_info("/nix/store/a-b"); break;
        case 2: client.add_temp_root("/nix/store/a-b"); break;
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
                if (auto* d = std::get_if<data_chunk>(&r.msg)) {
                    if (d->bytes.data() < buffer.data() || d->bytes.data() + d->bytes.size() > buffer.data() + r.consumed)
                        std::abort();
                }
                if (std::holds_alternative<server_hello>(r.msg) && !handshake_sent) {
                    client.finish_handshake();
                    handshake_sent = true;
                }
                buffer.erase(0, r.consumed);
            }
        }
    } catch (const ferry::failure&) {
    }
    return 0;
}
