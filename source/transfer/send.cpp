#include "ferry/transfer/send.hpp"
#include "ferry/transfer/send_plan.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <set>

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/core.h>

#include "ferry/codec/auto_rule.hpp"
#include "ferry/codec/compressor.hpp"
#include "ferry/io/stage_channel.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"
#include "ferry/transfer/auto_probe.hpp"
#include "frame_source.hpp"
#include "pipeline.hpp"

namespace ferry::transfer {

namespace serve = protocol::serve;
using namespace detail;

namespace {

// Busy time per stage kind over all streams of one send_paths call.
struct shared_meters {
    busy_union read, compress, write;
};

// Opens once some stream's remote answered the serve hello, i.e. its store is
// open. Nix 2.8 creates a fresh store's database without an exclusive lock, so
// two importers starting together on an empty machine can fail with "SQLite
// database ... is busy": streams after the first wait for this gate.
class remote_ready_gate {
public:
    explicit remote_ready_gate(asio::any_io_executor ex) : timer_(ex, asio::steady_timer::time_point::max()) {}
    void open() {
        if (open_) return;
        open_ = true;
        timer_.cancel();
    }
    asio::awaitable<void> wait() {
        if (open_) co_return;
        std::error_code ec;
        co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        // open() sets the flag before waking us: anything else is a cancellation.
        if (!open_) throw failure(errc::cancelled, "send: cancelled while waiting for the first stream's remote");
    }

private:
    asio::steady_timer timer_;
    bool open_ = false;
};

// Where a stream stands in its transfer.
struct stream_context {
    std::size_t stream = 0;
    clock::time_point transfer_start;
    shared_meters* meters = nullptr;
    remote_ready_gate* ready = nullptr;
};

struct send_state {
    std::string host;
    ssh::channel ch;
    send_options options;
    stream_context ctx;
    asio::thread_pool* pool = nullptr;
    std::size_t items = 0;
    std::uint64_t nar_total = 0;
    std::uint64_t server_version = 0;
    stage_report read{"read"}, compress{"compress"}, write{"write"}, replies{"import"};
    // Busy times the interval monitor samples while the stages run.
    busy_clock read_busy, compress_busy, write_busy;
    std::uint64_t nar_written = 0;   // NAR bytes through the write stage (I/O executor)
    std::atomic<int> level{0};       // the level of the frame being compressed
    std::atomic<int> wanted_level{0};  // what the level policy asked for (0 = nothing yet)
    std::vector<level_change> changes;
    bool done = false;               // the stages finished: the monitor stops
    asio::steady_timer* tick = nullptr;
    remote::stderr_tail tail;
    std::exception_ptr write_error;
};

asio::awaitable<void> read_stage(send_state& st, frame_source& src, io::stage_channel<chunk>& out) {
    for (;;) {
        auto c = co_await on_pool(*st.pool, st.read_busy, [&src] { return src.next(); });
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
    st.level = z->spec().level;
    int requested = z->spec().level;
    for (;;) {
        auto c = co_await in.receive();
        chunk res;
        if (c) {
            res.items_done = c->items_done;
            res.nar_done = c->nar_done;
        }
        const bool last = !c;
        if (c) st.compress.bytes_in += c->data.size();
        co_await on_pool(*st.pool, st.compress_busy, [&] {
            // A level the policy asked for: applied at the next frame boundary.
            if (int want = st.wanted_level.load(); want != 0 && want != requested) {
                requested = want;
                try {
                    z->set_level(want);
                } catch (const failure&) {
                    // Refused (memory budget): keep writing at the current level.
                }
            }
            if (c) {
                std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(c->data.data()), c->data.size());
                while (!rest.empty()) rest = rest.subspan(z->feed(rest, res.data));
            } else {
                while (!z->finish(res.data)) {
                }
            }
            st.level = z->spec().level;
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
        busy_begin(st.write_busy);
        try {
            co_await st.ch.write(asio::buffer(c->data));
        } catch (const failure& e) {
            busy_end(st.write_busy, clock::now() - start);
            if (e.code() == errc::cancelled) throw;
            st.write_error = std::current_exception();
            continue;
        }
        busy_end(st.write_busy, clock::now() - start);
        st.write.bytes_in += c->data.size();
        st.nar_written = c->nar_done;
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
        if (n == 0) co_await st.tail.wait_complete(remote::stderr_grace);
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
                if (st.ctx.ready) st.ctx.ready->open();
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

// Every options.interval: the stream's figures since the last tick to
// on_interval, and the level policy's verdict to the compressor (zstd only).
asio::awaitable<void> monitor_stage(send_state& st) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    st.tick = &timer;
    struct detach {
        send_state& st;
        ~detach() { st.tick = nullptr; }
    } d{st};
    auto last = clock::now();
    auto r0 = st.read_busy.busy(), c0 = st.compress_busy.busy(), w0 = st.write_busy.busy();
    std::uint64_t nar0 = st.nar_written, wire0 = st.write.bytes_in;
    const bool adapt = st.options.adjust_level && st.options.codec.kind == codec::codec_kind::zstd;
    while (!st.done) {
        timer.expires_after(st.options.interval);
        try {
            co_await timer.async_wait(asio::use_awaitable);
        } catch (const std::system_error&) {
            co_return;  // the stages are done, or failed and cancelled us
        }
        if (st.done) break;
        auto now = clock::now();
        interval_report r;
        r.stream = st.ctx.stream;
        r.since_start = now - st.ctx.transfer_start;
        r.length = now - last;
        const double len = std::chrono::duration<double>(r.length).count();
        auto frac = [len](std::chrono::nanoseconds busy) {
            return len > 0 ? std::min(1.0, std::chrono::duration<double>(busy).count() / len) : 0.0;
        };
        auto r1 = st.read_busy.busy(), c1 = st.compress_busy.busy(), w1 = st.write_busy.busy();
        r.read_busy = frac(r1 - r0);
        r.compress_busy = frac(c1 - c0);
        r.write_busy = frac(w1 - w0);
        r.nar_bytes = st.nar_written - nar0;
        r.wire_bytes = st.write.bytes_in - wire0;
        r.level = st.options.codec.kind == codec::codec_kind::none ? 0 : st.level.load();
        last = now, r0 = r1, c0 = c1, w0 = w1, nar0 = st.nar_written, wire0 = st.write.bytes_in;
        if (st.options.on_interval) st.options.on_interval(r);
        if (!adapt) continue;
        int next = std::clamp(st.options.adjust_level(r), codec::min_zstd_level, codec::max_zstd_level);
        int pending = st.wanted_level.load();
        if (next != r.level && next != pending) {
            st.wanted_level = next;
            st.changes.push_back({r.since_start, st.ctx.stream, r.level, next, r.compress_busy, r.write_busy});
        }
    }
}

// The stages of one stream; stops the monitor when they are done.
asio::awaitable<void> run_stages(send_state& st, frame_source& src, io::stage_channel<chunk>& framed,
                                 io::stage_channel<chunk>& packed, first_error& first) {
    using namespace asio::experimental::awaitable_operators;
    struct stop_monitor {
        send_state& st;
        ~stop_monitor() {
            st.done = true;
            if (st.tick) st.tick->cancel();
        }
    } stop{st};
    auto replies = remote::with_stderr<void>(st.ch, reply_stage(st), st.tail, st.options.remote_stderr);
    if (st.options.codec.kind != codec::codec_kind::none)
        co_await (recorded(read_stage(st, src, framed), first) && recorded(compress_stage(st, framed, packed), first) &&
                  recorded(write_stage(st, packed), first) && recorded(std::move(replies), first));
    else
        co_await (recorded(read_stage(st, src, framed), first) && recorded(write_stage(st, framed), first) &&
                  recorded(std::move(replies), first));
}

// One serve stream carrying `infos` (references first).
asio::awaitable<transfer_report> send_stream(ssh::session& s, std::vector<store::path_info> infos,
                                             send_options options, stream_context ctx) {
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
    st.ctx = ctx;
    if (ctx.meters) {
        st.read_busy.all = &ctx.meters->read;
        st.compress_busy.all = &ctx.meters->compress;
        st.write_busy.all = &ctx.meters->write;
    }
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

    const bool monitor =
        options.interval.count() > 0 && (options.on_interval || (options.adjust_level && compress));
    first_error first;
    try {
        if (monitor)
            co_await (run_stages(st, src, framed, packed, first) && monitor_stage(st));
        else
            co_await run_stages(st, src, framed, packed, first);
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
    report.codec = codec::to_string(options.codec);
    report.level_changes = std::move(st.changes);
    st.read.busy = st.read_busy.busy();
    st.compress.busy = st.compress_busy.busy();
    st.write.busy = st.write_busy.busy();
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
    total.level_changes.insert(total.level_changes.end(), r.level_changes.begin(), r.level_changes.end());
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
// `first` keeps the first stream's failure: && of several failing streams would
// throw asio's "multiple exceptions" and lose the host and the remote's stderr.
asio::awaitable<void> streams_from(ssh::session& s, std::vector<std::vector<store::path_info>>& groups,
                                   std::vector<transfer_report>& reports, std::vector<send_options>& options,
                                   stream_context ctx, first_error& first, std::size_t i) {
    using namespace asio::experimental::awaitable_operators;
    auto one = [&](std::size_t k) -> asio::awaitable<void> {
        stream_context c = ctx;
        c.stream = k;
        if (k > 0 && c.ready) co_await c.ready->wait();
        reports[k] = co_await send_stream(s, std::move(groups[k]), options[k], c);
    };
    if (i + 1 == groups.size())
        co_await recorded(one(i), first);
    else
        co_await (recorded(one(i), first) && streams_from(s, groups, reports, options, ctx, first, i + 1));
}

}  // namespace

asio::awaitable<transfer_report> send_paths(ssh::session& s, store::store_database& db,
                                            std::vector<std::string> paths, send_options options) {
    auto started = clock::now();
    std::set<std::string> unique(paths.begin(), paths.end());
    std::vector<std::string> order = db.export_order({unique.begin(), unique.end()});
    transfer_report total;
    if (order.empty()) co_return total;
    if (options.codec.is_auto()) {
        auto probed = co_await probe_and_choose(s, order, options.link_bytes_per_s);
        const auto& choice = probed.choice;
        options.codec = choice.spec;
        total.auto_reason = choice.reason;
        total.link_bytes_per_s = probed.link_bytes_per_s;
        total.choosing = clock::now() - started;
        if (choice.spec.kind == codec::codec_kind::zstd && !options.adjust_level)
            options.adjust_level = adaptive_zstd_level();
    }
    total.codec = codec::to_string(options.codec);
    shared_meters meters;
    remote_ready_gate ready(co_await asio::this_coro::executor);
    const stream_context ctx{0, started, &meters, &ready};

    std::vector<store::path_info> infos;
    std::uint64_t nar_total = 0;
    for (const auto& p : order) {
        auto info = db.query_path_info(p);
        if (!info) throw failure(errc::bad_input, fmt::format("send to {}: '{}' is not valid locally", s.host(), p));
        nar_total += info->nar_size;
        infos.push_back(std::move(*info));
    }
    const std::size_t path_count = infos.size();
    send_plan_options plan;
    plan.streams = std::max(1u, options.streams);
    plan.parallel_threshold = options.parallel_threshold;
    plan.parallel_min_paths = options.parallel_min_paths;
    auto rounds = plan_send_rounds(std::move(infos), plan);

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
                progress sum{items_before, path_count, bytes_before, nar_total};
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
        first_error first;
        try {
            co_await streams_from(s, groups, reports, opts, ctx, first, 0);
        } catch (...) {
            if (first.error) std::rethrow_exception(first.error);
            throw;
        }
        for (const auto& r : reports) {
            add_up(total, r);
            items_before += r.paths;
            bytes_before += r.nar_bytes;
        }
        running.clear();
    };

    for (auto& round : rounds) co_await run(std::move(round));
    // Concurrent streams: a stage kind was busy while any of its streams was.
    for (auto& st : total.stages) {
        if (st.name == "read") st.busy = meters.read.total();
        if (st.name == "compress") st.busy = meters.compress.total();
        if (st.name == "write") st.busy = meters.write.total();
    }
    total.elapsed = clock::now() - started;
    co_return total;
}

level_policy adaptive_zstd_level() {
    // A level above the policy's usual ceiling (an explicit zstd:15) is only lowered
    // for a reason, never clamped down by itself.
    return [](const interval_report& r) {
        return codec::adjust_zstd_level(r.level, r.compress_busy, r.write_busy, codec::min_zstd_level,
                                        std::max(12, r.level));
    };
}

}  // namespace ferry::transfer
