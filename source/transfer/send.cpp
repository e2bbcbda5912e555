#include "ferry/transfer/send.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <set>

#include <asio/experimental/awaitable_operators.hpp>
#include <fmt/core.h>

#include "ferry/codec/compressor.hpp"
#include "ferry/io/stage_channel.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/store/hash.hpp"
#include "ferry/store/nar_dump.hpp"
#include "ferry/util/error.hpp"
#include "pipeline.hpp"

namespace ferry::transfer {

namespace serve = protocol::serve;
using namespace detail;

namespace {

struct chunk {
    std::string data;
    std::size_t items_done = 0;  // items complete once this chunk is through
    std::uint64_t nar_done = 0;  // NAR bytes through once this chunk is through
};

// The serve stream's bytes in chunks: hello, then per path the AddToStoreNar
// header and the NAR. Runs on the pool, one call at a time.
class frame_source {
public:
    frame_source(std::string host, std::vector<store::path_info> infos, std::uint64_t server_version,
                 std::size_t chunk_size)
        : host_(std::move(host)), infos_(std::move(infos)), chunk_size_(chunk_size) {
        pending_ = encoder_.hello();
        // The write side never waits for the server's hello (a compressed channel
        // delivers it only at the end): encode for the version the control
        // connection reported, which the reader checks against the real hello.
        std::string hello;
        protocol::wire::append_u64(hello, serve::server_magic);
        protocol::wire::append_u64(hello, server_version);
        auto r = encoder_.decode(hello);
        if (r.need_more() || r.consumed != hello.size()) throw std::logic_error("frame_source: priming failed");
    }

