#include "ferry/bench/runner.hpp"

#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <set>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_future.hpp>
#include <fmt/format.h>

#include "ferry/transfer/auto_probe.hpp"
#include "ferry/codec/codec_spec.hpp"
#include "ferry/io/child_process.hpp"
#include "ferry/io/errors.hpp"
#include "ferry/machines/locate.hpp"
#include "ferry/machines/nix_machines.hpp"
#include "ferry/remote/serve_connection.hpp"
#include "ferry/ssh/quote.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/transfer/receive.hpp"
#include "ferry/transfer/send.hpp"

namespace ferry::bench {
namespace {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

// --- where the closure goes --------------------------------------------------

struct target {
    std::string display;
    ssh::session_options ssh;
    remote::nix_remote_options remote;
    std::optional<hosts::test_host> host;  // --local-host
    // For nix-copy-closure (Nix 2.8's ssh:// takes no port): an alias in an ssh
    // client config of ours, with the pinned key in a known_hosts of ours.
    std::string nix_alias;
    fs::path nix_ssh_config;
    std::optional<fs::path> scratch;  // directory of those files (removed at the end)
    ~target() {
        if (scratch) {
            std::error_code ec;
            fs::remove_all(*scratch, ec);
        }
    }
};

machines::machine resolve_machine(const bench_options& o) {
    const std::string default_system = "x86_64-linux";
    if (o.machine.find_first_of(" \t") != std::string::npos) {
        try {
            return machines::parse_nix_machine_line(o.machine, {"--machine", 1, 0}, default_system);
        } catch (const failure& e) {
            throw usage_failure(e.what());
        }
    }
    std::string file = o.machines_file.empty() ? machines::default_machines_file(machines::environment::from_process())
                                               : o.machines_file.string();
    if (!machines::read_file_if_exists(file))
        throw usage_failure(fmt::format("--machine {}: machines file {} does not exist; give --machines FILE or a "
                                        "whole machines-file line",
                                        o.machine, file));
    std::vector<machines::machine> all;
    try {
        all = machines::load_machines(file, default_system);
    } catch (const failure& e) {
        throw usage_failure(e.what());
    }
    for (auto& m : all)
        if (m.host == o.machine || m.display_name() == o.machine) return m;
    throw usage_failure(fmt::format("--machine {}: no such machine in {}", o.machine, file));
}

void write_text(const fs::path& file, const std::string& text) {
    std::ofstream out(file);
    out << text;
    if (!out) throw failure(errc::bad_input, "ferry bench: cannot write " + file.string());
}

std::unique_ptr<target> open_target(const bench_options& o) {
    auto t = std::make_unique<target>();
    if (o.local_host) {
        hosts::test_host_options ho;
        ho.name = "bench-host";
        ho.directory = hosts::temporary_directory("ferry-bench-host");
        t->host.emplace(hosts::test_host::start(std::move(ho)));
        auto& h = *t->host;
        t->display = fmt::format("local-host (ssh://root@127.0.0.1:{})", h.port());
        t->ssh.host = "127.0.0.1";
        t->ssh.port = h.port();
        t->ssh.user = "root";
        t->ssh.identity = h.client_key();
        t->ssh.host_key = h.host_key_line();
        t->ssh.read_config = false;
        t->nix_alias = h.name();
        t->nix_ssh_config = h.ssh_config();
        return t;
    }
    auto m = resolve_machine(o);
    t->display = o.machine;
    t->ssh.host = m.host;
    t->ssh.port = m.port;
    t->ssh.user = m.user;
    if (m.identity) t->ssh.identity = *m.identity;
    t->ssh.host_key = m.host_key;
    if (m.remote_program) t->remote.remote_program = *m.remote_program;
    if (m.remote_store) t->remote.remote_store = *m.remote_store;
    // nix-copy-closure's view of the same machine.
    t->scratch = hosts::temporary_directory("ferry-bench-ssh");
    t->nix_alias = "ferry-bench-target";
    t->nix_ssh_config = *t->scratch / "ssh_config";
    std::string config = fmt::format("Host {}\n  HostName {}\n", t->nix_alias, m.host);
    if (m.port) config += fmt::format("  Port {}\n", *m.port);
    if (!m.user.empty()) config += fmt::format("  User {}\n", m.user);
    if (m.identity) config += fmt::format("  IdentityFile {}\n", *m.identity);
    if (!m.host_key.empty()) {
        std::string name = m.port && *m.port != 22 ? fmt::format("[{}]:{}", m.host, *m.port) : m.host;
        write_text(*t->scratch / "known_hosts", name + " " + m.host_key + "\n");
        config += fmt::format("  UserKnownHostsFile {}\n", (*t->scratch / "known_hosts").string());
    }
    // The user's own settings still apply after ours (first match wins in ssh_config).
    config += "Include ~/.ssh/config\n";
    write_text(t->nix_ssh_config, config);
    return t;
}

// --- local helpers -----------------------------------------------------------

double cpu_seconds_now() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    auto tv = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
    return tv(u.ru_utime) + tv(u.ru_stime);
}

asio::awaitable<void> run_local(std::vector<std::string> argv, const std::string& step, bool check = true) {
    auto r = co_await io::run_process(argv, {}, 1 << 20);
    if (check && r.status != 0)
        throw failure(errc::remote_failed, fmt::format("ferry bench: {}: `{}` exited with {}: {}", step, argv[0],
                                                       r.status, r.err.substr(r.err.size() > 2000 ? r.err.size() - 2000 : 0)));
}

run_figures figures_of(const transfer::transfer_report& rep, double cpu) {
    run_figures f;
    f.seconds = rep.seconds();
    f.closure_bytes = rep.nar_bytes;
    f.wire_bytes = rep.wire_bytes;
    f.cpu_seconds = cpu;
    for (const auto& st : rep.stages)
        // A sink stage (write, import) produces nothing: count what it consumed.
        f.stages.push_back({st.name, st.bytes_out ? st.bytes_out : st.bytes_in,
                            std::chrono::duration<double>(st.busy).count()});
    f.bottleneck = rep.bottleneck();
    for (const auto& c : rep.level_changes)
        f.level_changes.push_back({std::chrono::duration<double>(c.at).count(), c.stream, c.from, c.to});
    return f;
}

// --- the run -----------------------------------------------------------------

class bench_run {
public:
    bench_run(const bench_options& o, const bench_events& ev, asio::thread_pool& pool) : o_(o), ev_(ev), pool_(pool) {}

