// Fuzz the export bundle parser (with its embedded NAR parser), fed in pieces.
// The NAR bytes it reports must be a part of what it consumed.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ferry/protocol/export_bundle.hpp"
#include "ferry/util/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::size_t piece = 1 + data[0] % 200;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    namespace bundle = ferry::protocol::export_bundle;
    bundle::parser p;
    try {
        std::size_t pos = 0;
        for (;;) {
            auto chunk = in.substr(pos, std::min(piece, in.size() - pos));
            auto s = p.next(chunk);
            if (s.nar_bytes.size() > s.consumed) __builtin_trap();
            pos += s.consumed;
            if (s.ev && s.ev->type == bundle::event_type::item_end && !s.ev->trailer) __builtin_trap();
            if (!s.ev && pos == in.size()) break;
        }
        p.finish();
    } catch (const ferry::failure&) {
    }
    return 0;
}
