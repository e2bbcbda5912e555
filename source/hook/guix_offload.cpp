#include "ferry/hook/guix_offload.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <cerrno>
#include <random>
#include <set>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <fmt/core.h>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/hook/guix_machines.hpp"
#include "ferry/io/deadline.hpp"
#include "ferry/io/fd_writer.hpp"
#include "ferry/remote/command.hpp"
#include "ferry/remote/guix_remote.hpp"
#include "ferry/schedule/decision.hpp"
#include "ferry/schedule/select.hpp"
#include "ferry/ssh/session.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/importer.hpp"
#include "ferry/store/temp_sweep.hpp"
#include "ferry/util/error.hpp"

namespace ferry::hook {

namespace {

std::string env_or(const guix_environment::getenv_fn& getenv, const char* name, std::string fallback) {
    const char* v = getenv(name);
    return v && *v ? std::string(v) : std::move(fallback);
}

void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw failure(std::error_code(errno, std::system_category()), fmt::format("writing to fd {}", fd));
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Diagnostics must never turn into a second failure.
void say(int fd, std::string_view line) noexcept {
    try {
        write_all(fd, line);
    } catch (...) {
    }
}

template <class T>
T run_on(asio::io_context& io, asio::awaitable<T> op) {
    auto fut = asio::co_spawn(io, std::move(op), asio::use_future);
    // Run until THIS operation is done, not until the context runs dry: probes
    // cancelled at their deadline may leave timers behind (the daemon waits for
    // the reply), and they must not hold it up.
    io.restart();
    while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
        if (io.run_one() == 0) io.restart();
    return fut.get();
}

ssh::session_options session_for(const guix_machine& m, std::chrono::milliseconds connect_timeout) {
    ssh::session_options o;
    o.host = m.name;
    o.port = m.port;
    o.user = m.user;
    o.identity = m.private_key;
    o.host_key = m.host_key;
    o.connect_timeout = connect_timeout;
    return o;
}

schedule::machine schedule_machine(const guix_machine& m) {
    schedule::machine s;
    s.name = m.name;
    s.port = m.port;
    s.max_jobs = m.parallel_builds;
    s.speed = m.speed;
    s.overload_threshold = m.overload_threshold;
    return s;
}

std::string megabytes(std::uint64_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6); }

struct chosen {
    guix_machine machine;
    schedule::slot slot;
};

class front_end {
public:
    front_end(const protocol::guix_hook_args& args, const guix_environment& env, guix_offload_fds fds,
              guix_offload_options options)
        : args_(args), env_(env), fds_(fds), options_(options) {}

    int run();

private:
    protocol::hook_reply handle(const protocol::guix_build_request& request);
    int offload(const protocol::guix_build_request& request, const protocol::guix_accepted_paths& paths);
    asio::awaitable<int> offload_async(const protocol::guix_build_request& request,
                                       const protocol::guix_accepted_paths& paths);
    const std::vector<guix_machine>& machines();
    std::chrono::milliseconds progress_every() const {
        auto every = options_.progress_every;
        if (args_.max_silent_time > 0)
            every = std::min<std::chrono::milliseconds>(every, std::chrono::seconds(args_.max_silent_time) / 3);
        return std::max<std::chrono::milliseconds>(every, std::chrono::milliseconds(100));
    }

    protocol::guix_hook_args args_;
    guix_environment env_;
    guix_offload_fds fds_;
    guix_offload_options options_;
    asio::io_context io_;
    std::optional<std::vector<guix_machine>> machines_;
    std::optional<ferry_conf> conf_;
    std::optional<chosen> chosen_;
};

const std::vector<guix_machine>& front_end::machines() {
    if (!machines_) {
        std::error_code ec;
        // offload.scm build-machines: a missing file is silently no machines.
        if (!std::filesystem::exists(env_.machines_file(), ec))
            machines_.emplace();
        else
            machines_ = read_machines_scm(env_.machines_file());
        conf_ = read_ferry_conf(env_.ferry_config);
    }
    return *machines_;
}

protocol::hook_reply front_end::handle(const protocol::guix_build_request& request) {
    const auto& all = machines();
    std::vector<const guix_machine*> candidates;
    for (const auto& m : all)
        if (guix_machine_matches(m, request.system, request.features)) candidates.push_back(&m);
    // Ties go to the earlier candidate: shuffle as offload.scm does, so equal
    // machines share the load.
    std::shuffle(candidates.begin(), candidates.end(), std::mt19937(std::random_device{}()));

    schedule::decision_facts facts;
    facts.daemon = schedule::daemon_kind::guix;
    facts.configured = all.size();
    facts.candidates = candidates.size();
    if (candidates.empty()) return schedule::decide(facts);

