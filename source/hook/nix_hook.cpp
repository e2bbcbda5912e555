#include "ferry/hook/nix_hook.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <fmt/core.h>
#include <fmt/format.h>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/hook/offload.hpp"
#include "ferry/io/fd_writer.hpp"
#include "ferry/machines/ferry_conf.hpp"
#include "ferry/machines/nix_machines.hpp"
#include "ferry/protocol/nix_hook.hpp"
#include "ferry/protocol/nix_log.hpp"
#include "ferry/ssh/ssh_options.hpp"
#include "ferry/store/derivation.hpp"
#include "ferry/util/error.hpp"

namespace ferry::hook {

nix_hook_environment nix_hook_environment::from(const getenv_fn& getenv) {
    nix_hook_environment env;
    if (const char* v = getenv("FERRY_CONFIG"); v && *v) env.ferry_config = v;
    if (const char* v = getenv("NIX_SSHOPTS"); v && *v) env.nix_sshopts = v;
    return env;
}

namespace {

using protocol::nix_verbosity;

// Plain blocking writes that never touch the descriptor's flags; if the daemon
// left O_NONBLOCK on the shared description, wait with poll.
void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd, POLLOUT, 0};
            ::poll(&p, 1, -1);
            continue;
        }
        throw failure(std::error_code(errno ? errno : EIO, std::system_category()),
                      fmt::format("writing to fd {}", fd));
    }
}

// Everything the hook says on stderr: `# ` replies and @nix lines, one whole
// line per write under a lock (progress callbacks and the main flow share it).
class nix_reporter {
public:
    nix_reporter(int fd, unsigned verbosity, unsigned decision_level)
        : fd_(fd), verbosity_(verbosity), decision_level_(decision_level) {}

    void raw(std::string_view line) {
        std::lock_guard lock(mutex_);
        write_all(fd_, line);
    }
    // Best effort: a closed stderr must not turn a result into a crash.
    void quiet(std::string_view line) noexcept {
        try {
            raw(line);
        } catch (...) {
        }
    }
    // A message at `level`: sent when the daemon (VERBOSITY) or ferry.conf's
    // log-level wants it; a level only ferry.conf asked for is sent at the
    // daemon's verbosity, so that the daemon does not drop it.
    void msg(log_level level, std::string_view text) noexcept {
        auto l = static_cast<unsigned>(level);
        if (l > verbosity_ && l > decision_level_) return;
        quiet(protocol::nix_log_msg(static_cast<nix_verbosity>(std::min(l, verbosity_)), text));
    }
    std::uint64_t next_id() { return (static_cast<std::uint64_t>(::getpid()) << 32) | ++ids_; }

private:
    int fd_;
    unsigned verbosity_;
    unsigned decision_level_;
    std::mutex mutex_;
    std::uint64_t ids_ = 0;
};

// The request pipe, read with plain reads (the daemon blocks on our reply, so
// there is nothing else to do meanwhile) and decoded by the sans-I/O decoder.
class request_reader {
public:
    explicit request_reader(int fd) : fd_(fd) {}

    protocol::nix_hook_decoder::message next() {
        for (;;) {
            auto r = eof_ ? decoder_.decode_eof(buffer_) : decoder_.decode(buffer_);
            if (!r.need_more()) {
                buffer_.erase(0, r.consumed);
                return std::move(r.msg);
            }
            if (eof_)
                throw failure(errc::truncated, fmt::format("daemon input ended at offset {}", decoder_.stream_offset()));
            read_more();
        }
    }
    void reply(protocol::hook_reply r) { decoder_.reply(r); }

private:
    void read_more() {
        char buf[65536];
        for (;;) {
            ssize_t n = ::read(fd_, buf, sizeof buf);
            if (n > 0) {
                buffer_.append(buf, static_cast<std::size_t>(n));
                return;
            }
            if (n == 0) {
                eof_ = true;
                return;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                pollfd p{fd_, POLLIN, 0};
                ::poll(&p, 1, -1);
                continue;
            }
            throw failure(std::error_code(errno, std::system_category()), "reading the daemon's requests on stdin");
        }
    }

    int fd_;
    protocol::nix_hook_decoder decoder_;
    std::string buffer_;
    bool eof_ = false;
};

template <class T>
T run_on(asio::io_context& io, asio::awaitable<T> op) {
    // Until op is done, not until the context runs dry: a connection kept for the
    // next step (the probe's session) leaves work pending.
    auto fut = asio::co_spawn(io, std::move(op), asio::use_future);
    io.restart();
    while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
        if (io.run_one() == 0) break;  // stopped: fut.get() says why
    return fut.get();
}

