#include "ferry/store/exporter.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <deque>
#include <exception>
#include <optional>
#include <stdexcept>

#include "ferry/protocol/export_bundle.hpp"
#include "ferry/store/hash_worker.hpp"
#include "ferry/store/nar_dump.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store {

namespace bundle = protocol::export_bundle;

namespace {

// NARs are read in pieces of at most 256 KiB whatever the output chunk size:
// the piece is still in the cache when it is hashed (1 MiB pieces cost 5-7%
// more CPU time here, mostly in the kernel's copy into colder memory).
constexpr std::size_t max_read_size = 256 << 10;
// Read-ahead: up to 128 pieces alive at once (read ahead, handed out, or being
// hashed), 32 MiB with 256 KiB pieces. A store path's hash is sequential, so while
// one worker hashes a large path the others only have work if reading got past
// it: 16 MiB gave 1.35x Nix's export speed on the bench closure (paths up to
// 95 MB), 32 MiB 1.5x, 64 MiB no more.
constexpr std::size_t max_chunks = 128;
// A whole NAR this small is hashed on the calling thread: a round trip through a
// worker costs about as much as hashing 64 KiB.
constexpr std::size_t inline_hash_limit = 64 << 10;
// A worker with this much queued is busy: the reading thread hashes the next
// store path itself (on the bench closure 8 MiB beat 2 MiB by about 8 %).
constexpr std::uint64_t worker_busy = 8 << 20;

}  // namespace

struct bundle_source::impl {
    // A store path from the start of its reading until its trailer is written.
    struct item {
        std::size_t index = 0;  // in order
        sha256 hash;
        hash_worker* worker = nullptr;  // null: hashed on the calling thread
        std::uint64_t last_ticket = 0;
    };
    // The stream, in order, as the reading side prepared it.
    struct piece {
        enum class kind { item_begin, nar, item_end, end, error };
        explicit piece(kind k) : what(k) {}
        kind what;
        byte_buffer data;  // kind::nar
        hash_worker* worker = nullptr;
        std::uint64_t ticket = 0;  // data may be reused once worker->done(ticket)
        std::exception_ptr error;
    };

    impl(store_database& d, std::vector<std::string> o, std::size_t size, unsigned threads)
        : db(d),
          order(std::move(o)),
          chunk_size(std::max<std::size_t>(size, 4096)),
          read_size(std::min(chunk_size, max_read_size)) {
        for (unsigned i = 0; i < threads; ++i) workers.push_back(std::make_unique<hash_worker>());
    }
    // Workers first: they may still read buffers and hashes owned by the members.
    ~impl() { workers.clear(); }

    std::string_view next_chunk();
    void fill();
    void read_one();
    void finish_item();
    byte_buffer take_buffer();
    void reclaim();
    hash_worker* least_busy();

    store_database& db;
    std::vector<std::string> order;
    std::size_t chunk_size;
    std::size_t read_size;
    // Reading side: paths [0, read_index) are read; `reading` streams the next one.
    std::size_t read_index = 0;
    std::optional<nar_source> reading;
    bool read_done = false;
    std::deque<item> items;  // read or being read, trailer not yet written (deque: stable addresses)
    std::deque<piece> ahead;
    std::size_t chunks = 0;  // buffers allocated (ahead, handed out, retired or spare)
    std::vector<byte_buffer> spare;
    std::deque<piece> retired;  // handed out or copied, perhaps still being hashed
    // Output side.
    std::string out;
    std::optional<piece> handed;  // the chunk the caller holds until the next call
    std::uint64_t produced = 0;
    std::vector<std::unique_ptr<hash_worker>> workers;
};

byte_buffer bundle_source::impl::take_buffer() {
    if (!spare.empty()) {
        auto b = std::move(spare.back());
        spare.pop_back();
        return b;
    }
    ++chunks;
    byte_buffer b;
    b.reserve(read_size + 8192);  // a piece may end with tokens past read_size (a symlink target: < 4.5 KB)
    return b;
}

void bundle_source::impl::reclaim() {
    while (!retired.empty() && (!retired.front().worker || retired.front().worker->done(retired.front().ticket))) {
        spare.push_back(std::move(retired.front().data));
        retired.pop_front();
    }
}

hash_worker* bundle_source::impl::least_busy() {
    hash_worker* best = workers.front().get();
    std::uint64_t least = best->backlog();
    for (auto& w : workers) {
        if (auto b = w->backlog(); b < least) best = w.get(), least = b;
    }
    return best;
}

// Reads ahead as far as the buffers allow; blocks only when there is nothing to
// hand out until a worker releases a buffer.
void bundle_source::impl::fill() {
    while (!read_done) {
        reclaim();
        // Without workers reading ahead gains nothing, and a piece reused soon is
        // still in the cache.
        if (spare.empty() && chunks >= (workers.empty() ? 4 : max_chunks)) {
            if (!ahead.empty() || retired.empty()) return;
            retired.front().worker->wait(retired.front().ticket);
            continue;
        }
        read_one();
    }
}

