// S-expressions as libgcrypt reads them (keys, signatures and ACLs of Guix:
// store/guix_signature.hpp). Pure parsing, no crypto.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::store {

// An S-expression in libgcrypt's syntaxes: canonical (`4:data`), and advanced
// (tokens, "quoted strings" with C escapes, #hex#, |base64|, whitespace). An atom
// holds its bytes whatever the encoding; display hints are refused.
struct sexp {
    bool is_list = false;
    std::string atom;
    std::vector<sexp> items;

    bool operator==(const sexp&) const = default;
    // gcry_sexp_find_token: this list or the first nested list whose first
    // element is the atom `token`; null if none.
    const sexp* find(std::string_view token) const;
    // The atom at items[i] when this is a list and it is an atom; null otherwise.
    const std::string* atom_at(std::size_t i) const;
};

// Throws failure(bad_input) "<what>: offset N: <what was expected>". Nesting is
// limited to 64 levels; nothing is allocated beyond the input's size.
sexp parse_sexp(std::string_view text, std::string_view what);

}  // namespace ferry::store
