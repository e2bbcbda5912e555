// Where the store lives and what a store path looks like.
//
// The store directory is configuration, never a constant in logic: Nix takes it
// from NIX_STORE_DIR (default /nix/store), Guix from NIX_STORE_DIR / its build
// configuration (/gnu/store). A store path is <store dir>/<32 nix-base32 chars>-<name>
// where the name is 1..211 characters of [0-9a-zA-Z+-._?=] (Nix 2.8 path.cc).
#pragma once

#include <string>
#include <string_view>

namespace ferry::store {

enum class store_flavour { nix, guix };

struct store_config {
    store_flavour flavour = store_flavour::nix;
    std::string store_dir;      // e.g. /nix/store (no trailing slash)
    std::string state_dir;      // e.g. /nix/var/nix (Guix: /var/guix)
    std::string database_path;  // the SQLite file

    // Nix: NIX_STORE_DIR (/nix/store), NIX_STATE_DIR (/nix/var/nix), db at <state>/db/db.sqlite.
    // Guix: NIX_STORE_DIR (/gnu/store), NIX_STATE_DIR (/var/guix),
    //       db at $GUIX_DATABASE_DIRECTORY/db.sqlite or <state>/db/db.sqlite.
    static store_config from_environment(store_flavour flavour = store_flavour::nix);
    // Explicit directories; database path derived as from_environment does.
    static store_config make(store_flavour flavour, std::string store_dir, std::string state_dir);
};

inline constexpr std::size_t hash_part_length = 32;
inline constexpr std::size_t max_name_length = 211;

bool is_valid_path_name(std::string_view name);
bool is_valid_hash_part(std::string_view hash_part);

// A parsed store path: views into the caller's string.
struct store_path_parts {
    std::string_view base_name;  // <hash>-<name>
    std::string_view hash_part;
    std::string_view name;
};

// Throws ferry::failure(bad_input) naming the path and the rule it breaks.
store_path_parts parse_store_path(std::string_view store_dir, std::string_view path);
bool is_store_path(std::string_view store_dir, std::string_view path);

// Nix orders StorePath sets by base name (path.hh operator<); with one store
// directory that equals ordering the full paths, but compare base names to be exact.
struct store_path_less {
    bool operator()(std::string_view a, std::string_view b) const;
};

}  // namespace ferry::store
