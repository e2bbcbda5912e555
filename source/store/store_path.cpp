#include "ferry/store/store_path.hpp"

#include <fmt/core.h>

#include <cstdlib>

#include "ferry/store/hash.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store {

static std::string env_or(const char* name, std::string fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

static std::string strip_slash(std::string s) {
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    return s;
}

store_config store_config::make(store_flavour flavour, std::string store_dir, std::string state_dir) {
    store_config c;
    c.flavour = flavour;
    c.store_dir = strip_slash(std::move(store_dir));
    c.state_dir = strip_slash(std::move(state_dir));
    if (flavour == store_flavour::guix) {
        auto db_dir = env_or("GUIX_DATABASE_DIRECTORY", c.state_dir + "/db");
        c.database_path = strip_slash(db_dir) + "/db.sqlite";
    } else {
        c.database_path = c.state_dir + "/db/db.sqlite";
    }
    return c;
}

store_config store_config::from_environment(store_flavour flavour) {
    bool guix = flavour == store_flavour::guix;
    return make(flavour, env_or("NIX_STORE_DIR", guix ? "/gnu/store" : "/nix/store"),
                env_or("NIX_STATE_DIR", guix ? "/var/guix" : "/nix/var/nix"));
}

bool is_valid_path_name(std::string_view name) {
    if (name.empty() || name.size() > max_name_length) return false;
    for (char c : name)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' ||
              c == '-' || c == '.' || c == '_' || c == '?' || c == '='))
            return false;
    // Nix 2.8 accepts names starting with '.', but never "." or ".." as whole names
    // after the hash, which cannot occur since the hash part precedes them.
    return true;
}

bool is_valid_hash_part(std::string_view h) {
    if (h.size() != hash_part_length) return false;
    for (char c : h)
        if (nix_base32_alphabet.find(c) == std::string_view::npos) return false;
    return true;
}

store_path_parts parse_store_path(std::string_view store_dir, std::string_view path) {
    auto fail = [&](std::string_view why) {
        throw failure(errc::bad_input, fmt::format("'{}' is not a store path: {}", path, why));
    };
    if (path.size() <= store_dir.size() + 1 || !path.starts_with(store_dir) || path[store_dir.size()] != '/')
        fail(fmt::format("not directly inside the store directory {}", store_dir));
    auto base = path.substr(store_dir.size() + 1);
    if (base.find('/') != std::string_view::npos) fail("it has a '/' after the store directory");
    if (base.size() < hash_part_length + 2 || base[hash_part_length] != '-')
        fail("expected 32 hash characters, '-', then a name");
    auto hash = base.substr(0, hash_part_length), name = base.substr(hash_part_length + 1);
    if (!is_valid_hash_part(hash)) fail("the hash part has a character outside Nix's base-32 alphabet");
    if (!is_valid_path_name(name))
        fail("the name must be 1..211 characters of 0-9 a-z A-Z + - . _ ? =");
    return {base, hash, name};
}

bool is_store_path(std::string_view store_dir, std::string_view path) {
    try {
        parse_store_path(store_dir, path);
        return true;
    } catch (const failure&) {
        return false;
    }
}

bool store_path_less::operator()(std::string_view a, std::string_view b) const {
    auto base = [](std::string_view p) {
        auto slash = p.rfind('/');
        return slash == std::string_view::npos ? p : p.substr(slash + 1);
    };
    return base(a) < base(b);
}

}  // namespace ferry::store
