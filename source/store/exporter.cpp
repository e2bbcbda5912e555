#include "ferry/store/exporter.hpp"

#include <fmt/core.h>

#include "ferry/protocol/export_bundle.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store {

namespace bundle = protocol::export_bundle;

bundle_source::bundle_source(store_database& db, const std::vector<std::string>& paths, std::size_t chunk_size)
    : db_(db), order_(db.export_order(paths)), chunk_size_(chunk_size) {}

std::string_view bundle_source::next_chunk() {
    out_.clear();
    if (trailer_pending_) finish_item();
    while (!done_ && out_.size() < chunk_size_) {
        if (index_ == order_.size()) {
            bundle::append_end(out_);
            done_ = true;
            break;
        }
        if (!nar_) {
            bundle::append_item_begin(out_);
            nar_.emplace(order_[index_], chunk_size_);
        }
        auto chunk = nar_->next_chunk();
        // A large NAR chunk with nothing before it is handed out as it is: copying
        // it into out_ cost about 6% of an export's CPU time. Its trailer (after the
        // hash check) follows at the next call, while nar_ still owns the bytes.
        if (out_.empty() && chunk.size() >= chunk_size_ / 2) {
            trailer_pending_ = nar_->finished();
            produced_ += chunk.size();
            return chunk;
        }
        out_.append(chunk);
        if (nar_->finished()) finish_item();
    }
    produced_ += out_.size();
    return out_;
}

void bundle_source::finish_item() {
    trailer_pending_ = false;
    const auto& path = order_[index_];
    auto info = db_.query_path_info(path);
    if (!info) throw failure(errc::bad_input, fmt::format("export: '{}' is no longer valid", path));
    auto actual = sha256_db_string(nar_->digest());
    auto recorded = parse_sha256(info->nar_hash);
    if (!recorded || sha256_db_string(*recorded) != actual)
        throw failure(errc::bad_input, fmt::format("export: hash of path '{}' has changed from '{}' to '{}'", path,
                                                   info->nar_hash, actual));
    bundle::item_trailer t{path, info->references, info->deriver, std::nullopt};
    bundle::append_item_trailer(out_, t);
    nar_.reset();
    ++index_;
}

}  // namespace ferry::store
