#include "ferry/hook/guix_offload.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <cerrno>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <fmt/core.h>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/hook/guix_machine_offload.hpp"
#include "ferry/hook/offload.hpp"
#include "ferry/machines/ferry_conf.hpp"
#include "ferry/machines/guix_machines.hpp"
#include "ferry/machines/nix_machines.hpp"
#include "ferry/io/fd_writer.hpp"
#include "ferry/store/derivation.hpp"
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

// The daemon's outputs line names output PATHS; BuildDerivation and the Nix flow
// want output NAMES: the .drv says which is which.
std::vector<std::string> output_names(const std::string& drv_path, const std::vector<std::string>& paths) {
    auto drv = store::read_derivation(drv_path);
    std::vector<std::string> names;
    for (const auto& p : paths) {
        auto o = std::find_if(drv.outputs.begin(), drv.outputs.end(), [&](const auto& out) { return out.path == p; });
        if (o == drv.outputs.end())
            throw failure(errc::bad_input, fmt::format("the daemon asked for '{}', which is not an output of {}", p,
                                                       drv_path));
        names.push_back(o->name);
    }
    return names;
}

// Where a machine's GC roots go when ferry.conf does not say.
std::string remote_state_dir_for(const machines::settings& c, machines::remote_flavour f) {
    if (!c.remote_state_dir.empty()) return c.remote_state_dir;
    return f == machines::remote_flavour::nix ? "/nix/var/nix" : "/var/guix";
}

class front_end {
public:
    front_end(const protocol::guix_hook_args& args, const guix_environment& env, guix_offload_fds fds,
              guix_offload_options options)
        : args_(args), env_(env), fds_(fds), options_(options) {}

    int run();

private:
    protocol::hook_reply handle(const protocol::guix_build_request& request);
    int offload(const protocol::guix_build_request& request, const protocol::guix_accepted_paths& paths);
    const std::vector<machines::machine>& machines();
    offload_settings settings_for(const std::string& machine,
                                  machines::remote_flavour flavour = machines::remote_flavour::guix) const;
    guix_offload_job job_for(const protocol::guix_build_request& request,
                             const protocol::guix_accepted_paths& paths) const;
    offload_job nix_job_for(const protocol::guix_build_request& request,
                            const protocol::guix_accepted_paths& paths) const;
    offload_events events_for(const std::string& machine, std::optional<io::fd_writer>& log);
    // ferry.conf log-level debug/trace shows the decision log and the steps.
    bool verbose() const {
        return conf_.global().level == machines::log_level::debug || conf_.global().level == machines::log_level::trace;
    }
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
    std::optional<std::vector<machines::machine>> machines_;
    machines::ferry_conf conf_;
    std::optional<machine_choice> chosen_;  // holds the slot while the offload runs
};

const std::vector<machines::machine>& front_end::machines() {
    if (!machines_) {
        const auto conf = env_.ferry_config.string();
        conf_ = machines::parse_ferry_conf(machines::read_file_if_exists(conf).value_or(""), conf,
                                           env_.state_dir.string());
        // offload.scm build-machines: a missing file is silently no machines.
        const auto file = env_.machines_file().string();
        auto text = machines::read_file_if_exists(file);
        machines_ = text ? machines::parse_guix_machines(*text, file) : std::vector<machines::machine>{};
        for (auto& m : *machines_) {
            // The machine's own overload-threshold (Guix's 0.8 default) unless ferry.conf says otherwise.
            auto c = conf_.for_machine(m.host);
            if (c.overload_threshold_off)
                m.overload_threshold.reset();
            else if (c.overload_threshold)
                m.overload_threshold = c.overload_threshold;
        }
    }
    return *machines_;
}

offload_settings front_end::settings_for(const std::string& machine, machines::remote_flavour flavour) const {
    // state_dir defaults to Guix's state directory: slots where guix offload keeps them.
    auto c = machine.empty() ? conf_.global() : conf_.for_machine(machine);
    offload_settings s = settings_from(c, schedule::daemon_kind::guix);
    s.remote_store_dir = env_.store_dir;  // a build machine's store is where ours is (same paths)
    s.remote_state_dir = remote_state_dir_for(c, flavour);
    return s;
}

protocol::hook_reply front_end::handle(const protocol::guix_build_request& request) {
    const auto& all = machines();
    offload_request r{request.system, request.drv_path, request.features, request.am_willing};
    machine_choice choice;
    try {
        choice = run_on(io_, choose_machine(all, r, settings_for("")));
    } catch (const std::exception& e) {
        // Local trouble (state directory): the daemon may still build it itself.
        say(fds_.err, fmt::format("ferry: cannot choose a machine for '{}': {}\n", request.drv_path, e.what()));
        return protocol::hook_reply::decline;
    }
    if (verbose())
        for (const auto& line : choice.decision_log) say(fds_.err, line + "\n");
    if (choice.reply != protocol::hook_reply::accept) {
        // A postponement is never silent: the summary names each host that is down and why.
        if (choice.candidates > 0) say(fds_.err, choice.summary + "\n");
        return choice.reply;
    }
    if (verbose()) say(fds_.err, choice.summary + "\n");
    chosen_ = std::move(choice);
    return protocol::hook_reply::accept;
}

