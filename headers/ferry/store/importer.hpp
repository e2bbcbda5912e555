// Restoring store paths and registering them, safely next to a running daemon.
//
// bundle_importer consumes an export bundle (`nix-store --export` format) in
// arbitrary chunks. The path of an item is only known after its NAR, so each NAR
// is restored to a fresh store-path-shaped temporary name that was temp-rooted
// first; at the item's end ferry temp-roots the real path, locks it (fcntl on
// <path>.lock, skipped for the paths the caller says the daemon already locked),
// re-checks validity, renames the temporary into place, and registers it in one
// short transaction, checking that every reference is valid or was imported
// earlier in this bundle. An already-valid path is skipped (its restored copy
// removed), as Nix's import does.
//
// nar_importer restores one NAR whose path info is known beforehand (serve
// protocol DumpStorePath, AddToStoreNar): directly at the locked target, then
// checks the NAR hash and size before registering.
//
// On any failure — malformed input, I/O error, hash mismatch, invalid reference,
// a database error — what was written for the current item is removed, so the
// store never holds a half-written or unregistered path left by ferry. Items
// registered before the failure stay valid (they are complete).
//
// Speed: bundle_importer hashes the NAR bytes on a helper thread (unless
// import_options::hash_thread is false) while the calling thread writes the files
// from the same bytes; feed() returns only once both are done with them, so
// nothing is copied and the caller's buffer may be reused at once.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/protocol/export_bundle.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/hash.hpp"
#include "ferry/store/nar_restore.hpp"

namespace ferry::store {

struct import_options {
    // Output paths whose <path>.lock the daemon already holds (the build hook's
    // caller): ferry must not lock them (it would deadlock on the daemon).
    std::set<std::string> locked_by_caller;
    // Hash on a helper thread (bundle_importer), in parallel with writing files.
    bool hash_thread = true;
    // Non-empty (bundle_importer): what the sender's store says about each path it
    // was asked for (serve QueryPathInfos). Every item must be one of them, with
    // the same NAR hash, size and references, or it is rejected before it is
    // registered: the bundle itself carries no hash, so this is what catches an
    // exporter that emits corrupt file contents or a forged reference.
    std::map<std::string, path_info> expected;
};

class hash_worker;

class bundle_importer {
public:
    bundle_importer(store_database& db, temp_roots& roots, import_options options = {});
    ~bundle_importer();

    void feed(std::string_view bytes);
    // Throws failure(truncated) if the bundle did not end. Returns every item's path
    // in bundle order (imported or already valid).
    std::vector<std::string> finish();
    const std::vector<std::string>& paths() const { return paths_; }
    std::uint64_t bytes_restored() const { return nar_bytes_total_; }

private:
    void begin_item();
    void end_item(const protocol::export_bundle::item_trailer& t);
    void abort_item() noexcept;
    void hash_nar_bytes(std::string_view bytes);
    void submit_pending();
    void settle_hashing();  // the bytes of this feed() are all hashed
    sha256_digest item_digest();

    store_database& db_;
    temp_roots& roots_;
    import_options options_;
    protocol::export_bundle::parser parser_;
    std::optional<nar_restorer> restorer_;
    std::string temp_path_;
    sha256 hash_;
    std::unique_ptr<hash_worker> worker_;  // null: hash on the calling thread
    std::string_view pending_;             // NAR bytes of this feed() not yet given to worker_
    std::uint64_t last_ticket_ = 0;
    std::uint64_t nar_size_ = 0, nar_bytes_total_ = 0;
    std::vector<std::string> paths_;
    std::set<std::string> batch_;  // paths valid thanks to this bundle
};

class nar_importer {
public:
    // info.path, references, deriver, and optionally nar_hash (either encoding) and
    // nar_size (0 = unknown) to check against.
    nar_importer(store_database& db, temp_roots& roots, path_info info, import_options options = {});
    ~nar_importer();
    // False if the path was already valid: then feed() only parses and discards.
    bool needed() const { return needed_; }
    void feed(std::string_view bytes);
    void finish();

private:
    store_database& db_;
    path_info info_;
    path_lock lock_;
    bool needed_ = true;
    std::optional<nar_restore_stream> stream_;
    std::optional<protocol::nar::parser> discard_;
};

// Steps shared by both importers: put `from` (complete, canonical) at info.path and
// register it; removes what it wrote on failure. The caller holds the lock.
void install_and_register(store_database& db, const std::string& from, const path_info& info);

}  // namespace ferry::store
