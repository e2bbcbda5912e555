#include "ferry/io/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/core.h>

#include "ferry/io/errors.hpp"
#include "ferry/util/error.hpp"

extern char** environ;

namespace ferry::io {
namespace {

std::error_code last_error() { return {errno, std::system_category()}; }

// Closes what it holds unless released: no fd leaks on an exception path.
struct fd_guard {
    int fd = -1;
    ~fd_guard() { if (fd >= 0) ::close(fd); }
    int release() { return std::exchange(fd, -1); }
};

struct spawn_actions {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    spawn_actions() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~spawn_actions() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
};

int exit_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

}  // namespace

child_process::child_process(pid_t pid, int pidfd, const asio::any_io_executor& ex)
    : pid_(pid), pidfd_(ex, pidfd) {}

child_process::child_process(child_process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      in_(std::move(other.in_)),
      out_(std::move(other.out_)),
      err_(std::move(other.err_)),
      name_(std::move(other.name_)),
      reaped_(std::exchange(other.reaped_, true)),
      status_(other.status_) {}

child_process::~child_process() {
    if (pid_ > 0 && !reaped_) {
        ::kill(pid_, SIGKILL);
        int status;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
    }
}

child_process child_process::spawn(const asio::any_io_executor& ex, const process_options& options) {
    if (options.argv.empty()) throw failure(errc::bad_input, "spawn: empty argv");
    const std::string& name = options.argv.front();
    std::vector<char*> argv;
    for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);

    // pipes[i]: {child's end, parent's end} for fd i.
    std::array<fd_guard, 3> child_end, parent_end;
    const std::array<stdio, 3> modes{options.in, options.out, options.err};
    spawn_actions sa;
    for (int i = 0; i < 3; ++i) {
        if (modes[i] == stdio::pipe) {
            int p[2];
            if (::pipe2(p, O_CLOEXEC) != 0) throw failure(last_error(), fmt::format("spawn {}: pipe", name));
            // p[0] is the read end: the child reads stdin, the parent reads stdout/stderr.
            child_end[i].fd = i == 0 ? p[0] : p[1];
            parent_end[i].fd = i == 0 ? p[1] : p[0];
            posix_spawn_file_actions_adddup2(&sa.actions, child_end[i].fd, i);
        } else if (modes[i] == stdio::null) {
            posix_spawn_file_actions_addopen(&sa.actions, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
        }
    }
    // Inherited fds such as the daemon's fd 4 must not leak into children.
    posix_spawn_file_actions_addclosefrom_np(&sa.actions, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&sa.attr, &none);
    posix_spawnattr_setsigdefault(&sa.attr, &all);
    posix_spawnattr_setflags(&sa.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    pid_t pid = -1;
    int rc = name.find('/') == std::string::npos
                 ? ::posix_spawnp(&pid, name.c_str(), &sa.actions, &sa.attr, argv.data(), environ)
                 : ::posix_spawn(&pid, name.c_str(), &sa.actions, &sa.attr, argv.data(), environ);
    if (rc != 0) throw failure(std::error_code(rc, std::system_category()), fmt::format("spawn {}", name));
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
        auto ec = last_error();
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        throw failure(ec, fmt::format("spawn {}: pidfd_open", name));
    }
    ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    child_process child(pid, pidfd, ex);
    child.name_ = name;
    if (modes[0] == stdio::pipe) child.in_.emplace(ex, parent_end[0].release());
    if (modes[1] == stdio::pipe) child.out_.emplace(ex, parent_end[1].release());
    if (modes[2] == stdio::pipe) child.err_.emplace(ex, parent_end[2].release());
    return child;
}

asio::writable_pipe& child_process::in() {
    if (!in_) throw failure(errc::bad_input, fmt::format("{}: stdin is not a pipe (or already closed)", name_));
    return *in_;
}
asio::readable_pipe& child_process::out() {
    if (!out_) throw failure(errc::bad_input, fmt::format("{}: stdout is not a pipe", name_));
    return *out_;
}
asio::readable_pipe& child_process::err() {
    if (!err_) throw failure(errc::bad_input, fmt::format("{}: stderr is not a pipe", name_));
    return *err_;
}

void child_process::close_in() { in_.reset(); }

void child_process::kill(int signal) {
    if (pid_ > 0 && !reaped_) ::kill(pid_, signal);
}

asio::awaitable<int> child_process::wait() {
    if (reaped_) co_return exit_code(status_);
    // The pidfd turns readable when the child exits; reaping is then immediate.
    co_await pidfd_.async_wait(asio::posix::stream_descriptor::wait_read, asio::use_awaitable);
    int status = 0;
    pid_t r;
    do r = ::waitpid(pid_, &status, 0);
    while (r < 0 && errno == EINTR);
    if (r != pid_) throw failure(last_error(), fmt::format("{} (pid {}): waitpid", name_, pid_));
    reaped_ = true;
    status_ = status;
    co_return exit_code(status);
}

namespace {

asio::awaitable<void> read_all(asio::readable_pipe& pipe, std::string& into, std::size_t limit, std::string what) {
    std::array<char, 65536> buf;
    for (;;) {
        auto [ec, n] = co_await pipe.async_read_some(asio::buffer(buf),
                                                     asio::experimental::as_tuple(asio::use_awaitable));
        if (ec == asio::error::eof) co_return;
        if (ec) throw failure(ec, what + ": reading");
        if (into.size() + n > limit)
            throw failure(errc::too_large, fmt::format("{}: more than {} bytes of output", what, limit));
        into.append(buf.data(), n);
    }
}

}  // namespace

asio::awaitable<process_result> run_process(std::vector<std::string> argv, std::string input,
                                            std::size_t output_limit) {
    using namespace asio::experimental::awaitable_operators;
    auto ex = co_await asio::this_coro::executor;
    process_options options;
    options.argv = std::move(argv);
    options.in = stdio::pipe;
    auto child = child_process::spawn(ex, options);
    process_result result;
    auto feed = [&]() -> asio::awaitable<void> {
        auto [ec, n] = co_await asio::async_write(child.in(), asio::buffer(input),
                                                  asio::experimental::as_tuple(asio::use_awaitable));
        (void)n;
        // A child that does not read its stdin closes the pipe: not our failure.
        if (ec && ec != asio::error::broken_pipe) throw failure(ec, options.argv[0] + ": writing stdin");
        child.close_in();
    };
    const std::string what_out = options.argv[0] + " stdout", what_err = options.argv[0] + " stderr";
    try {
        co_await (feed() && read_all(child.out(), result.out, output_limit, what_out) &&
                  read_all(child.err(), result.err, output_limit, what_err));
    } catch (const asio::multiple_exceptions& e) {
        std::rethrow_exception(first_cause(e.first_exception()));
    }
    result.status = co_await child.wait();
    co_return result;
}

}  // namespace ferry::io