std::string join_words(const std::vector<std::string>& words) {
    std::string s;
    for (const auto& w : words) s += (s.empty() ? "" : ", ") + w;
    return s;
}

// Why ferry cannot offload this derivation, or "" when it can. ferry needs every
// output path before the build (it roots and fetches them by path), which
// floating content-addressed (`__contentAddressed`), impure and deferred outputs
// (those depending on CA derivations) do not have: their .drv gives an empty
// path. A .drv that cannot be read or parsed here is left to the offload, which
// names the problem.
std::string unsupported_derivation(const std::string& drv_path) {
    std::ifstream in(drv_path, std::ios::binary);
    if (!in) return {};
    char buf[65536];
    std::string text;
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        text.append(buf, static_cast<std::size_t>(in.gcount()));
        if (text.size() > (64u << 20)) return {};
    }
    store::derivation drv;
    try {
        drv = store::parse_derivation(text, drv_path);
    } catch (const std::exception&) {
        return {};
    }
    for (const auto& o : drv.outputs) {
        if (!o.path.empty()) continue;
        std::string kind = o.hash_algo.empty()
                               ? "has no path yet (it depends on content-addressed derivations)"
                               : fmt::format("is content-addressed ({}): its path is known only after the build",
                                             o.hash_algo);
        return fmt::format("ferry: not offloading '{}': output '{}' {}; ferry needs every output path before "
                           "the build",
                           drv_path, o.name, kind);
    }
    return {};
}

bool fd_open(int fd) {
    struct stat st;
    return fd >= 0 && ::fstat(fd, &st) == 0;
}

struct progress_activity {
    std::uint64_t parent = 0, child = 0;
    std::size_t paths = 0;
};

class nix_front_end {
public:
    nix_front_end(unsigned verbosity, const nix_hook_environment& env, nix_hook_fds fds)
        : verbosity_(verbosity), env_(env), fds_(fds) {}

    int run();

private:
    int offload(const machines::machine& m, machine_choice& choice, const protocol::nix_build_request& request,
                const protocol::nix_accepted_paths& paths);
    offload_settings settings_for(const std::string& machine) const;
    void log_line(std::string_view text) noexcept;

    unsigned verbosity_;
    nix_hook_environment env_;
    nix_hook_fds fds_;
    std::optional<nix_reporter> out_;
    std::optional<io::fd_writer> log_;
    machines::ferry_conf conf_;
    ssh::ssh_command_options sshopts_;
    protocol::nix_settings settings_;
    asio::io_context io_;
};

offload_settings nix_front_end::settings_for(const std::string& machine) const {
    offload_settings s =
        settings_from(machine.empty() ? conf_.global() : conf_.for_machine(machine), schedule::daemon_kind::nix);
    s.ssh_command_options = sshopts_;
    return s;
}

// ferry.conf's log-level as a floor for what is sent whatever the daemon's
// verbosity: only `debug` (the decision log, Nix's talkative..debug) and `trace`
// raise it; the default `info` leaves the daemon's verbosity in charge.
unsigned promoted_level(machines::log_level l) {
    switch (l) {
    case machines::log_level::debug: return 6;
    case machines::log_level::trace: return 7;
    default: return 0;
    }
}

void nix_front_end::log_line(std::string_view text) noexcept {
    if (!log_) return;
    try {
        log_->write_blocking(std::string(text) + "\n");
    } catch (...) {
    }
}

