#include "ferry/store/importer.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "ferry/store/hash_worker.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store {

namespace bundle = protocol::export_bundle;

void install_and_register(store_database& db, const std::string& from, const path_info& info) {
    bool moved = from == info.path;
    try {
        if (!moved) {
            // An invalid leftover at the target (e.g. from a crashed builder) is
            // garbage: Nix deletes it too before restoring.
            remove_tree(info.path);
            if (::rename(from.c_str(), info.path.c_str()) != 0)
                throw failure(std::error_code(errno, std::system_category()),
                              fmt::format("cannot rename '{}' to '{}': {}", from, info.path, std::strerror(errno)));
            moved = true;
        }
        db.register_valid_paths({info});
    } catch (...) {
        remove_tree(moved ? info.path : from);
        throw;
    }
}

static void check_references(store_database& db, const std::set<std::string>& batch, const path_info& info) {
    for (const auto& r : info.references) {
        parse_store_path(db.config().store_dir, r);
        if (r != info.path && !batch.count(r) && !db.is_valid(r))
            throw failure(errc::bad_input,
                          fmt::format("cannot import '{}': its reference '{}' is not valid (references must come "
                                      "first)",
                                      info.path, r));
    }
}

// The sender's own record of the path (import_options::expected), when given.
static void check_expected(const std::map<std::string, path_info>& expected, const path_info& got) {
    if (expected.empty()) return;
    auto it = expected.find(got.path);
    if (it == expected.end())
        throw failure(errc::bad_input, fmt::format("cannot import '{}': the bundle holds a path that was not asked for",
                                                   got.path));
    const path_info& want = it->second;
    // An old sender (serve protocol < 2.4) reports no hash: then only the size counts.
    const auto want_hash = parse_sha256(want.nar_hash);
    const bool hash_differs = !want.nar_hash.empty() && want_hash != parse_sha256(got.nar_hash);
    if (hash_differs || (want.nar_size && want.nar_size != got.nar_size))
        throw failure(errc::bad_input,
                      fmt::format("cannot import '{}': its NAR (hash {}, {} bytes) is not what the sender's store "
                                  "records (hash {}, {} bytes): corrupted on the way or by the exporter",
                                  got.path, got.nar_hash, got.nar_size,
                                  want_hash ? sha256_db_string(*want_hash) : want.nar_hash, want.nar_size));
    auto refs = want.references;
    std::sort(refs.begin(), refs.end(), store_path_less{});
    if (refs != got.references) {
        auto list = [](const std::vector<std::string>& v) {
            std::string text;
            for (const auto& r : v) text += (text.empty() ? "" : ", ") + r;
            return "[" + text + "]";
        };
        throw failure(errc::bad_input, fmt::format("cannot import '{}': the bundle gives the references {}, the "
                                                   "sender's store records {}",
                                                   got.path, list(got.references), list(refs)));
    }
}

bundle_importer::bundle_importer(store_database& db, temp_roots& roots, import_options options)
    : db_(db), roots_(roots), options_(std::move(options)) {
    if (options_.hash_thread && std::thread::hardware_concurrency() > 1) worker_ = std::make_unique<hash_worker>();
}

bundle_importer::~bundle_importer() {
    if (worker_) worker_->drain();
    abort_item();
}

namespace {
// NAR bytes are handed to the worker in pieces of at least this size: each hand-
// over costs a lock and a wake-up, and what is left at the end of a feed() or an
// item (less than this) is hashed on the calling thread.
constexpr std::size_t worker_piece = 128 << 10;
}  // namespace

void bundle_importer::hash_nar_bytes(std::string_view bytes) {
    if (!worker_) return hash_.update(bytes);
    // Consecutive pieces of one feed() are adjacent in the caller's buffer.
    if (!pending_.empty() && pending_.data() + pending_.size() == bytes.data()) {
        pending_ = std::string_view(pending_.data(), pending_.size() + bytes.size());
    } else {
        submit_pending();
        pending_ = bytes;
    }
    if (pending_.size() >= worker_piece) submit_pending();
}

void bundle_importer::submit_pending() {
    if (pending_.empty()) return;
    last_ticket_ = worker_->submit(hash_, pending_);
    pending_ = {};
}

void bundle_importer::settle_hashing() {
    if (!worker_) return;
    worker_->wait(last_ticket_);
    hash_.update(pending_);  // after everything queued before it: the order holds
    pending_ = {};
}

sha256_digest bundle_importer::item_digest() {
    settle_hashing();
    return hash_.finish();
}

void bundle_importer::abort_item() noexcept {
    if (restorer_) {
        restorer_->abort();
        restorer_.reset();
    }
    if (!temp_path_.empty()) remove_tree(temp_path_);
    temp_path_.clear();
}

