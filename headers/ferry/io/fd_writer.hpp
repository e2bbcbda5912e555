// Writing to an inherited file descriptor such as fd 4 (the daemon's build-log
// channel) without disturbing it.
//
// Wrapping such an fd in an Asio descriptor would set O_NONBLOCK on the *open file
// description*, which the daemon on the other side shares: its own blocking reads
// or writes would start failing with EAGAIN. fd_writer instead writes with plain
// blocking write(2) calls on its own thread and never changes the fd's flags; if
// someone else left O_NONBLOCK set, it waits with poll(2) on EAGAIN. The fd is not
// owned (never closed).
#pragma once

#include <string_view>

#include <asio/awaitable.hpp>
#include <asio/thread_pool.hpp>

namespace ferry::io {

class fd_writer {
public:
    explicit fd_writer(int fd);
    ~fd_writer();  // waits for a write in progress
    fd_writer(const fd_writer&) = delete;
    fd_writer& operator=(const fd_writer&) = delete;

    int fd() const noexcept { return fd_; }

    // Writes all of `data` (kept alive by the caller until this completes), then
    // resumes on the caller's executor. Throws ferry::failure naming the fd.
    asio::awaitable<void> write(std::string_view data);
    // The same, blocking the calling thread.
    void write_blocking(std::string_view data);

private:
    int fd_;
    asio::thread_pool thread_{1};
};

}  // namespace ferry::io
