// g++ 12 reports a false -Wmismatched-new-delete on every Asio coroutine frame
// (awaitable_frame_base's class-specific operator new/delete).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "ferry/schedule/slot.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <asio.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::schedule {

namespace fs = std::filesystem;

std::string machine_key(const machine& m) {
    std::string key = fmt::format("{}:{}", m.name, m.port);
    for (char& c : key)
        if (c == '/') c = '_';
    return key;
}

slot::slot(int fd, unsigned index, fs::path path) noexcept
    : fd_(fd), index_(index), path_(std::move(path)) {}

slot::slot(slot&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), index_(other.index_), path_(std::move(other.path_)) {}

slot& slot::operator=(slot&& other) noexcept {
    if (this != &other) {
        release();
        fd_ = std::exchange(other.fd_, -1);
        index_ = other.index_;
        path_ = std::move(other.path_);
    }
    return *this;
}

slot::~slot() { release(); }

void slot::release() noexcept {
    if (fd_ >= 0) {
        ::close(fd_);  // closing the only descriptor of the description drops the OFD lock
        fd_ = -1;
    }
}

fs::path slot_directory(const fs::path& state_dir, const machine& m) {
    return state_dir / "offload" / machine_key(m);
}

namespace {

[[noreturn]] void throw_errno(const std::string& what, int err) {
    throw failure(std::error_code(err, std::system_category()),
                  fmt::format("{}: {}", what, std::strerror(err)));
}

void prepare_directory(const fs::path& dir, unsigned count) {
    if (count == 0) throw failure(errc::bad_input, fmt::format("{}: no lock files (max-jobs is 0)", dir.string()));
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw failure(ec, fmt::format("creating lock directory {}: {}", dir.string(), ec.message()));
}

int open_slot_file(const fs::path& file) {
    // Read-write: an exclusive fcntl/OFD lock needs a descriptor open for writing.
    int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno(fmt::format("opening slot file {}", file.string()), errno);
    return fd;
}

// true: locked; false: held by someone else.
bool try_lock(int fd, const fs::path& file) {
    struct flock lk {};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    lk.l_start = 0;
    lk.l_len = 0;  // whole file, like guix offload's fcntl-flock
    lk.l_pid = 0;  // must be 0 for OFD locks
    for (;;) {
        if (::fcntl(fd, F_OFD_SETLK, &lk) == 0) return true;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EACCES) return false;
        throw_errno(fmt::format("locking slot file {}", file.string()), errno);
    }
}

slot take(int fd, unsigned index, fs::path file) {
    // Touch it, as Nix's build-remote does: the mtime says when the slot was last taken.
    ::futimens(fd, nullptr);
    return slot(fd, index, std::move(file));
}

// Holds one descriptor per slot file while waiting.
struct slot_files {
    std::vector<int> fds;
    ~slot_files() {
        for (int fd : fds)
            if (fd >= 0) ::close(fd);
    }
};

}  // namespace

std::optional<slot> try_acquire_slot(const fs::path& state_dir, const machine& m) {
    if (m.max_jobs == 0) throw failure(errc::bad_input, fmt::format("machine {}: max-jobs is 0", m.name));
    return try_lock_any(slot_directory(state_dir, m), m.max_jobs);
}

asio::awaitable<slot> acquire_slot(const fs::path& state_dir, const machine& m, slot_wait_options options) {
    if (m.max_jobs == 0) throw failure(errc::bad_input, fmt::format("machine {}: max-jobs is 0", m.name));
    fs::path dir = slot_directory(state_dir, m);
    co_return co_await lock_any(dir, m.max_jobs, options);
}

std::optional<slot> try_lock_any(const fs::path& dir, unsigned count) {
    prepare_directory(dir, count);
    for (unsigned i = 0; i < count; ++i) {
        fs::path file = dir / std::to_string(i);
        int fd = open_slot_file(file);
        bool locked = false;
        try {
            locked = try_lock(fd, file);
        } catch (...) {
            ::close(fd);
            throw;
        }
        if (locked) return take(fd, i, std::move(file));
        ::close(fd);
    }
    return std::nullopt;
}

asio::awaitable<slot> lock_any(const fs::path& dir, unsigned count, slot_wait_options options) {
    using namespace asio::experimental::awaitable_operators;
    auto executor = co_await asio::this_coro::executor;
    prepare_directory(dir, count);

    // Watch before the first try: a release between a failed try and the wait
    // is then queued in the inotify descriptor, never lost.
    std::optional<asio::posix::stream_descriptor> watch;
    if (int in = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC); in >= 0) {
        if (::inotify_add_watch(in, dir.c_str(), IN_CLOSE_WRITE | IN_DELETE) >= 0)
            watch.emplace(executor, in);
        else
            ::close(in);
    }

    slot_files files;
    files.fds.assign(count, -1);
    for (unsigned i = 0; i < count; ++i) files.fds[i] = open_slot_file(dir / std::to_string(i));

    asio::steady_timer timer(executor);
    auto delay = options.min_poll;
    for (;;) {
        for (unsigned i = 0; i < count; ++i) {
            fs::path file = dir / std::to_string(i);
            if (try_lock(files.fds[i], file)) {
                int fd = std::exchange(files.fds[i], -1);
                co_return take(fd, i, std::move(file));
            }
        }
        timer.expires_after(delay);
        if (watch) {
            co_await (watch->async_wait(asio::posix::stream_descriptor::wait_read, asio::use_awaitable) ||
                      timer.async_wait(asio::use_awaitable));
            // Drain the queued events; their content does not matter, only that
            // something in the directory was closed after writing.
            char buffer[4096];
            while (::read(watch->native_handle(), buffer, sizeof buffer) > 0) {
            }
        } else {
            co_await timer.async_wait(asio::use_awaitable);
        }
        delay = std::min(delay * 2, options.max_poll);
    }
}

}  // namespace ferry::schedule