void bundle_source::impl::read_one() {
    if (!reading) {
        if (read_index == order.size()) {
            ahead.emplace_back(piece::kind::end);
            read_done = true;
            return;
        }
        items.emplace_back().index = read_index;
        ahead.emplace_back(piece::kind::item_begin);
        reading.emplace(order[read_index], read_size, nar_hashing::by_caller);
    }
    const bool first = reading->bytes_produced() == 0;
    piece p(piece::kind::nar);
    p.data = take_buffer();
    try {
        reading->next_chunk_into(p.data);
    } catch (...) {
        // Handed out after everything before it, as a sequential export would fail.
        spare.push_back(std::move(p.data));
        ahead.emplace_back(piece::kind::error).error = std::current_exception();
        reading.reset();
        read_done = true;
        return;
    }
    auto& it = items.back();
    if (first) {
        // Who hashes this store path: the least busy worker, or this thread when the
        // NAR is small, or when every worker has a backlog already (then hashing
        // here is better than waiting for a buffer: this thread is a hasher too).
        const bool small = reading->finished() && p.data.size() <= inline_hash_limit;
        auto* w = workers.empty() || small ? nullptr : least_busy();
        if (w && w->backlog() < worker_busy) it.worker = w;
    }
    if (!it.worker) {
        it.hash.update({p.data.data(), p.data.size()});
    } else {
        p.worker = it.worker;
        // The bytes stay where they are while the piece moves between queues (a
        // vector's move keeps its heap block).
        p.ticket = it.last_ticket = it.worker->submit(it.hash, {p.data.data(), p.data.size()});
    }
    ahead.push_back(std::move(p));
    if (reading->finished()) {
        ahead.emplace_back(piece::kind::item_end);
        reading.reset();
        ++read_index;
    }
}

void bundle_source::impl::finish_item() {
    auto& it = items.front();
    if (it.worker) it.worker->wait(it.last_ticket);
    const auto& path = order[it.index];
    auto info = db.query_path_info(path);
    if (!info) throw failure(errc::bad_input, fmt::format("export: '{}' is no longer valid", path));
    auto actual = sha256_db_string(it.hash.finish());
    auto recorded = parse_sha256(info->nar_hash);
    if (!recorded || sha256_db_string(*recorded) != actual)
        throw failure(errc::bad_input, fmt::format("export: hash of path '{}' has changed from '{}' to '{}'", path,
                                                   info->nar_hash, actual));
    bundle::item_trailer t{path, info->references, info->deriver, std::nullopt};
    bundle::append_item_trailer(out, t);
    items.pop_front();
}

std::string_view bundle_source::impl::next_chunk() {
    out.clear();
    if (handed) {
        retired.push_back(std::move(*handed));
        handed.reset();
    }
    while (out.size() < chunk_size) {
        fill();
        if (ahead.empty()) {
            // Only once the end marker went out: fill() always leaves something to
            // hand out while reading is not done.
            if (!read_done) throw std::logic_error("bundle_source: read-ahead stalled before the end");
            break;
        }
        auto& p = ahead.front();
        if (p.what == piece::kind::error) {
            if (!out.empty()) break;  // the bytes before the failure first
            std::rethrow_exception(p.error);
        }
        if (p.what == piece::kind::nar && p.data.size() >= read_size / 2) {
            // Large chunks go out as they are (copying them cost about 6% of an
            // export's CPU time); small ones are gathered into `out`.
            if (!out.empty()) break;
            produced += p.data.size();
            handed = std::move(p);
            ahead.pop_front();
            return {handed->data.data(), handed->data.size()};
        }
        switch (p.what) {
        case piece::kind::item_begin: bundle::append_item_begin(out); break;
        case piece::kind::item_end: finish_item(); break;
        case piece::kind::end: bundle::append_end(out); break;
        case piece::kind::nar:
            out.append(p.data.data(), p.data.size());
            retired.push_back(std::move(p));
            break;
        case piece::kind::error: break;  // handled above
        }
        ahead.pop_front();
    }
    produced += out.size();
    return out;
}

bundle_source::bundle_source(store_database& db, const std::vector<std::string>& paths, std::size_t chunk_size,
                             int hash_threads)
    : impl_(std::make_unique<impl>(db, db.export_order(paths), chunk_size,
                                   hash_threads < 0 ? default_hash_threads()
                                                    : static_cast<unsigned>(std::min(hash_threads, 16)))) {}
bundle_source::~bundle_source() = default;
bundle_source::bundle_source(bundle_source&&) noexcept = default;
bundle_source& bundle_source::operator=(bundle_source&&) noexcept = default;

std::string_view bundle_source::next_chunk() { return impl_->next_chunk(); }
const std::vector<std::string>& bundle_source::order() const { return impl_->order; }
std::uint64_t bundle_source::bytes_produced() const { return impl_->produced; }

}  // namespace ferry::store
