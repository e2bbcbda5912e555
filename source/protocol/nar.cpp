#include "ferry/protocol/nar.hpp"

#include <fmt/core.h>

#include <algorithm>

#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace ferry::protocol::nar {

static constexpr std::uint64_t max_keyword = 64;  // longest fixed token is "nix-archive-1"

static std::string printable(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 40)) {
        if (c >= 0x20 && c < 0x7f) out.push_back(c);
        else out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    }
    if (s.size() > 40) out += "...";
    return out;
}

bool is_valid_entry_name(std::string_view name) {
    return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
           name.find('\0') == std::string_view::npos;
}

parser::parser(parser_limits limits, std::uint64_t base_offset) : limits_(limits), offset_(base_offset) {}

void parser::fail(std::uint64_t at, const std::string& what) const {
    throw failure(errc::bad_input, fmt::format("NAR: {} at offset {}", what, at));
}

void parser::finish() const {
    if (state_ != state::done && state_ != state::end)
        throw failure(errc::truncated, fmt::format("NAR: input ends at offset {} inside the archive", offset_));
}

bool parser::take_u64(std::string_view input, std::size_t& used, std::uint64_t& value) {
    if (partial_.empty()) token_start_ = offset_;
    auto n = std::min<std::size_t>(8 - partial_.size(), input.size() - used);
    partial_.append(input.substr(used, n));
    used += n;
    offset_ += n;
    if (partial_.size() < 8) return false;
    wire::cursor c(partial_);
    value = *c.u64();
    partial_.clear();
    return true;
}

bool parser::take_token(std::string_view input, std::size_t& used, std::uint64_t max_length) {
    if (partial_.empty()) token_start_ = offset_;
    auto need = [&]() -> std::uint64_t {
        if (partial_.size() < 8) return 8;
        std::uint64_t length = *wire::cursor(std::string_view(partial_).substr(0, 8)).u64();
        if (length > max_length)
            throw failure(errc::too_large, fmt::format("NAR: string of {} bytes at offset {} exceeds the limit of {}",
                                                       length, token_start_, max_length));
        return 8 + length + wire::padding_of(length);
    };
    for (auto want = need(); partial_.size() < want; want = need()) {
        if (used == input.size()) return false;
        auto n = std::min<std::size_t>(want - partial_.size(), input.size() - used);
        partial_.append(input.substr(used, n));
        used += n;
        offset_ += n;
    }
    wire::cursor c(partial_, token_start_);
    token_ = std::string(*c.string(max_length));  // checks the padding
    partial_.clear();
    return true;
}

void parser::expect(std::string_view want) const {
    if (token_ != want) fail(token_start_, fmt::format("expected \"{}\", got \"{}\"", want, printable(token_)));
}