    asio::awaitable<bench_result> run() {
        bench_result result;
        target_ = open_target(o_);  // first: a bad --machine must not leave a synthetic closure behind
        result.machine = target_->display;
        co_await prepare_closure(result);
        status(fmt::format("target {}", target_->display));
        co_await connect();
        {
            remote::serve_connection c = co_await remote::serve_connection::open(*session_, target_->remote);
            missing_at_start_ = co_await c.query_missing(paths_);
            co_await c.close();
        }
        if (o_.direction != direction::receive && !(o_.fresh && target_->host) && missing_at_start_.empty())
            throw usage_failure(fmt::format("{} already has all {} paths of the closure: nothing to send (ferry "
                                            "deletes only what the machine lacked at the start)",
                                            target_->display, paths_.size()));

        std::vector<std::string> directions;
        if (o_.direction != direction::receive) directions.push_back("send");
        if (o_.direction != direction::send) directions.push_back("receive");
        for (const auto& spec : o_.codecs) {
            for (const auto& dir : directions) {
                row r;
                r.codec = codec::to_string(spec);
                r.direction = dir;
                codec::codec_spec use = spec;
                if (spec.is_auto()) {
                    status(fmt::format("{} auto: probing the link and the codecs", dir));
                    auto choice = (co_await transfer::probe_and_choose(*session_, paths_)).choice;
                    use = choice.spec;
                    r.auto_reason = choice.reason;
                }
                r.chosen = codec::to_string(use);
                for (int i = 1; i <= o_.runs; ++i) {
                    std::string label = fmt::format("{} {} run {}/{}", dir, r.chosen, i, o_.runs);
                    status(label);
                    // Named results, no co_await inside ?: (g++ 12 miscompiles temporaries there).
                    run_figures f;
                    if (dir == "send") {
                        const bool adapt = spec.is_auto();  // auto -> zstd adjusts its level while streaming
                        f = co_await send_run(use, label, adapt);
                    } else {
                        f = co_await receive_run(use, label);
                    }
                    r.runs.push_back(std::move(f));
                }
                result.rows.push_back(std::move(r));
            }
        }
        if (o_.compare_nix_copy_closure) result.compare = co_await compare(result);
        // Leave the machine as we found it: without what it lacked at the start.
        if (!target_->host) co_await reset_remote();
        session_->close();
        co_return result;
    }

private:
    void status(const std::string& s) {
        if (ev_.status) ev_.status(s);
    }