    std::vector<schedule::machine> sm;
    for (const auto* m : candidates) sm.push_back(schedule_machine(*m));
    schedule::select_options so;
    so.state_dir = env_.state_dir;
    so.probe.store_dir = env_.store_dir;
    so.probe.deadline = options_.probe_deadline;
    const auto timeout = options_.connect_timeout;
    schedule::run_remote_fn run_remote = [candidates, timeout](const schedule::machine& m,
                                                               const std::string& command)
        -> asio::awaitable<schedule::remote_result> {
        const guix_machine* gm = nullptr;
        for (const auto* c : candidates)
            if (c->name == m.name && c->port == m.port) gm = c;
        schedule::remote_result r;
        if (!gm) {
            r.error = make_error_code(errc::bad_input);
            r.message = m.name + ": unknown machine";
            co_return r;
        }
        auto out = co_await remote::run_command(session_for(*gm, timeout), command, timeout);
        r.error = out.error;
        r.message = out.message;
        r.exit_status = out.status.code;
        r.output = std::move(out.out);
        co_return r;
    };
    auto sel = run_on(io_, schedule::select_machine(sm, run_remote, so));
    facts = schedule::facts_for(schedule::daemon_kind::guix, all.size(), sel, request.am_willing);
    auto reply = schedule::decide(facts);
    for (std::size_t i = 0; i < sel.reports.size(); ++i) {
        const auto& rep = sel.reports[i];
        if (rep.status == schedule::machine_status::unreachable || rep.status == schedule::machine_status::low_disk ||
            rep.status == schedule::machine_status::overloaded || rep.status == schedule::machine_status::backed_off)
            say(fds_.err, fmt::format("ferry: skipping machine '{}': {}{}{}\n", candidates[i]->name,
                                      schedule::to_string(rep.status), rep.message.empty() ? "" : ": ", rep.message));
    }
    if (reply == protocol::hook_reply::accept && sel.chosen)
        chosen_ = chosen{*candidates[*sel.chosen], std::move(sel.held)};
    else if (reply == protocol::hook_reply::accept)
        reply = protocol::hook_reply::postpone;  // cannot happen; never accept without a slot
    return reply;
}

asio::awaitable<int> front_end::offload_async(const protocol::guix_build_request& request,
                                              const protocol::guix_accepted_paths& paths) {
    const guix_machine& m = chosen_->machine;
    const std::string& drv = request.drv_path;
    const ferry_conf& conf = *conf_;
    remote::guix_remote_options ro;
    ro.guix_program = conf.get(m.name, "guix-program", "guix");
    ro.store_dir = env_.store_dir;
    ro.state_dir = conf.get(m.name, "remote-state-dir", "/var/guix");
    auto codec = codec::parse_codec_spec(conf.get(m.name, "codec", "zstd:3"));
    // No link measurement is wired into the Guix path yet: `auto` means zstd:3,
    // which pays off on anything slower than the remote's import.
    if (codec.is_auto()) codec = codec::codec_spec{codec::codec_kind::zstd, codec::default_zstd_level};

    auto session = co_await ssh::session::connect(session_for(m, options_.connect_timeout));
    remote::guix_build_machine machine(session, ro);
    int status = 1;
    std::exception_ptr error;
    try {
        say(fds_.err, fmt::format("offloading '{}' to '{}'...\n", drv, m.name));
        if (args_.print_build_trace) say(fds_.err, protocol::guix_build_remote_trace(drv, m.name));

        std::vector<std::string> inputs = paths.inputs;
        if (std::find(inputs.begin(), inputs.end(), drv) == inputs.end()) inputs.push_back(drv);
        co_await machine.protect(inputs);
        auto missing = co_await machine.missing_paths(inputs);
        if (!missing.empty()) {
            if (env_.local_guix.empty())
                throw failure(errc::unsupported, "no local guix to export the inputs with (set FERRY_GUIX)");
            const auto total = missing.size();
            auto sent = co_await machine.send(
                env_.local_guix, missing, codec,
                [&](const remote::guix_transfer_progress& p) {
                    say(fds_.err, fmt::format("ferry: sent {}/{} items, {} to '{}'\n", p.items, total,
                                              megabytes(p.bytes), m.name));
                },
                progress_every());
            (void)sent;
        }

        std::optional<io::fd_writer> log_writer;
        if (::fcntl(fds_.log, F_GETFD) >= 0) log_writer.emplace(fds_.log);
        remote::log_sink log = [&](std::string_view bytes) -> asio::awaitable<void> {
            if (log_writer) co_await log_writer->write(bytes);
        };
        auto outcome = co_await machine.build(drv, args_.max_silent_time, args_.build_timeout, log);
        switch (outcome.verdict) {
        case remote::guix_build_verdict::built: break;
        case remote::guix_build_verdict::failed:
            say(fds_.err, fmt::format("derivation '{}' offloaded to '{}' failed: {}\n", drv, m.name, outcome.message));
            status = 100;
            break;
        case remote::guix_build_verdict::timed_out:
            say(fds_.err, fmt::format("derivation '{}' offloaded to '{}' timed out: {}\n", drv, m.name, outcome.message));
            status = 101;
            break;
        case remote::guix_build_verdict::transient:
            say(fds_.err, fmt::format("ferry: offloading '{}' to '{}': {}\n", drv, m.name, outcome.message));
            status = 1;
            break;
        }
        if (outcome.verdict == remote::guix_build_verdict::built) {
            if (!paths.outputs.empty()) {
                co_await machine.protect(paths.outputs);
                auto config = store::store_config::make(store::store_flavour::guix, env_.store_dir, env_.state_dir);
                config.database_path = (env_.database_dir / "db.sqlite").string();
                store::store_database db(config);
                store::sweep_dead_import_temporaries(db);  // what a killed offload left
                store::temp_roots roots(config);
                store::import_options io_opts;
                io_opts.locked_by_caller = std::set<std::string>(paths.outputs.begin(), paths.outputs.end());
                store::bundle_importer importer(db, roots, io_opts);
                co_await machine.receive(
                    paths.outputs, codec, [&](std::string_view bytes) { importer.feed(bytes); },
                    [&](const remote::guix_transfer_progress& p) {
                        say(fds_.err, fmt::format("ferry: received {} from '{}'\n", megabytes(p.bytes), m.name));
                    },
                    progress_every());
                importer.finish();
                for (const auto& out : paths.outputs)
                    if (!db.is_valid(out))
                        throw failure(errc::remote_failed,
                                      fmt::format("{}: output '{}' did not arrive in the local store", m.name, out));
            }
            say(fds_.err, fmt::format("done with offloaded '{}'\n", drv));
            status = 0;
        }
    } catch (...) {
        error = std::current_exception();
    }
    co_await machine.finish();
    session.close();
    if (error) std::rethrow_exception(error);
    co_return status;
}

int front_end::offload(const protocol::guix_build_request& request, const protocol::guix_accepted_paths& paths) {
    try {
        int status = run_on(io_, offload_async(request, paths));
        chosen_.reset();  // releases the slot
        return status;
    } catch (const std::exception& e) {
        say(fds_.err, fmt::format("ferry: offloading '{}' to '{}' failed: {}\n", request.drv_path,
                                  chosen_ ? chosen_->machine.name : "?", e.what()));
        chosen_.reset();
        return 1;
    }
}

int front_end::run() {
    protocol::guix_hook_decoder decoder;
    std::string buffer;
    bool eof = false;
    std::optional<protocol::guix_build_request> accepted;
    char chunk[65536];
    try {
        for (;;) {
            auto r = eof ? decoder.decode_eof(buffer) : decoder.decode(buffer);
            if (r.need_more()) {
                if (eof) return 0;  // cannot happen: decode_eof always decides
                ssize_t n = ::read(fds_.in, chunk, sizeof chunk);
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) throw failure(std::error_code(errno, std::system_category()), "reading the daemon's requests");
                if (n == 0)
                    eof = true;
                else
                    buffer.append(chunk, static_cast<std::size_t>(n));
                continue;
            }
            buffer.erase(0, r.consumed);
            if (std::holds_alternative<protocol::guix_hook_end>(r.msg)) return 0;
            if (auto* req = std::get_if<protocol::guix_build_request>(&r.msg)) {
                auto reply = handle(*req);
                decoder.reply(reply);
                write_all(fds_.out, protocol::encode_guix_reply(reply));
                if (reply == protocol::hook_reply::accept) accepted = *req;
                continue;
            }
            if (auto* paths = std::get_if<protocol::guix_accepted_paths>(&r.msg)) return offload(*accepted, *paths);
        }
    } catch (const std::exception& e) {
        say(fds_.err, fmt::format("ferry offload: {}\n", e.what()));
        return 1;
    }
}

}  // namespace

guix_environment guix_environment::from(const getenv_fn& getenv) {
    guix_environment e;
    e.store_dir = env_or(getenv, "NIX_STORE_DIR", "/gnu/store");
    e.state_dir = env_or(getenv, "GUIX_STATE_DIRECTORY", "/var/guix");
    e.database_dir = env_or(getenv, "GUIX_DATABASE_DIRECTORY", (e.state_dir / "db").string());
    e.config_dir = env_or(getenv, "GUIX_CONFIGURATION_DIRECTORY", "/etc/guix");
    e.daemon_socket = env_or(getenv, "GUIX_DAEMON_SOCKET", (e.state_dir / "daemon-socket/socket").string());
    e.ferry_config = env_or(getenv, "FERRY_CONFIG", "/etc/ferry/ferry.conf");
    return e;
}

int run_guix_offload(const protocol::guix_hook_args& args, const guix_environment& env, guix_offload_fds fds,
                     guix_offload_options options) {
    try {
        front_end f(args, env, fds, options);
        return f.run();
    } catch (const std::exception& e) {
        say(fds.err, fmt::format("ferry offload: {}\n", e.what()));
        return 1;
    }
}

}  // namespace ferry::hook
