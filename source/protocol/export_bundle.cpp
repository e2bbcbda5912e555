#include "ferry/protocol/export_bundle.hpp"

#include <fmt/core.h>

#include <algorithm>

#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace ferry::protocol::export_bundle {

parser::parser(limits l) : limits_(l) { limits_.nar.allow_trailing = true; }

void parser::finish() const {
    if (state_ != state::done)
        throw failure(errc::truncated,
                      fmt::format("export bundle: input ends at offset {} before the end marker", offset_));
}

parser::step parser::next(std::string_view input) {
    step result;
    switch (state_) {
    case state::done:
        if (!input.empty())
            throw failure(errc::bad_input, fmt::format("export bundle: trailing data at offset {}", offset_));
        return result;
    case state::nar: {
        auto s = nar_->next(input);
        result.consumed = s.consumed;
        result.nar_bytes = input.substr(0, s.consumed);
        offset_ += s.consumed;
        if (s.ev) {
            result.ev = event{event_type::nar, *s.ev, nullptr, s.ev->offset};
            if (s.ev->type == nar::event_type::end) {
                state_ = state::trailer;
                unit_start_ = offset_;
            }
        }
        return result;
    }
    case state::flag:
    case state::trailer:
        break;
    }

    // Fixed-layout units: gather bytes in buffer_ until the unit parses. Appending
    // at most 64 KiB per attempt keeps the copying small; the limits bound the size.
    if (buffer_.empty()) unit_start_ = offset_;
    const std::uint64_t max_unit =
        8 * 4 + (8 + limits_.max_path + 8) * (2 + limits_.max_references) + 16 + limits_.max_signature;
    std::size_t unit_length = 0;
    for (;;) {
        wire::cursor c(buffer_, unit_start_);
        if (state_ == state::flag) {
            if (auto flag = c.u64()) {
                if (*flag == 0) {
                    state_ = state::done;
                    result.ev = event{event_type::end, {}, nullptr, unit_start_};
                } else if (*flag == 1) {
                    state_ = state::nar;
                    nar_.emplace(limits_.nar, unit_start_ + 8);
                    result.ev = event{event_type::item_begin, {}, nullptr, unit_start_};
                } else {
                    throw failure(errc::bad_input,
                                  fmt::format("export bundle: expected item flag 0 or 1 at offset {}, got {}",
                                              unit_start_, *flag));
                }
                unit_length = c.consumed();
                break;
            }
        } else {
            auto magic = c.u64();
            if (magic && *magic != export_magic)
                throw failure(errc::bad_input,
                              fmt::format("export bundle: expected export magic 0x4558494e at offset {}, got {:#x}",
                                          unit_start_, *magic));
            std::optional<std::string_view> path, deriver;
            std::optional<std::vector<std::string>> refs;
            std::optional<std::uint64_t> has_sig;
            std::optional<std::string_view> sig;
            if (magic && (path = c.string(limits_.max_path)) &&
                (refs = c.strings(limits_.max_references, limits_.max_path)) &&
                (deriver = c.string(limits_.max_path)) && (has_sig = c.u64())) {
                if (*has_sig > 1)
                    throw failure(errc::bad_input,
                                  fmt::format("export bundle: signature flag {} at offset {} (expected 0 or 1)",
                                              *has_sig, c.stream_offset() - 8));
                if (*has_sig == 0 || (sig = c.string(limits_.max_signature))) {
                    trailer_.path = std::string(*path);
                    trailer_.references = std::move(*refs);
                    trailer_.deriver = std::string(*deriver);
                    trailer_.signature.reset();
                    if (sig) trailer_.signature = std::string(*sig);
                    result.ev = event{event_type::item_end, {}, &trailer_, unit_start_};
                    state_ = state::flag;
                    nar_.reset();
                    unit_length = c.consumed();
                    break;
                }
            }
        }
        // Incomplete: take more input.
        if (result.consumed == input.size()) return result;
        if (buffer_.size() > max_unit)
            throw failure(errc::too_large,
                          fmt::format("export bundle: item trailer at offset {} exceeds {} bytes", unit_start_, max_unit));
        auto n = std::min<std::size_t>(input.size() - result.consumed, 64 * 1024);
        buffer_.append(input.substr(result.consumed, n));
        result.consumed += n;
        offset_ += n;
    }
    // The unit parsed; give back the bytes beyond it.
    auto excess = buffer_.size() - unit_length;
    result.consumed -= excess;
    offset_ -= excess;
    buffer_.clear();
    return result;
}

void append_item_begin(std::string& out) { wire::append_u64(out, 1); }

void append_item_trailer(std::string& out, const item_trailer& t) {
    wire::append_u64(out, export_magic);
    wire::append_string(out, t.path);
    wire::append_strings(out, t.references);
    wire::append_string(out, t.deriver);
    wire::append_u64(out, t.signature ? 1 : 0);
    if (t.signature) wire::append_string(out, *t.signature);
}

void append_end(std::string& out) { wire::append_u64(out, 0); }

}  // namespace ferry::protocol::export_bundle