    transfer::progress_fn progress_for(const std::string& label) {
        if (!ev_.progress) return {};
        return [this, label](const transfer::progress& p) {
            ev_.progress(label, p.bytes_done, p.bytes_total, p.items_done, p.items_total);
        };
    }

    asio::awaitable<void> prepare_closure(bench_result& result) {
        auto config = store::store_config::from_environment();
        if (o_.synthetic) {
            if (!fs::exists(config.database_path)) {
                std::vector<std::string> init{"nix-store", "--init"};  // named: g++ 12 and braced co_await operands
                co_await run_local(init, "creating the local store");
            }
            db_.emplace(config);
            status(fmt::format("generating the synthetic closure ({:.1f} MB in {} paths)", o_.synthetic->bytes / 1e6,
                               o_.synthetic->count));
            auto* db = &*db_;
            auto spec = *o_.synthetic;
            paths_ = co_await asio::co_spawn(pool_, [db, spec]() -> asio::awaitable<std::vector<std::string>> {
                co_return add_synthetic(*db, spec);
            }, asio::use_awaitable);
        } else {
            if (!fs::exists(config.database_path))
                throw usage_failure(fmt::format("--closure: no local store database at {}", config.database_path));
            db_.emplace(config);
            for (const auto& p : o_.closure)
                if (!db_->is_valid(p)) throw usage_failure(fmt::format("--closure {}: not a valid path of the local store", p));
            paths_ = db_->closure(o_.closure);
        }
        result.closure_paths = paths_.size();
        for (const auto& p : paths_) {
            auto info = db_->query_path_info(p);
            if (info) result.closure_bytes += info->nar_size;
        }
    }

    asio::awaitable<void> connect() {
        session_.emplace(co_await ssh::session::connect(target_->ssh));
    }

    // The target lacks the paths again: a wiped store (--fresh) or the paths that
    // were missing when we started deleted again.
    asio::awaitable<void> reset_remote() {
        if (o_.fresh && target_->host) {
            session_->close();
            target_->host->kill_sessions();
            target_->host->wipe_store();
            co_await connect();
            co_return;
        }
        if (missing_at_start_.empty()) co_return;
        std::string list;
        for (const auto& p : missing_at_start_) list += p + "\n";
        auto r = co_await ssh::run(*session_,
                                   fmt::format("xargs {} --delete >/dev/null",
                                               ssh::shell_quote(target_->remote.remote_program)),
                                   list);
        if (!r.status.success())
            throw failure(errc::remote_failed,
                          fmt::format("{}: deleting the closure for the next run failed ({}): {}; try --fresh with "
                                      "--local-host",
                                      target_->display, r.status.describe(), r.err));
    }

    asio::awaitable<std::vector<std::string>> remote_missing() {
        remote::serve_connection c = co_await remote::serve_connection::open(*session_, target_->remote);
        auto missing = co_await c.query_missing(paths_);
        server_version_ = c.server_version();
        co_await c.close();
        co_return missing;
    }

    asio::awaitable<run_figures> send_run(codec::codec_spec spec, const std::string& label, bool adapt) {
        co_await reset_remote();
        auto missing = co_await remote_missing();
        transfer::send_options so;
        so.codec = spec;
        so.remote = target_->remote;
        so.server_version = server_version_;
        so.pool = &pool_;
        so.on_progress = progress_for(label);
        if (adapt) so.adjust_level = transfer::adaptive_zstd_level();
        double cpu = cpu_seconds_now();
        auto rep = co_await transfer::send_paths(*session_, *db_, missing, so);
        co_return figures_of(rep, cpu_seconds_now() - cpu);
    }