void bundle_importer::begin_item() {
    temp_path_ = random_store_path(db_.config(), "ferry-import");
    roots_.add(temp_path_);  // before anything exists under that name
    restorer_.emplace(temp_path_);
    nar_size_ = 0;
}

void bundle_importer::end_item(const bundle::item_trailer& t) {
    const auto& store_dir = db_.config().store_dir;
    path_info info;
    info.path = t.path;
    parse_store_path(store_dir, info.path);
    info.references = t.references;
    std::sort(info.references.begin(), info.references.end(), store_path_less{});
    if (!t.deriver.empty()) {
        parse_store_path(store_dir, t.deriver);
        info.deriver = t.deriver;
    }
    info.nar_hash = sha256_db_string(item_digest());
    info.nar_size = nar_size_;
    check_expected(options_.expected, info);
    check_references(db_, batch_, info);

    roots_.add(info.path);
    path_lock lock;
    if (!options_.locked_by_caller.count(info.path) && !db_.is_valid(info.path)) lock = path_lock(info.path, db_.config().flavour);
    if (db_.is_valid(info.path)) {
        abort_item();
    } else {
        restorer_->release();  // the tree now belongs to install_and_register
        restorer_.reset();
        auto from = std::move(temp_path_);
        temp_path_.clear();
        install_and_register(db_, from, info);
    }
    batch_.insert(info.path);
    paths_.push_back(info.path);
}

void bundle_importer::feed(std::string_view bytes) {
    try {
        for (;;) {
            auto step = parser_.next(bytes);
            if (!step.nar_bytes.empty()) {
                hash_nar_bytes(step.nar_bytes);
                nar_size_ += step.nar_bytes.size();
                nar_bytes_total_ += step.nar_bytes.size();
            }
            bytes.remove_prefix(step.consumed);
            if (!step.ev) break;
            switch (step.ev->type) {
            case bundle::event_type::item_begin: begin_item(); break;
            case bundle::event_type::nar: restorer_->on_event(step.ev->nar); break;
            case bundle::event_type::item_end: end_item(*step.ev->trailer); break;
            case bundle::event_type::end: break;
            }
        }
        settle_hashing();  // bytes is the caller's, valid only until we return
    } catch (...) {
        if (worker_) {
            worker_->drain();
            pending_ = {};
        }
        abort_item();
        throw;
    }
}

std::vector<std::string> bundle_importer::finish() {
    feed({});
    try {
        parser_.finish();
    } catch (...) {
        abort_item();
        throw;
    }
    return paths_;
}

nar_importer::nar_importer(store_database& db, temp_roots& roots, path_info info, import_options options)
    : db_(db), info_(std::move(info)) {
    parse_store_path(db_.config().store_dir, info_.path);
    std::sort(info_.references.begin(), info_.references.end(), store_path_less{});
    check_references(db_, {}, info_);
    roots.add(info_.path);
    if (!options.locked_by_caller.count(info_.path)) lock_ = path_lock(info_.path, db_.config().flavour);
    needed_ = !db_.is_valid(info_.path);
    if (needed_) {
        remove_tree(info_.path);  // invalid leftovers, under our lock
        stream_.emplace(info_.path);
    } else {
        discard_.emplace();
    }
}

nar_importer::~nar_importer() = default;  // an unfinished stream_ removes its tree

void nar_importer::feed(std::string_view bytes) {
    if (stream_) return stream_->feed(bytes);
    for (;;) {
        auto step = discard_->next(bytes);
        bytes.remove_prefix(step.consumed);
        if (!step.ev) break;
    }
}

void nar_importer::finish() {
    if (!stream_) {
        discard_->finish();
        return;
    }
    auto digest = stream_->finish();
    auto size = stream_->nar_size();
    try {
        if (!info_.nar_hash.empty()) {
            auto want = parse_sha256(info_.nar_hash);
            if (!want) throw failure(errc::bad_input, fmt::format("bad NAR hash '{}' for '{}'", info_.nar_hash, info_.path));
            if (*want != digest)
                throw failure(errc::bad_input, fmt::format("NAR hash mismatch for '{}': expected {}, got sha256:{}",
                                                           info_.path, info_.nar_hash, to_nix_base32(digest)));
        }
        if (info_.nar_size && info_.nar_size != size)
            throw failure(errc::bad_input, fmt::format("NAR size mismatch for '{}': expected {}, got {}", info_.path,
                                                       info_.nar_size, size));
        info_.nar_hash = sha256_db_string(digest);
        info_.nar_size = size;
        stream_->restorer().release();
        install_and_register(db_, info_.path, info_);
    } catch (...) {
        remove_tree(info_.path);
        throw;
    }
}

}  // namespace ferry::store