guix_offload_job front_end::job_for(const protocol::guix_build_request& request,
                                    const protocol::guix_accepted_paths& paths) const {
    const auto& m = machines_->at(*chosen_->chosen);
    auto c = conf_.for_machine(m.host);
    guix_offload_job job;
    job.machine = m;
    job.session = chosen_->session;
    job.drv_path = request.drv_path;
    job.inputs = paths.inputs;
    job.outputs = paths.outputs;
    job.max_silent_time = args_.max_silent_time;
    job.build_timeout = args_.build_timeout;
    job.local_guix = env_.local_guix;
    job.daemon_socket = env_.daemon_socket;
    job.remote.guix_program = c.guix_program;
    job.remote.store_dir = env_.store_dir;
    job.remote.state_dir = remote_state_dir_for(c, machines::remote_flavour::guix);
    job.codec = codec::parse_codec_spec(c.codec);  // auto is resolved per upload (guix_machine_offload.hpp)
    job.remote_has_zstd = !(chosen_->probe && !chosen_->probe->has_zstd);
    job.local_store = env_.store_config();
    job.config_dir = env_.config_dir;
    job.progress_every = progress_every();
    return job;
}

// The same offload on a machine that has Nix and no Guix: nix-store --serve, as
// for nix-daemon, with the local store named by Guix's variables.
offload_job front_end::nix_job_for(const protocol::guix_build_request& request,
                                   const protocol::guix_accepted_paths& paths) const {
    offload_job job;
    job.machine = machines_->at(*chosen_->chosen);
    job.probe = chosen_->probe;
    job.session = chosen_->session;
    job.drv_path = request.drv_path;
    // build.cc's inputs line also holds the .drv (and its closure); BuildDerivation
    // needs no .drv on the machine, and the rest of that closure is harmless text.
    for (const auto& p : paths.inputs)
        if (p != request.drv_path) job.inputs.push_back(p);
    job.wanted_outputs = output_names(request.drv_path, paths.outputs);
    job.max_silent_time = args_.max_silent_time;
    job.build_timeout = args_.build_timeout;
    job.local_flavour = store::store_flavour::guix;
    job.local_store = env_.store_config();
    return job;
}

offload_events front_end::events_for(const std::string& machine, std::optional<io::fd_writer>& log) {
    offload_events events;
    events.log = [&log](std::string_view bytes) -> asio::awaitable<void> {
        if (log) co_await log->write(bytes);
    };
    events.message = [this](log_level level, std::string_view text) {
        if (level <= log_level::info || verbose()) say(fds_.err, std::string(text) + "\n");
    };
    // Progress lines keep the daemon's max-silent-time clock (stderr + fd 4) from
    // running out during long transfers; they do not start with "# ", so the
    // daemon passes them to the client.
    events.progress = [this, machine](offload_events::phase p, const transfer::progress& t) {
        if (p == offload_events::phase::send)
            say(fds_.err, fmt::format("ferry: sent {}/{} items, {} to '{}'\n", t.items_done, t.items_total,
                                      megabytes(t.bytes_done), machine));
        else if (p == offload_events::phase::receive)
            say(fds_.err, fmt::format("ferry: received {} from '{}'\n", megabytes(t.bytes_done), machine));
    };
    return events;
}

int front_end::offload(const protocol::guix_build_request& request, const protocol::guix_accepted_paths& paths) {
    const auto& m = machines_->at(*chosen_->chosen);
    say(fds_.err, fmt::format("offloading '{}' to '{}'...\n", request.drv_path, m.host));
    if (args_.print_build_trace) say(fds_.err, protocol::guix_build_remote_trace(request.drv_path, m.host));
    std::optional<io::fd_writer> log;
    if (::fcntl(fds_.log, F_GETFD) >= 0) log.emplace(fds_.log);
    const auto flavour = remote_flavour_for(conf_.for_machine(m.host), chosen_->probe);
    offload_outcome outcome;
    if (flavour == machines::remote_flavour::nix) {
        if (verbose()) say(fds_.err, fmt::format("ferry: '{}' has Nix and no Guix: offloading through nix-store --serve\n", m.host));
        try {
            outcome = run_on(io_, offload_to_nix_machine(nix_job_for(request, paths), settings_for(m.host, flavour),
                                                         events_for(m.host, log)));
        } catch (const std::exception& e) {  // the .drv could not be read: nothing was sent yet
            outcome.exit_code = 1;
            outcome.message = fmt::format("offload of '{}' to '{}' failed: {}", request.drv_path, m.host, e.what());
        }
    } else {
        outcome = run_on(io_, offload_to_guix_machine(job_for(request, paths), settings_for(m.host, flavour),
                                                      events_for(m.host, log)));
    }
    chosen_.reset();  // releases the slot
    if (outcome.exit_code == 0)
        say(fds_.err, fmt::format("done with offloaded '{}'\n", request.drv_path));
    else
        say(fds_.err, outcome.message + "\n");
    return outcome.exit_code;
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

machines::remote_flavour remote_flavour_for(const machines::settings& conf,
                                            const std::optional<schedule::probe_result>& probe) {
    using machines::remote_flavour;
    if (conf.flavour != remote_flavour::auto_detect) return conf.flavour;
    if (conf.guix_program != "guix") return remote_flavour::guix;  // the operator named the machine's guix
    if (probe && !probe->has_guix && probe->has_nix_store) return remote_flavour::nix;
    return remote_flavour::guix;
}

store::store_config guix_environment::store_config() const {
    auto config = store::store_config::make(store::store_flavour::guix, store_dir, state_dir.string());
    config.database_path = (database_dir / "db.sqlite").string();
    return config;
}

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
