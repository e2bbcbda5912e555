// Child processes as awaitables. spawn() starts argv[0] (looked up in PATH when it
// has no slash) with posix_spawn; every fd but 0-2 is closed in the child, signal
// dispositions and mask are reset. stdin/stdout/stderr are each a pipe (an Asio
// writable/readable pipe on the parent's side), /dev/null, or inherited.
// wait() waits on a pidfd (pidfd_open + stream_descriptor wait_read), then reaps
// with waitpid: no SIGCHLD handler, no polling, cancellable.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/readable_pipe.hpp>
#include <asio/writable_pipe.hpp>

namespace ferry::io {

enum class stdio { null, pipe, inherit };

struct process_options {
    std::vector<std::string> argv;  // argv[0]: absolute path, or a name looked up in PATH
    stdio in = stdio::null;
    stdio out = stdio::pipe;
    stdio err = stdio::pipe;  // library code must not inherit stderr: default is a pipe
};

class child_process {
public:
    // Throws ferry::failure naming argv[0] if pipes, pidfd or posix_spawn fail.
    static child_process spawn(const asio::any_io_executor& ex, const process_options& options);

    child_process(child_process&&) noexcept;
    child_process& operator=(child_process&&) = delete;
    child_process(const child_process&) = delete;
    // A child still running is SIGKILLed and reaped: none outlives its handle.
    ~child_process();

    pid_t pid() const noexcept { return pid_; }
    // The parent's ends; only valid for stdio::pipe (checked: throws otherwise).
    asio::writable_pipe& in();
    asio::readable_pipe& out();
    asio::readable_pipe& err();
    void close_in();  // EOF for the child's stdin

    // Waits for exit. Returns the exit code, or 128 + signal number if killed.
    asio::awaitable<int> wait();
    void kill(int signal);
    bool reaped() const noexcept { return reaped_; }

private:
    child_process(pid_t pid, int pidfd, const asio::any_io_executor& ex);

    pid_t pid_ = -1;
    asio::posix::stream_descriptor pidfd_;
    std::optional<asio::writable_pipe> in_;
    std::optional<asio::readable_pipe> out_, err_;
    std::string name_;
    bool reaped_ = false;
    int status_ = -1;
};

struct process_result {
    int status = -1;  // as child_process::wait()
    std::string out, err;
};

// Runs argv to completion feeding `input` to its stdin, collecting stdout and stderr
// (each at most `output_limit` bytes: more is an errc::too_large failure).
asio::awaitable<process_result> run_process(std::vector<std::string> argv, std::string input = {},
                                            std::size_t output_limit = 64 << 20);

}  // namespace ferry::io
