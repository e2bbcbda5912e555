// The NAR format (Nix archive), sans I/O.
//
//   str("nix-archive-1") node
//   node      = "(" "type" ( regular | symlink | directory ) ")"
//   regular   = "regular" [ "executable" "" ] "contents" u64(size) bytes padding
//   symlink   = "symlink" "target" str(target)
//   directory = "directory" { "entry" "(" "name" str(name) "node" node ")" }*
//
// nar::parser is fed arbitrary chunks and returns one event at a time. It accepts
// exactly the canonical form every Nix/Guix writer produces (Nix's own reader also
// tolerates reordered fields; nobody writes them). It rejects, naming the stream
// offset: bad magic, unknown tokens, names that are empty, ".", "..", or contain
// '/' or NUL, entries not strictly increasing (unsorted or duplicate), non-zero
// padding, over-long tokens, nesting deeper than the limit, and bytes after the
// end (unless allow_trailing: an export bundle continues after its NARs).
// Only tokens (bounded by limits) are buffered; file contents are returned as views
// into the caller's chunk, so memory stays bounded whatever the file sizes.
//
// The emitter functions append the same tokens; a writer streams file contents
// itself between regular_header() and regular_end().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::protocol::nar {

inline constexpr std::string_view magic = "nix-archive-1";

enum class event_type {
    directory,      // a directory node begins
    entry,          // text = entry name; the entry's node follows
    regular,        // executable, size; then data events totalling size, then regular_end
    data,           // text = a piece of the current file's contents
    regular_end,
    symlink,        // text = target
    entry_end,
    directory_end,
    end,            // the top-level node is complete
};

struct event {
    event_type type;
    std::string_view text;   // valid until the next call to parser::next
    bool executable = false;
    std::uint64_t size = 0;
    std::uint64_t offset = 0;  // stream offset where this construct starts
};

struct parser_limits {
    std::uint64_t max_name = 255;      // NAME_MAX
    std::uint64_t max_target = 4095;   // PATH_MAX - 1
    std::size_t max_depth = 256;
    bool allow_trailing = false;
};

class parser {
public:
    explicit parser(parser_limits limits = {}, std::uint64_t base_offset = 0);

    struct step {
        std::size_t consumed;        // bytes of input used (all of them when no event)
        std::optional<event> ev;  // std::nullopt: feed more bytes
    };
    // Consumes a prefix of input. Call again with the rest after handling the event.
    // Throws ferry::failure (bad_input / too_large) with the offset of the problem.
    step next(std::string_view input);

    bool done() const { return state_ == state::done; }
    std::uint64_t offset() const { return offset_; }
    // At end of input: throws failure(truncated) unless the archive is complete.
    void finish() const;

private:
    enum class state {
        magic, open, type_key, type_value, regular_field, exec_value, contents_key, size, data, padding,
        close_node, after_node, target_key, target, dir_field, entry_open, name_key, name, node_key,
        entry_close, end, done,
    };
    bool take_token(std::string_view input, std::size_t& used, std::uint64_t max_length);
    bool take_u64(std::string_view input, std::size_t& used, std::uint64_t& value);
    void expect(std::string_view want) const;
    [[noreturn]] void fail(std::uint64_t at, const std::string& what) const;

    parser_limits limits_;
    state state_ = state::magic;
    std::uint64_t offset_;
    std::uint64_t token_start_ = 0;
    std::string partial_;   // bytes of the token being assembled
    std::string token_;     // the last complete token's value
    std::vector<std::string> previous_names_;  // one per open directory
    bool executable_ = false;
    std::uint64_t size_ = 0, left_ = 0, padding_left_ = 0, node_start_ = 0;
};

// Emitter: each appends the tokens for one construct.
void append_magic(std::string& out);
void append_regular_header(std::string& out, bool executable, std::uint64_t size);  // "(" "type" ... size
void append_regular_end(std::string& out, std::uint64_t size);  // padding + ")"
void append_symlink(std::string& out, std::string_view target); // a whole symlink node
void append_directory_begin(std::string& out);
void append_entry_begin(std::string& out, std::string_view name);  // "entry" "(" "name" n "node"
void append_entry_end(std::string& out);                            // ")"
void append_directory_end(std::string& out);                        // ")"
// The whole NAR of one regular file (what `nix-store --add` of a text file dumps).
std::string regular_file_nar(std::string_view contents, bool executable = false);

bool is_valid_entry_name(std::string_view name);

}  // namespace ferry::protocol::nar