    asio::awaitable<run_figures> receive_run(codec::codec_spec spec, const std::string& label) {
        // The remote must hold the closure (sent uncompressed, untimed) and we must not.
        auto missing = co_await remote_missing();
        if (!missing.empty()) {
            transfer::send_options so;
            so.remote = target_->remote;
            so.server_version = server_version_;
            so.pool = &pool_;
            co_await transfer::send_paths(*session_, *db_, missing, so);
        }
        std::vector<std::string> argv{"nix-store", "--delete"};
        argv.insert(argv.end(), paths_.begin(), paths_.end());
        co_await run_local(argv, "deleting the local copy of the synthetic closure");
        transfer::receive_options ro;
        ro.codec = spec;
        ro.remote = target_->remote;
        ro.pool = &pool_;
        ro.on_progress = progress_for(label);
        store::temp_roots roots(db_->config());
        double cpu = cpu_seconds_now();
        auto rep = co_await transfer::receive_paths(*session_, *db_, roots, paths_, ro);
        co_return figures_of(rep, cpu_seconds_now() - cpu);
    }

    asio::awaitable<compare_result> compare(const bench_result& result) {
        compare_result c;
        // The ferry row to compare with: the fastest send row (by median).
        double best = -1;
        for (const auto& r : result.rows) {
            if (r.direction != "send") continue;
            double m = summarize(r).median_seconds;
            if (best < 0 || m < best) {
                best = m;
                c.vs_codec = r.chosen.empty() ? r.codec : r.chosen;
                c.vs_seconds = m;
            }
        }
        std::vector<std::string> argv{"env", "NIX_SSHOPTS=-F " + target_->nix_ssh_config.string(), "nix-copy-closure",
                                      "--to", target_->nix_alias};
        argv.insert(argv.end(), paths_.begin(), paths_.end());
        for (int i = 1; i <= o_.runs; ++i) {
            status(fmt::format("nix-copy-closure run {}/{}", i, o_.runs));
            co_await reset_remote();
            auto start = clock::now();
            co_await run_local(argv, "nix-copy-closure");
            c.runs.push_back(std::chrono::duration<double>(clock::now() - start).count());
        }
        co_return c;
    }

    const bench_options& o_;
    const bench_events& ev_;
    asio::thread_pool& pool_;
    std::optional<store::store_database> db_;
    std::vector<std::string> paths_;
    std::vector<std::string> missing_at_start_;
    std::unique_ptr<target> target_;
    std::optional<ssh::session> session_;
    std::uint64_t server_version_ = 0;
};

}  // namespace

bool wants_private_local_store(const bench_options& o) { return o.local_host && o.synthetic.has_value(); }

std::unique_ptr<private_local_store> private_local_store::enter() {
    auto dir = hosts::temporary_directory("ferry-bench-store");
    auto s = hosts::local_store::create(dir);
    auto fail = [&](const char* step) {
        return failure(std::error_code(errno, std::system_category()),
                       fmt::format("ferry bench: private local store at {}: {}", dir.string(), step));
    };
    if (::unshare(CLONE_NEWNS) != 0) throw fail("unshare(CLONE_NEWNS) (needs root and a single-threaded process)");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) throw fail("making / private");
    if (::mount(s.store_root().c_str(), "/nix", nullptr, MS_BIND, nullptr) != 0) throw fail("bind over /nix");
    if (::mount((dir / "etc/nix").c_str(), "/etc/nix", nullptr, MS_BIND, nullptr) != 0) throw fail("bind over /etc/nix");
    // The local store is this process's own now: no daemon of the real one.
    ::unsetenv("NIX_REMOTE");
    return std::unique_ptr<private_local_store>(new private_local_store(std::move(s)));
}

private_local_store::~private_local_store() = default;

bench_result run_bench(const bench_options& o, const bench_events& events) {
    asio::io_context io;
    asio::thread_pool pool(2);
    bench_run run(o, events, pool);
    auto fut = asio::co_spawn(io, run.run(), asio::use_future);
    io.run();
    pool.join();
    try {
        return fut.get();
    } catch (...) {
        std::rethrow_exception(io::first_cause(std::current_exception()));
    }
}

}  // namespace ferry::bench
