// The export bundle (`nix-store --export`, `guix archive --export`), sans I/O.
//
//   { u64(1) NAR u64(0x4558494e) str(path) u64(n) str(ref)*n str(deriver|"")
//     u64(0|1) [str(signature)] }*  u64(0)
//
// bundle_parser is fed arbitrary chunks. Each step returns the bytes consumed,
// at most one event, and — while inside a NAR — the consumed bytes that belong to
// it, so the caller can hash them (Nix checks the imported NAR's SHA-256 and size).
// NAR contents are checked by the embedded nar::parser. After the final u64(0)
// any further byte is an error (concatenated bundles are not one bundle).
// Trailer fields are bounded (limits) before anything is buffered.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/protocol/nar.hpp"

namespace ferry::protocol::export_bundle {

inline constexpr std::uint64_t export_magic = 0x4558494e;  // "NIXE"

struct item_trailer {
    std::string path;
    std::vector<std::string> references;
    std::string deriver;                   // "" when none
    std::optional<std::string> signature;  // Guix signs; Nix 2.8 writes flag 0
};

enum class event_type { item_begin, nar, item_end, end };

struct event {
    event_type type;
    nar::event nar{};                       // for event_type::nar
    const item_trailer* trailer = nullptr;  // for item_end; valid until the next call
    std::uint64_t offset = 0;
};

// A trailer is buffered whole until it parses: with these defaults at most about
// (1024 + 16) * 32768 bytes, and only as fast as a peer actually sends them.
struct limits {
    std::uint64_t max_path = 1024;
    std::uint64_t max_references = 1 << 15;
    std::uint64_t max_signature = 1 << 16;
    nar::parser_limits nar{};
};

class parser {
public:
    explicit parser(limits l = {});
    struct step {
        std::size_t consumed = 0;
        std::optional<event> ev;
        std::string_view nar_bytes;  // part of the consumed bytes that is NAR data
    };
    step next(std::string_view input);
    bool done() const { return state_ == state::done; }
    std::uint64_t offset() const { return offset_; }
    void finish() const;  // throws failure(truncated) unless the final 0 was read

private:
    enum class state { flag, nar, trailer, done };
    limits limits_;
    state state_ = state::flag;
    std::uint64_t offset_ = 0, unit_start_ = 0;
    std::string buffer_;
    std::optional<nar::parser> nar_;
    item_trailer trailer_;
};

// Emitter. An item is: append_item_begin, the NAR bytes, append_item_trailer.
void append_item_begin(std::string& out);
void append_item_trailer(std::string& out, const item_trailer& t);
void append_end(std::string& out);

}  // namespace ferry::protocol::export_bundle
