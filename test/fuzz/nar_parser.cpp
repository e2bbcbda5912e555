// Fuzz the sans-I/O NAR parser: arbitrary bytes, fed in pieces whose sizes come
// from the first input byte. It must either produce events or throw
// ferry::failure; data events must never exceed the announced file size.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ferry/protocol/nar.hpp"
#include "ferry/util/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::size_t piece = 1 + data[0] % 64;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    namespace nar = ferry::protocol::nar;
    nar::parser p;
    std::uint64_t announced = 0, seen = 0;
    try {
        std::size_t pos = 0;
        for (;;) {
            auto chunk = in.substr(pos, std::min(piece, in.size() - pos));
            auto s = p.next(chunk);
            pos += s.consumed;
            if (s.ev) {
                if (s.ev->type == nar::event_type::regular) announced = s.ev->size, seen = 0;
                if (s.ev->type == nar::event_type::data) {
                    seen += s.ev->text.size();
                    if (seen > announced) __builtin_trap();
                }
                if (s.ev->type == nar::event_type::entry && !nar::is_valid_entry_name(s.ev->text)) __builtin_trap();
            } else if (pos == in.size()) {
                break;
            }
        }
        p.finish();
    } catch (const ferry::failure&) {
    }
    return 0;
}