parser::step parser::next(std::string_view input) {
    std::size_t used = 0;
    auto emit = [&](event e) { return step{used, e}; };
    for (;;) {
        switch (state_) {
        case state::end:
            state_ = state::done;
            return emit({event_type::end, {}, false, 0, offset_});
        case state::done:
            if (used < input.size() && !limits_.allow_trailing) fail(offset_, "trailing data after the archive");
            return {used, std::nullopt};
        case state::data: {
            if (left_ == 0) {
                state_ = state::padding;
                padding_left_ = wire::padding_of(size_);
                continue;
            }
            if (used == input.size()) return {used, std::nullopt};
            auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left_, input.size() - used));
            event e{event_type::data, input.substr(used, n), false, 0, offset_};
            used += n;
            offset_ += n;
            left_ -= n;
            return emit(e);
        }
        case state::padding:
            while (padding_left_ > 0) {
                if (used == input.size()) return {used, std::nullopt};
                if (input[used] != '\0') fail(offset_, "non-zero padding after file contents");
                ++used;
                ++offset_;
                --padding_left_;
            }
            state_ = state::close_node;
            return emit({event_type::regular_end, {}, false, size_, offset_});
        case state::size:
            if (!take_u64(input, used, size_)) return {used, std::nullopt};
            left_ = size_;
            state_ = state::data;
            return emit({event_type::regular, {}, executable_, size_, node_start_});
        case state::after_node:
            if (previous_names_.empty()) {
                state_ = state::end;
            } else {
                state_ = state::entry_close;
            }
            continue;
        default:
            break;
        }

        std::uint64_t limit = state_ == state::name ? limits_.max_name
                              : state_ == state::target ? limits_.max_target
                                                        : max_keyword;
        if (!take_token(input, used, limit)) return {used, std::nullopt};

        switch (state_) {
        case state::magic:
            if (token_ != magic) fail(token_start_, fmt::format("bad magic \"{}\" (not a NAR)", printable(token_)));
            state_ = state::open;
            break;
        case state::open:
            expect("(");
            node_start_ = token_start_;
            state_ = state::type_key;
            break;
        case state::type_key:
            expect("type");
            state_ = state::type_value;
            break;
        case state::type_value:
            if (token_ == "regular") {
                executable_ = false;
                state_ = state::regular_field;
            } else if (token_ == "symlink") {
                state_ = state::target_key;
            } else if (token_ == "directory") {
                if (previous_names_.size() >= limits_.max_depth)
                    fail(token_start_, fmt::format("directories nested deeper than {}", limits_.max_depth));
                previous_names_.emplace_back();
                state_ = state::dir_field;
                return emit({event_type::directory, {}, false, 0, node_start_});
            } else {
                fail(token_start_, fmt::format("unknown node type \"{}\"", printable(token_)));
            }
            break;
        case state::regular_field:
            if (token_ == "executable") {
                executable_ = true;
                state_ = state::exec_value;
            } else if (token_ == "contents") {
                state_ = state::size;
            } else {
                fail(token_start_, fmt::format("expected \"executable\" or \"contents\", got \"{}\"", printable(token_)));
            }
            break;
        case state::exec_value:
            expect("");
            state_ = state::contents_key;
            break;
        case state::contents_key:
            expect("contents");
            state_ = state::size;
            break;
        case state::close_node:
            expect(")");
            state_ = state::after_node;
            break;
        case state::target_key:
            expect("target");
            state_ = state::target;
            break;
        case state::target:
            if (token_.empty() || token_.find('\0') != std::string::npos)
                fail(token_start_, "symlink target is empty or contains NUL");
            state_ = state::close_node;
            return emit({event_type::symlink, token_, false, 0, node_start_});
        case state::dir_field:
            if (token_ == ")") {
                previous_names_.pop_back();
                state_ = state::after_node;
                return emit({event_type::directory_end, {}, false, 0, token_start_});
            }
            expect("entry");
            state_ = state::entry_open;
            break;
        case state::entry_open:
            expect("(");
            state_ = state::name_key;
            break;
        case state::name_key:
            expect("name");
            state_ = state::name;
            break;
        case state::name: {
            if (!is_valid_entry_name(token_))
                fail(token_start_, fmt::format("invalid entry name \"{}\"", printable(token_)));
            auto& previous = previous_names_.back();
            if (!previous.empty() && token_ <= previous)
                fail(token_start_, fmt::format("entry \"{}\" {} \"{}\"", printable(token_),
                                               token_ == previous ? "duplicates" : "is not sorted after",
                                               printable(previous)));
            previous = token_;
            state_ = state::node_key;
            return emit({event_type::entry, token_, false, 0, token_start_});
        }
        case state::node_key:
            expect("node");
            state_ = state::open;
            break;
        case state::entry_close:
            expect(")");
            state_ = state::dir_field;
            return emit({event_type::entry_end, {}, false, 0, token_start_});
        default:
            fail(offset_, "internal parser state");
        }
    }
}

void append_magic(std::string& out) { wire::append_string(out, magic); }

void append_regular_header(std::string& out, bool executable, std::uint64_t size) {
    wire::append_string(out, "(");
    wire::append_string(out, "type");
    wire::append_string(out, "regular");
    if (executable) {
        wire::append_string(out, "executable");
        wire::append_string(out, "");
    }
    wire::append_string(out, "contents");
    wire::append_u64(out, size);
}

void append_regular_end(std::string& out, std::uint64_t size) {
    out.append(wire::padding_of(size), '\0');
    wire::append_string(out, ")");
}

std::string regular_file_nar(std::string_view contents, bool executable) {
    std::string out;
    append_magic(out);
    append_regular_header(out, executable, contents.size());
    out += contents;
    append_regular_end(out, contents.size());
    return out;
}

void append_symlink(std::string& out, std::string_view target) {
    wire::append_string(out, "(");
    wire::append_string(out, "type");
    wire::append_string(out, "symlink");
    wire::append_string(out, "target");
    wire::append_string(out, target);
    wire::append_string(out, ")");
}

void append_directory_begin(std::string& out) {
    wire::append_string(out, "(");
    wire::append_string(out, "type");
    wire::append_string(out, "directory");
}

void append_entry_begin(std::string& out, std::string_view name) {
    wire::append_string(out, "entry");
    wire::append_string(out, "(");
    wire::append_string(out, "name");
    wire::append_string(out, name);
    wire::append_string(out, "node");
}

void append_entry_end(std::string& out) { wire::append_string(out, ")"); }
void append_directory_end(std::string& out) { wire::append_string(out, ")"); }

}  // namespace ferry::protocol::nar
