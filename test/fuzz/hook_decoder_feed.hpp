// Shared by the hook-decoder fuzz targets: feeds `input` to a sans-I/O hook
// decoder in chunks of `chunk` bytes, answers every build request with `reply`,
// then signals EOF. Aborts (a finding) when the decoder breaks its contract:
// consuming more than it was given, or consuming while asking for more.
// Only ferry::failure may escape a decoder; it ends the feed quietly.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "ferry/protocol/hook_reply.hpp"
#include "ferry/util/error.hpp"

namespace ferry_fuzz {

template <class Request, class Decoder>
void feed_hook_decoder(Decoder& decoder, std::string_view input, std::size_t chunk, ferry::protocol::hook_reply reply) {
    std::string buffer;
    auto handle = [&](const typename Decoder::result& r) {
        if (r.consumed > buffer.size()) std::abort();
        if (r.need_more() && r.consumed != 0) std::abort();
        buffer.erase(0, r.consumed);
        if (std::holds_alternative<Request>(r.msg)) decoder.reply(reply);
        return !r.need_more();
    };
    try {
        for (std::size_t i = 0; i < input.size(); i += chunk) {
            buffer += input.substr(i, chunk);
            while (handle(decoder.decode(buffer)) && !buffer.empty()) {}
        }
        for (int n = 0; n < 4 && handle(decoder.decode_eof(buffer)); ++n) {}
    } catch (const ferry::failure&) {
    }
}

}  // namespace ferry_fuzz
