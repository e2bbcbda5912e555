#include "ferry/io/fd_writer.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::io {

fd_writer::fd_writer(int fd) : fd_(fd) {}

fd_writer::~fd_writer() { thread_.join(); }

void fd_writer::write_blocking(std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd_, data.data(), data.size());
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // Someone else made the description non-blocking: wait, do not touch the flag.
            pollfd p{fd_, POLLOUT, 0};
            if (::poll(&p, 1, -1) >= 0 || errno == EINTR) continue;
        }
        throw failure(std::error_code(errno ? errno : EIO, std::system_category()),
                      fmt::format("writing {} bytes to fd {}", data.size(), fd_));
    }
}

asio::awaitable<void> fd_writer::write(std::string_view data) {
    // co_spawn onto our thread (a post would not move the coroutine there); the
    // completion resumes us on the caller's executor.
    co_await asio::co_spawn(
        thread_,
        [this, data]() -> asio::awaitable<void> {
            write_blocking(data);
            co_return;
        },
        asio::use_awaitable);
}

}  // namespace ferry::io