int nix_front_end::run() {
    // fd 5 is the read side of our own log pipe: never read it, close it first so
    // nothing opened later gets number 5 by accident.
    if (fds_.log_read >= 0) ::close(fds_.log_read);
    if (fd_open(fds_.log)) log_.emplace(fds_.log);

    unsigned decision_level = 0;
    try {
        auto path = env_.ferry_config.string();
        conf_ = machines::parse_ferry_conf(machines::read_file_if_exists(path).value_or(""), path,
                                           nix_hook_environment::default_state_dir);
        decision_level = promoted_level(conf_.global().level);
    } catch (const std::exception& e) {
        nix_reporter(fds_.err, verbosity_, 0).quiet(protocol::nix_log_msg(nix_verbosity::error, e.what()));
        return 1;
    }
    out_.emplace(fds_.err, verbosity_, decision_level);
    sshopts_ = ssh::parse_ssh_command_options(env_.nix_sshopts);
    if (!sshopts_.ignored.empty())
        out_->msg(log_level::talkative, fmt::format("ferry: NIX_SSHOPTS: ignored: {}", fmt::join(sshopts_.ignored, "; ")));

    request_reader reader(fds_.in);
    try {
        auto first = reader.next();
        if (std::holds_alternative<protocol::nix_hook_end>(first)) return 0;
        settings_ = std::get<protocol::nix_settings>(std::move(first));

        machines::nix_parse_options po;
        po.default_system = settings_.system();
        auto machines = machines::parse_nix_machines(settings_.builders(), "<builders>", po);
        for (auto& m : machines) {
            // Nix's own hook ignores the load: so does ferry for Nix machines,
            // unless ferry.conf asks for a threshold.
            auto c = conf_.for_machine(m.host);
            m.overload_threshold.reset();
            if (c.overload_threshold && !c.overload_threshold_off) m.overload_threshold = c.overload_threshold;
        }
        out_->msg(log_level::debug, fmt::format("ferry: {} build machine{} configured", machines.size(),
                                                machines.size() == 1 ? "" : "s"));
        if (machines.empty()) {
            out_->raw(protocol::encode_nix_reply(protocol::hook_reply::decline_permanently));
            return 0;
        }

        for (;;) {
            auto msg = reader.next();
            if (std::holds_alternative<protocol::nix_hook_end>(msg)) return 0;
            auto request = std::get<protocol::nix_build_request>(std::move(msg));
            offload_request r{request.platform, request.drv_path, request.required_features,
                              settings_.can_build_locally(request)};
            if (auto why = unsupported_derivation(request.drv_path); !why.empty()) {
                // Not can_build_locally: the daemon adds "ca-derivations" to the required
                // features, which the preamble's system-features may not list, yet it
                // builds them. With max-jobs 0 it cannot build anything itself.
                const bool no_local_builds = settings_.get("max-jobs").value_or("1") == "0";
                out_->msg(log_level::warn,
                          why + (no_local_builds ? "; declined, but the daemon has max-jobs = 0 and cannot build it "
                                                   "either: allow local builds for it"
                                                 : "; declined: the daemon builds it itself"));
                out_->raw(protocol::encode_nix_reply(protocol::hook_reply::decline));
                reader.reply(protocol::hook_reply::decline);
                continue;
            }
            machine_choice choice;
            try {
                choice = run_on(io_, choose_machine(machines, r, settings_for("")));
            } catch (const std::exception& e) {
                // Local trouble (state directory): the daemon may still build it itself.
                out_->msg(log_level::error, fmt::format("ferry-build-hook: cannot choose a machine for '{}': {}",
                                                        request.drv_path, e.what()));
                choice.reply = protocol::hook_reply::decline;
            }
            for (const auto& line : choice.decision_log) out_->msg(log_level::talkative, line);
            if (choice.reply != protocol::hook_reply::accept) {
                if (choice.candidates == 0 && !r.can_build_locally)
                    out_->msg(log_level::warn,
                              fmt::format("ferry: no build machine can build '{}' (system {}, features [{}])",
                                          request.drv_path, request.platform,
                                          join_words(request.required_features)));
                out_->msg(log_level::chatty, choice.summary);
                out_->raw(protocol::encode_nix_reply(choice.reply));
                reader.reply(choice.reply);
                continue;
            }
            const auto& m = machines.at(*choice.chosen);
            out_->raw(protocol::encode_nix_accept(machine_uri(m)));
            reader.reply(protocol::hook_reply::accept);
            out_->msg(log_level::talkative, choice.summary);
            auto paths = std::get<protocol::nix_accepted_paths>(reader.next());
            return offload(m, choice, request, paths);
        }
    } catch (const std::exception& e) {
        out_->msg(log_level::error, fmt::format("ferry-build-hook: {}", e.what()));
        log_line(fmt::format("ferry: {}", e.what()));
        return 1;
    }
}