    std::optional<chunk> next() {
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

private:
    void begin_item(std::string& out) {
        const auto& info = infos_[index_];
        auto digest = store::parse_sha256(info.nar_hash);
        if (!digest)
            throw failure(errc::bad_input, fmt::format("send to {}: '{}' has an unreadable NAR hash '{}' in the "
                                                       "local database",
                                                       host_, info.path, info.nar_hash));
        expected_ = *digest;
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
        nar_.emplace(info.path, chunk_size_);
    }

    void end_item() {
        const auto& info = infos_[index_];
        // The NAR must be what the database says: the remote reads exactly nar_size
        // bytes, and corruption must not spread.
        if (nar_->bytes_produced() != info.nar_size || nar_->digest() != expected_)
            throw failure(errc::bad_input,
                          fmt::format("send to {}: '{}' no longer matches its registration (NAR of {} bytes, hash "
                                      "{}; the database says {} bytes, {}): the local store is corrupt",
                                      host_, info.path, nar_->bytes_produced(),
                                      store::sha256_db_string(nar_->digest()), info.nar_size, info.nar_hash));
        nar_.reset();
        ++index_;
    }

    std::string host_;
    std::vector<store::path_info> infos_;
    std::size_t chunk_size_;
    serve::serve_client encoder_;
    std::string pending_;
    std::size_t index_ = 0;
    std::uint64_t nar_done_ = 0;
    std::optional<store::nar_source> nar_;
    store::sha256_digest expected_{};
};

struct send_state {
    std::string host;
    ssh::channel ch;
    send_options options;
    asio::thread_pool* pool = nullptr;
    std::size_t items = 0;
    std::uint64_t nar_total = 0;
    std::uint64_t server_version = 0;
    stage_report read{"read"}, compress{"compress"}, write{"write"}, replies{"import"};
    remote::stderr_tail tail;
    std::exception_ptr write_error;
};

asio::awaitable<void> read_stage(send_state& st, frame_source& src, io::stage_channel<chunk>& out) {
    for (;;) {
        auto c = co_await on_pool(*st.pool, st.read, [&src] { return src.next(); });
        if (!c) break;
        st.read.bytes_out += c->data.size();
        co_await out.send(std::move(*c));
    }
    co_await out.finish();
}

asio::awaitable<void> compress_stage(send_state& st, io::stage_channel<chunk>& in, io::stage_channel<chunk>& out) {
    codec::compression_options co;
    co.threads = st.options.compress_threads;
    co.memory_budget = st.options.memory_budget;
    auto z = codec::make_compressor(st.options.codec, co);
    for (;;) {
        auto c = co_await in.receive();
        chunk res;
        if (c) {
            res.items_done = c->items_done;
            res.nar_done = c->nar_done;
        }
        const bool last = !c;
        co_await on_pool(*st.pool, st.compress, [&] {
            if (c) {
                st.compress.bytes_in += c->data.size();
                std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(c->data.data()), c->data.size());
                while (!rest.empty()) rest = rest.subspan(z->feed(rest, res.data));
            } else {
                while (!z->finish(res.data)) {
                }
            }
        });
        st.compress.bytes_out += res.data.size();
        if (!res.data.empty() || last) {
            if (last) {
                res.items_done = st.items;
                res.nar_done = st.nar_total;
            }
            if (!res.data.empty()) co_await out.send(std::move(res));
        }
        if (last) break;
    }
    co_await out.finish();
}

asio::awaitable<void> write_stage(send_state& st, io::stage_channel<chunk>& in) {
    for (;;) {
        auto c = co_await in.receive();
        if (!c) break;
        if (st.write_error) continue;  // the remote is gone: drain, the reader says why
        auto start = clock::now();
        try {
            co_await st.ch.write(asio::buffer(c->data));
        } catch (const failure& e) {
            if (e.code() == errc::cancelled) throw;
            st.write_error = std::current_exception();
        }
        st.write.busy += clock::now() - start;
        st.write.bytes_in += c->data.size();
        if (st.options.on_progress)
            st.options.on_progress(progress{c->items_done, st.items, c->nar_done, st.nar_total});
    }
    if (!st.write_error) {
        try {
            co_await st.ch.send_eof();
        } catch (const failure& e) {
            if (e.code() == errc::cancelled) throw;
            st.write_error = std::current_exception();
        }
    }
}

// Server hello, then one u64 1 per AddToStoreNar.
asio::awaitable<void> reply_stage(send_state& st) {
    std::string in;
    std::array<char, 4096> buf;
    std::size_t acks = 0;
    bool hello = false;
    std::uint64_t offset = 0;
    while (!hello || acks < st.items) {
        std::size_t n = co_await st.ch.read(asio::buffer(buf));
        if (n == 0)
            throw failure(errc::remote_failed,
                          fmt::format("{}: `{}` stopped answering after {} of {} paths (reply offset {}){}", st.host,
                                      st.ch.command(), acks, st.items, offset, st.tail.quote()));
        in.append(buf.data(), n);
        protocol::wire::cursor cur(in, offset);
        for (;;) {
            if (!hello) {
                auto copy = cur;
                auto magic = cur.u64();
                auto version = cur.u64();
                if (!version) {
                    cur = copy;
                    break;
                }
                if (*magic != serve::server_magic)
                    throw failure(errc::bad_input, fmt::format("{}: `{}`: expected the serve protocol's magic, got "
                                                               "0x{:x}{}",
                                                               st.host, st.ch.command(), *magic, st.tail.quote()));
                if (serve::major_of(*version) != serve::major_of(st.server_version) ||
                    serve::minor_of(*version) < 5)
                    throw failure(errc::unsupported, fmt::format("{}: `{}` speaks protocol 0x{:x} (expected 0x{:x})",
                                                                 st.host, st.ch.command(), *version,
                                                                 st.server_version));
                hello = true;
                continue;
            }
            if (acks == st.items) break;
            auto v = cur.u64();
            if (!v) break;
            if (*v != 1)
                throw failure(errc::bad_input, fmt::format("{}: AddToStoreNar #{} answered {} instead of 1", st.host,
                                                           acks + 1, *v));
            ++acks;
        }
        offset = cur.stream_offset();
        in.erase(0, cur.consumed());
        if (hello && acks == st.items && !in.empty())
            throw failure(errc::bad_input, fmt::format("{}: unexpected bytes after the last reply", st.host));
    }
    st.replies.bytes_out = offset;
}

// One serve stream carrying `infos` (references first).
asio::awaitable<transfer_report> send_stream(ssh::session& s, std::vector<store::path_info> infos,
                                             send_options options) {
    using namespace asio::experimental::awaitable_operators;
    auto started = clock::now();
    transfer_report report;
    if (infos.empty()) co_return report;
    for (const auto& i : infos) report.nar_bytes += i.nar_size;
    report.paths = infos.size();
    if (options.codec.is_auto())
        throw failure(errc::unsupported, "send: resolve codec `auto` to a concrete codec first");

    pool_ref pool(options.pool);
    send_state st;
    st.host = s.host();
    st.options = options;
    st.pool = pool.pool;
    st.items = infos.size();
    st.nar_total = report.nar_bytes;
    st.server_version = options.server_version ? options.server_version : serve::client_version;
    frame_source src(st.host, std::move(infos), st.server_version, options.chunk_size);

    st.ch = co_await s.exec(remote::compressed_serve_command(options.remote, options.codec.kind));
    auto ex = co_await asio::this_coro::executor;
    io::stage_channel<chunk> framed(ex, options.queue_depth, "send: read -> compress");
    io::stage_channel<chunk> packed(ex, options.queue_depth, "send: compress -> write");
    const bool compress = options.codec.kind != codec::codec_kind::none;

    first_error first;
    try {
        auto replies = remote::with_stderr<void>(st.ch, reply_stage(st), st.tail, options.remote_stderr);
        if (compress)
            co_await (recorded(read_stage(st, src, framed), first) &&
                      recorded(compress_stage(st, framed, packed), first) &&
                      recorded(write_stage(st, packed), first) && recorded(std::move(replies), first));
        else
            co_await (recorded(read_stage(st, src, framed), first) && recorded(write_stage(st, framed), first) &&
                      recorded(std::move(replies), first));
    } catch (...) {
        st.ch.close();
        if (first.error) std::rethrow_exception(first.error);
        throw;
    }
    if (st.write_error) std::rethrow_exception(st.write_error);
    auto status = co_await st.ch.wait();
    if (!status.success())
        throw failure(errc::remote_failed, fmt::format("{}: `{}` ended with {}{}", st.host, st.ch.command(),
                                                       status.describe(), st.tail.quote()));

    report.wire_bytes = st.write.bytes_in;
    st.read.bytes_in = report.nar_bytes;
    st.replies.bytes_in = st.write.bytes_in;
    report.stages.push_back(st.read);
    if (compress) report.stages.push_back(st.compress);
    report.stages.push_back(st.write);
    report.elapsed = clock::now() - started;
    co_return report;
}

void add_up(transfer_report& total, const transfer_report& r) {
    total.paths += r.paths;
    total.nar_bytes += r.nar_bytes;
    total.wire_bytes += r.wire_bytes;
    for (const auto& st : r.stages) {
        auto it = std::find_if(total.stages.begin(), total.stages.end(), [&](auto& t) { return t.name == st.name; });
        if (it == total.stages.end()) {
            total.stages.push_back(st);
        } else {
            it->bytes_in += st.bytes_in;
            it->bytes_out += st.bytes_out;
            it->busy += st.busy;
        }
    }
}

// Runs groups[i..] as concurrent streams (&& folds any number of them).
asio::awaitable<void> streams_from(ssh::session& s, std::vector<std::vector<store::path_info>>& groups,
                                   std::vector<transfer_report>& reports, std::vector<send_options>& options,
                                   std::size_t i) {
    using namespace asio::experimental::awaitable_operators;
    auto one = [&](std::size_t k) -> asio::awaitable<void> {
        reports[k] = co_await send_stream(s, std::move(groups[k]), options[k]);
    };
    if (i + 1 == groups.size())
        co_await one(i);
    else
        co_await (one(i) && streams_from(s, groups, reports, options, i + 1));
}

}  // namespace

asio::awaitable<transfer_report> send_paths(ssh::session& s, store::store_database& db,
                                            std::vector<std::string> paths, send_options options) {
    auto started = clock::now();
    std::set<std::string> unique(paths.begin(), paths.end());
    std::vector<std::string> order = db.export_order({unique.begin(), unique.end()});
    transfer_report total;
    if (order.empty()) co_return total;

    // Waves: depth = 1 + the deepest reference inside the set (references first in `order`).
    std::vector<store::path_info> infos;
    std::map<std::string, std::size_t> depth;
    std::size_t max_depth = 0;
    std::uint64_t nar_total = 0;
    for (const auto& p : order) {
        auto info = db.query_path_info(p);
        if (!info) throw failure(errc::bad_input, fmt::format("send to {}: '{}' is not valid locally", s.host(), p));
        std::size_t d = 0;
        for (const auto& r : info->references)
            if (auto it = depth.find(r); it != depth.end() && r != p) d = std::max(d, it->second + 1);
        depth[p] = d;
        max_depth = std::max(max_depth, d);
        nar_total += info->nar_size;
        infos.push_back(std::move(*info));
    }
    std::vector<std::vector<store::path_info>> waves(max_depth + 1);
    for (auto& i : infos) waves[depth[i.path]].push_back(std::move(i));

    // Progress over all streams: what finished streams did plus what running ones report.
    std::size_t items_before = 0;
    std::uint64_t bytes_before = 0;
    std::vector<progress> running;
    auto stream_options = [&](std::size_t n) {
        running.assign(n, progress{});
        std::vector<send_options> out(n, options);
        for (std::size_t k = 0; k < n; ++k) {
            out[k].on_progress = [&, k](const progress& p) {
                running[k] = p;
                if (!options.on_progress) return;
                progress sum{items_before, infos.size(), bytes_before, nar_total};
                for (const auto& r : running) {
                    sum.items_done += r.items_done;
                    sum.bytes_done += r.bytes_done;
                }
                options.on_progress(sum);
            };
        }
        return out;
    };
    auto run = [&](std::vector<std::vector<store::path_info>> groups) -> asio::awaitable<void> {
        std::vector<transfer_report> reports(groups.size());
        auto opts = stream_options(groups.size());
        co_await streams_from(s, groups, reports, opts, 0);
        for (const auto& r : reports) {
            add_up(total, r);
            items_before += r.paths;
            bytes_before += r.nar_bytes;
        }
        running.clear();
    };

    std::vector<store::path_info> batch;  // consecutive small waves: one ordered stream
    const unsigned streams = std::max(1u, options.streams);
    for (auto& wave : waves) {
        std::uint64_t bytes = 0;
        for (const auto& i : wave) bytes += i.nar_size;
        if (streams < 2 || wave.size() < 2 || bytes < options.parallel_threshold) {
            for (auto& i : wave) batch.push_back(std::move(i));
            continue;
        }
        if (!batch.empty()) {
            std::vector<std::vector<store::path_info>> one(1);
            one[0] = std::move(batch);
            batch.clear();
            co_await run(std::move(one));
        }
        // Largest first onto the least loaded stream.
        std::sort(wave.begin(), wave.end(), [](auto& a, auto& b) { return a.nar_size > b.nar_size; });
        std::vector<std::vector<store::path_info>> groups(std::min<std::size_t>(streams, wave.size()));
        std::vector<std::uint64_t> load(groups.size(), 0);
        for (auto& i : wave) {
            auto k = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
            load[k] += i.nar_size;
            groups[k].push_back(std::move(i));
        }
        co_await run(std::move(groups));
    }
    if (!batch.empty()) {
        std::vector<std::vector<store::path_info>> one(1);
        one[0] = std::move(batch);
        co_await run(std::move(one));
    }
    total.elapsed = clock::now() - started;
    co_return total;
}

}  // namespace ferry::transfer
