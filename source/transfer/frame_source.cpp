#include "frame_source.hpp"

#include <stdexcept>

#include <fmt/core.h>

#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace ferry::transfer::detail {

namespace serve = protocol::serve;

frame_source::frame_source(std::string host, std::vector<store::path_info> infos, std::uint64_t server_version,
                           std::size_t chunk_size)
    : host_(std::move(host)), infos_(std::move(infos)), chunk_size_(chunk_size) {
    pending_ = encoder_.hello();
    // Encode for the version the control connection reported (see the header).
    std::string hello;
    protocol::wire::append_u64(hello, serve::server_magic);
    protocol::wire::append_u64(hello, server_version);
    auto r = encoder_.decode(hello);
    if (r.need_more() || r.consumed != hello.size()) throw std::logic_error("frame_source: priming failed");
}

std::optional<chunk> frame_source::next() {
    chunk c;
    c.data = std::move(pending_);
    pending_.clear();
    while (c.data.size() < chunk_size_) {
        if (!nar_) {
            if (index_ == infos_.size()) break;
            begin_item(c.data);
        }
        auto piece = nar_->next_chunk();
        if (piece.empty()) {
            end_item();
            continue;
        }
        c.data.append(piece);
        nar_done_ += piece.size();
    }
    c.items_done = index_;
    c.nar_done = nar_done_;
    if (c.data.empty()) return std::nullopt;
    return c;
}

void frame_source::begin_item(std::string& out) {
    const auto& info = infos_[index_];
    auto digest = store::parse_sha256(info.nar_hash);
    if (!digest)
        throw failure(errc::bad_input, fmt::format("send to {}: '{}' has an unreadable NAR hash '{}' in the "
                                                   "local database",
                                                   host_, info.path, info.nar_hash));
    serve::add_to_store_nar_request req;
    req.path = info.path;
    req.deriver = info.deriver;
    req.nar_hash = store::to_base16(*digest);
    req.references = info.references;
    req.registration_time = static_cast<std::uint64_t>(info.registration_time);
    req.nar_size = info.nar_size;
    req.ultimate = false;  // a copy is never "ultimately trusted" (Nix's copyStorePath)
    req.sigs = info.sigs;
    req.ca = info.ca;
    out += encoder_.add_to_store_nar(req);
    // Not hashed here: the machine's import hashes every NAR and refuses one that
    // differs from the nar_hash sent above (Nix's LocalStore::addToStore, "hash
    // mismatch importing path"), so corruption cannot spread; hashing here too cost
    // ~0.7 s of CPU per GB on cores the machine's import shares on a local host.
    nar_.emplace(info.path, chunk_size_, store::nar_hashing::by_caller);
}

void frame_source::end_item() {
    const auto& info = infos_[index_];
    // The remote reads exactly nar_size bytes: a NAR of another size would
    // desynchronise the stream, so it stops here (its hash the remote checks).
    if (nar_->bytes_produced() != info.nar_size)
        throw failure(errc::bad_input,
                      fmt::format("send to {}: '{}' no longer matches its registration (NAR of {} bytes; the "
                                  "database says {}): the local store is corrupt",
                                  host_, info.path, nar_->bytes_produced(), info.nar_size));
    nar_.reset();
    ++index_;
}

}  // namespace ferry::transfer::detail
