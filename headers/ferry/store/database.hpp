// The local store's SQLite database (Nix 2.8 schema 10; Guix's older variant).
//
// Reads: path info, references, closures, Nix's topological order.
// Writes: registration of valid paths, exactly as Nix 2.8's registerValidPaths
// stores them (hash "sha256:<base16>", NULL for absent deriver / zero narSize /
// false ultimate / no sigs / no ca; Refs by id; DerivationOutputs for .drv files).
//
// Coexisting with a running daemon: the journal mode is never touched (the daemon
// keeps the database in WAL), every write is one short deferred transaction, the
// busy timeout is long, and a transaction that still gets SQLITE_BUSY (e.g. a
// read lock that cannot be upgraded) is rolled back and retried whole, as Nix's
// retrySQLite does. Like theirs, a writing connection uses `synchronous =
// normal` (no fsync per commit in WAL mode). Guix's ValidPaths has fewer columns: they are read from
// PRAGMA table_info, never assumed.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ferry/store/store_path.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace ferry::store {

struct path_info {
    std::string path;
    std::string nar_hash;                 // as stored: "sha256:<base16>"
    std::uint64_t nar_size = 0;
    std::string deriver;                  // "" = none
    std::vector<std::string> references;  // sorted (Nix's StorePathSet order)
    std::int64_t registration_time = 0;   // 0 = now, when registering
    bool ultimate = false;
    std::vector<std::string> sigs;
    std::string ca;                       // "" = none
};

struct database_options {
    bool read_only = false;
    std::chrono::milliseconds busy_timeout{60 * 60 * 1000};  // Nix uses one hour
    std::chrono::milliseconds retry_deadline{10 * 60 * 1000};
};

class store_database {
public:
    explicit store_database(store_config config, database_options options = {});
    ~store_database();
    store_database(const store_database&) = delete;
    store_database& operator=(const store_database&) = delete;

    const store_config& config() const { return config_; }
    bool has_column(const std::string& table, const std::string& column) const;

    bool is_valid(const std::string& path);
    std::optional<path_info> query_path_info(const std::string& path);
    std::vector<std::string> query_references(const std::string& path);  // sorted
    // The NAR bytes of those of `paths` that are valid here (what a send of them moves).
    std::uint64_t nar_size_total(const std::vector<std::string>& paths);

    // All paths reachable from `paths` through references (including them), sorted.
    // Throws failure(bad_input) naming an invalid start path.
    std::vector<std::string> closure(const std::vector<std::string>& paths);

    // Nix's Store::topoSortPaths: referrers before their references, ties broken by
    // a depth-first walk over the set in StorePath order (topo-sort.hh).
    std::vector<std::string> topo_sort(const std::vector<std::string>& paths);
    // The order `nix-store --export` writes: the reverse (references first).
    std::vector<std::string> export_order(const std::vector<std::string>& paths);

    // Registers paths in one transaction (retried on SQLITE_BUSY). Every reference
    // must be valid already or among `infos`. Already-valid paths get their info
    // updated, as Nix does. .drv paths are read from the store to fill
    // DerivationOutputs (when the table exists).
    void register_valid_paths(const std::vector<path_info>& infos);

private:
    template <typename F>
    void with_retry(const char* what, F&& body);
    std::optional<std::int64_t> path_id(const std::string& path);
    sqlite3_stmt* prepared(const std::string& sql);  // kept until the database closes

    store_config config_;
    database_options options_;
    sqlite3* db_ = nullptr;
    std::map<std::string, std::set<std::string>> columns_;
    std::map<std::string, sqlite3_stmt*> prepared_;
};

// Creates an empty database with Guix's schema (nix/libstore/schema.sql: ValidPaths
// without ultimate/sigs/ca, Refs, DerivationOutputs) in WAL mode, as a fresh Guix
// store has it: for throwaway stores (`ferry test`) and tests. The directory is
// created. Throws failure(bad_input) naming the file.
void create_guix_database(const std::string& file);

// Nix's topoSort over an explicit graph (exposed for tests and for callers that
// already hold the references). Throws failure(bad_input) on a cycle.
std::vector<std::string> nix_topo_sort(const std::vector<std::string>& paths,
                                       const std::map<std::string, std::vector<std::string>>& references);

}  // namespace ferry::store
