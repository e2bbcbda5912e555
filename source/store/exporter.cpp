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
    while (!done_ && out_.size() < chunk_size_) {
        if (index_ == order_.size()) {
            bundle::append_end(out_);
            done_ = true;
            break;
        }
        const auto& path = order_[index_];
        if (!nar_) {
            bundle::append_item_begin(out_);
            nar_.emplace(path, chunk_size_);
        }
        auto chunk = nar_->next_chunk();
        out_.append(chunk);
        if (!nar_->finished()) continue;
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
    produced_ += out_.size();
    return out_;
}

}  // namespace ferry::store