int nix_front_end::offload(const machines::machine& m, machine_choice& choice,
                           const protocol::nix_build_request& request, const protocol::nix_accepted_paths& paths) {
    const std::string uri = machine_uri(m);
    auto settings = settings_for(m.host);

    offload_job job;
    job.machine = m;
    job.probe = choice.probe;
    job.session = std::move(choice.session);
    job.drv_path = request.drv_path;
    job.inputs = paths.inputs;
    job.wanted_outputs = paths.wanted_outputs;
    job.max_silent_time = settings_.max_silent_time();
    job.build_timeout = settings_.build_timeout();
    job.max_log_size = settings_.max_log_size();
    job.keep_failed = settings_.keep_failed();
    job.builders_use_substitutes = settings_.builders_use_substitutes();

    nix_reporter& out = *out_;
    std::optional<progress_activity> copy;
    std::uint64_t build_activity = 0;
    offload_events events;
    if (log_)
        events.log = [this](std::string_view bytes) -> asio::awaitable<void> { co_await log_->write(bytes); };
    events.message = [&out](log_level level, std::string_view text) { out.msg(level, text); };
    events.phase_started = [&](offload_events::phase p, std::size_t n, std::uint64_t bytes) {
        using protocol::nix_activity;
        using protocol::nix_result;
        if (p == offload_events::phase::build) {
            build_activity = out.next_id();
            out.quiet(protocol::nix_log_start(build_activity, nix_verbosity::talkative, nix_activity::build,
                                              fmt::format("building '{}' on '{}' (ferry)", request.drv_path, uri),
                                              {request.drv_path, uri, std::uint64_t{1}, std::uint64_t{1}}));
            return;
        }
        if (p != offload_events::phase::send && p != offload_events::phase::receive) return;
        bool send = p == offload_events::phase::send;
        progress_activity a;
        a.paths = n;
        a.parent = out.next_id();
        a.child = out.next_id();
        std::string text = fmt::format("copying {} path{} {} '{}'", n, n == 1 ? "" : "s", send ? "to" : "from", uri);
        out.quiet(protocol::nix_log_start(a.parent, nix_verbosity::info, nix_activity::copy_paths, text));
        out.quiet(protocol::nix_log_result(a.parent, nix_result::set_expected,
                                           {static_cast<std::uint64_t>(nix_activity::copy_path), bytes}));
        // The child carries the byte progress; no text, so the line is not printed twice.
        out.quiet(protocol::nix_log_start(a.child, nix_verbosity::talkative, nix_activity::copy_path, "",
                                          {request.drv_path, send ? "local" : uri, send ? uri : "local"}, a.parent));
        copy = a;
    };
    events.progress = [&](offload_events::phase, const transfer::progress& p) {
        using protocol::nix_result;
        if (!copy) return;
        out.quiet(protocol::nix_log_result(copy->child, nix_result::progress,
                                           {p.bytes_done, std::max(p.bytes_total, p.bytes_done), std::uint64_t{0},
                                            std::uint64_t{0}}));
        out.quiet(protocol::nix_log_result(copy->parent, nix_result::progress,
                                           {static_cast<std::uint64_t>(p.items_done),
                                            static_cast<std::uint64_t>(std::max(p.items_total, copy->paths)),
                                            std::uint64_t{1}, std::uint64_t{0}}));
    };
    events.phase_ended = [&](offload_events::phase p) {
        if (p == offload_events::phase::build && build_activity) {
            out.quiet(protocol::nix_log_stop(build_activity));
            build_activity = 0;
        }
        if ((p == offload_events::phase::send || p == offload_events::phase::receive) && copy) {
            out.quiet(protocol::nix_log_result(copy->parent, protocol::nix_result::progress,
                                               {static_cast<std::uint64_t>(copy->paths),
                                                static_cast<std::uint64_t>(copy->paths), std::uint64_t{0},
                                                std::uint64_t{0}}));
            out.quiet(protocol::nix_log_stop(copy->child));
            out.quiet(protocol::nix_log_stop(copy->parent));
            copy.reset();
        }
    };

    offload_outcome outcome;
    try {
        outcome = run_on(io_, offload_to_nix_machine(std::move(job), settings, std::move(events)));
    } catch (const std::exception& e) {
        outcome.exit_code = 1;
        outcome.message = e.what();
    }
    // Activities left open by a failure.
    if (build_activity) out.quiet(protocol::nix_log_stop(build_activity));
    if (copy) {
        out.quiet(protocol::nix_log_stop(copy->child));
        out.quiet(protocol::nix_log_stop(copy->parent));
    }
    choice.slot.release();
    if (outcome.exit_code != 0) {
        out.msg(log_level::error, outcome.message);
        log_line("ferry: " + outcome.message);
    } else {
        out.msg(log_level::talkative,
                fmt::format("ferry: '{}' built on '{}': sent {} paths ({:.1f} MB) in {:.2f} s, built in {:.2f} s, "
                            "received {} paths ({:.1f} MB) in {:.2f} s",
                            request.drv_path, uri, outcome.sent.paths, outcome.sent.nar_bytes / 1e6,
                            outcome.sent.seconds(), std::chrono::duration<double>(outcome.build_time).count(),
                            outcome.received.paths, outcome.received.nar_bytes / 1e6, outcome.received.seconds()));
    }
    return outcome.exit_code;
}

}  // namespace

int run_nix_build_hook(unsigned verbosity, const nix_hook_environment& env, nix_hook_fds fds) {
    try {
        nix_front_end fe(verbosity, env, fds);
        return fe.run();
    } catch (...) {
        return 1;
    }
}

}  // namespace ferry::hook
