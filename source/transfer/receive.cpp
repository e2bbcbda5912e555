#include "ferry/transfer/receive.hpp"

#include <span>

#include <asio/experimental/awaitable_operators.hpp>
#include <fmt/core.h>

#include "ferry/codec/decompressor.hpp"
#include "ferry/io/stage_channel.hpp"
#include "ferry/store/importer.hpp"
#include "ferry/util/error.hpp"
#include "pipeline.hpp"

namespace ferry::transfer {

using namespace detail;

namespace {

struct receive_state {
    std::string host;
    ssh::channel* ch = nullptr;
    const receive_options* options = nullptr;
    asio::thread_pool* pool = nullptr;
    stage_report receive{"receive"}, decompress{"decompress"}, restore{"restore"};
    remote::stderr_tail tail;
};

asio::awaitable<void> receive_stage(receive_state& st, io::stage_channel<std::string>& out) {
    const std::size_t want = st.options->chunk_size;
    std::string buf;
    for (;;) {
        buf.resize(want);
        std::size_t filled = 0;
        // Gather up to a chunk: the ssh layer hands out at most what it buffered.
        auto start = clock::now();
        std::size_t n = 0;
        do {
            n = co_await st.ch->read(asio::buffer(buf.data() + filled, want - filled));
            filled += n;
        } while (n > 0 && filled < want / 4);
        st.receive.busy += clock::now() - start;
        buf.resize(filled);
        st.receive.bytes_out += filled;
        if (filled > 0) co_await out.send(std::move(buf));
        buf = std::string();
        if (n == 0) break;
    }
    co_await out.finish();
}

asio::awaitable<void> decompress_stage(receive_state& st, io::stage_channel<std::string>& in,
                                       io::stage_channel<std::string>& out) {
    codec::decompression_options o;
    o.memory_budget = st.options->memory_budget;
    o.output_limit = st.options->chunk_size;
    auto d = codec::make_decompressor(st.options->codec.kind, o);
    for (;;) {
        auto c = co_await in.receive();
        const bool last = !c;
        std::span<const std::byte> rest;
        if (c) {
            st.decompress.bytes_in += c->size();
            rest = {reinterpret_cast<const std::byte*>(c->data()), c->size()};
        }
        bool done = false;
        while (!done) {
            // One bounded piece per pool hop: output never exceeds output_limit per call.
            std::string piece = co_await on_pool(*st.pool, st.decompress, [&]() {
                std::string o;
                if (last) {
                    done = d->finish(o);
                } else if (!rest.empty() || d->has_pending_output()) {
                    rest = rest.subspan(d->feed(rest, o));
                    done = rest.empty() && !d->has_pending_output();
                } else {
                    done = true;
                }
                return o;
            });
            st.decompress.bytes_out += piece.size();
            if (!piece.empty()) co_await out.send(std::move(piece));
        }
        if (last) break;
    }
    co_await out.finish();
}

asio::awaitable<std::vector<std::string>> restore_stage(receive_state& st, store::bundle_importer& importer,
                                                        io::stage_channel<std::string>& in) {
    std::uint64_t nar_before = 0;
    for (;;) {
        auto c = co_await in.receive();
        if (!c) break;
        st.restore.bytes_in += c->size();
        co_await on_pool(*st.pool, st.restore, [&] { importer.feed(*c); });
        if (st.options->on_progress && importer.bytes_restored() != nar_before) {
            nar_before = importer.bytes_restored();
            st.options->on_progress(progress{importer.paths().size(), 0, nar_before, 0});
        }
    }
    co_return co_await on_pool(*st.pool, st.restore, [&] { return importer.finish(); });
}

}  // namespace

asio::awaitable<transfer_report> receive_bundle(ssh::channel& ch, const std::string& host, store::store_database& db,
                                                store::temp_roots& roots, const receive_options& options,
                                                std::vector<std::string>* imported) {
    using namespace asio::experimental::awaitable_operators;
    auto started = clock::now();
    if (options.codec.is_auto())
        throw failure(errc::unsupported, "receive: resolve codec `auto` to a concrete codec first");
    pool_ref pool(options.pool);
    receive_state st;
    st.host = host;
    st.ch = &ch;
    st.options = &options;
    st.pool = pool.pool;
    const bool decompress = options.codec.kind != codec::codec_kind::none;

    auto ex = co_await asio::this_coro::executor;
    io::stage_channel<std::string> wire(ex, options.queue_depth, "receive: channel -> decompress");
    io::stage_channel<std::string> plain(ex, options.queue_depth, "receive: decompress -> restore");
    store::import_options io;
    io.locked_by_caller = options.locked_by_caller;
    io.expected = options.expected;
    std::vector<std::string> paths;
    {
        store::bundle_importer importer(db, roots, io);
        first_error first;
        std::exception_ptr cause;
        try {
            auto receiving = remote::with_stderr<void>(ch, receive_stage(st, wire), st.tail, options.remote_stderr);
            if (decompress)
                paths = co_await (recorded(std::move(receiving), first) &&
                                  recorded(decompress_stage(st, wire, plain), first) &&
                                  recorded(restore_stage(st, importer, plain), first));
            else
                paths = co_await (recorded(std::move(receiving), first) &&
                                  recorded(restore_stage(st, importer, wire), first));
        } catch (...) {
            cause = first.error ? first.error : std::current_exception();
        }
        if (cause) {
            try {
                co_await remote::drain_stderr(ch, st.tail, remote::stderr_grace);  // the exporter's last words
            } catch (...) {
                // A dead session has no more to say; the cause below is what counts.
            }
            ch.close();
            try {
                std::rethrow_exception(cause);
            } catch (const failure& e) {
                throw failure(e.code(), fmt::format("receive from {}: {}{}", host, e.what(), st.tail.quote()));
            }
        }
    }
    auto status = co_await ch.wait();
    if (!status.success() || st.tail.text().find("ferry: export failed") != std::string::npos)
        throw failure(errc::remote_failed, fmt::format("receive from {}: `{}` ended with {}{}", host, ch.command(),
                                                       status.describe(), st.tail.quote()));
    transfer_report report;
    report.paths = paths.size();
    report.wire_bytes = st.receive.bytes_out;
    report.nar_bytes = st.restore.bytes_in;
    report.stages.push_back(st.receive);
    if (decompress) report.stages.push_back(st.decompress);
    report.stages.push_back(st.restore);
    report.elapsed = clock::now() - started;
    if (imported) *imported = std::move(paths);
    co_return report;
}

asio::awaitable<transfer_report> receive_paths(ssh::session& s, store::store_database& db, store::temp_roots& roots,
                                               std::vector<std::string> paths, receive_options options) {
    std::vector<std::string> wanted;
    for (const auto& p : paths)
        if (!db.is_valid(p) && std::find(wanted.begin(), wanted.end(), p) == wanted.end()) wanted.push_back(p);
    if (wanted.empty()) co_return transfer_report{};
    ssh::channel ch = co_await s.exec(remote::export_command(options.remote, wanted, options.codec, options.remote_threads));
    std::vector<std::string> got;
    auto report = co_await receive_bundle(ch, s.host(), db, roots, options, &got);
    for (const auto& p : wanted)
        if (!db.is_valid(p))
            throw failure(errc::remote_failed,
                          fmt::format("receive from {}: '{}' was asked for but is not valid locally afterwards", s.host(), p));
    co_return report;
}

}  // namespace ferry::transfer
