#include "ferry/store/gc_protect.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "ferry/store/hash.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store {

namespace {

[[noreturn]] void sys_fail(const std::string& what) {
    throw failure(std::error_code(errno, std::system_category()), fmt::format("{}: {}", what, std::strerror(errno)));
}

enum class lock_kind { shared, exclusive, none };

// Nix 2.8 locks with flock(2) (pathlocks.cc lockFile); Guix's daemon, on the Nix
// 1.x code, with fcntl(2) record locks. The two do not see each other on Linux,
// so the flavour decides. wait=false returns false when the lock is held elsewhere.
bool lock_fd(int fd, lock_kind kind, bool wait, store_flavour flavour) {
    if (flavour == store_flavour::nix) {
        int op = kind == lock_kind::shared ? LOCK_SH : kind == lock_kind::exclusive ? LOCK_EX : LOCK_UN;
        while (::flock(fd, op | (wait ? 0 : LOCK_NB)) != 0) {
            if (errno == EINTR) continue;
            if (!wait && errno == EWOULDBLOCK) return false;
            sys_fail("flock");
        }
        return true;
    }
    short type = kind == lock_kind::shared ? F_RDLCK : kind == lock_kind::exclusive ? F_WRLCK : F_UNLCK;
    struct flock fl {};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    while (::fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl) != 0) {
        if (errno == EINTR) continue;
        if (!wait && (errno == EACCES || errno == EAGAIN)) return false;
        sys_fail("fcntl lock");
    }
    return true;
}

void write_all(int fd, std::string_view s, const std::string& what) {
    while (!s.empty()) {
        auto n = ::write(fd, s.data(), s.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            sys_fail(what);
        }
        s.remove_prefix(static_cast<std::size_t>(n));
    }
}

int open_lock_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_CLOEXEC | O_RDWR | O_CREAT, 0600);
    if (fd < 0) sys_fail(fmt::format("cannot open lock file '{}'", path));
    return fd;
}

// Tells a running collector about a root (gc.cc's gc-socket protocol). Returns
// false if the collector went away (connection refused / closed): retry then.
bool send_to_collector(const std::string& socket_path, const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) sys_fail("socket");
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path) {
        ::close(fd);
        throw failure(errc::unsupported, fmt::format("GC socket path '{}' is too long", socket_path));
    }
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (ok) {
        auto line = path + "\n";
        ok = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
        char ack = 0;
        ok = ok && ::read(fd, &ack, 1) == 1 && ack == '1';
    }
    ::close(fd);
    return ok;
}

}  // namespace

std::string random_store_path(const store_config& config, std::string_view name) {
    std::array<unsigned char, 20> bytes{};
    std::ifstream("/dev/urandom", std::ios::binary).read(reinterpret_cast<char*>(bytes.data()), bytes.size());
    return config.store_dir + "/" + to_nix_base32(bytes) + "-" + std::string(name);
}

temp_roots::temp_roots(store_config config) : config_(std::move(config)) {}

temp_roots::~temp_roots() {
    if (fd_ >= 0) {
        ::unlink(file_.c_str());
        ::close(fd_);
    }
    if (gc_lock_fd_ >= 0) ::close(gc_lock_fd_);
}

void temp_roots::open_file() {
    auto dir = config_.state_dir + "/temproots";
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    file_ = fmt::format("{}/{}", dir, ::getpid());
    const auto flavour = config_.flavour;
    const bool guix = flavour == store_flavour::guix;
    for (;;) {
        // Guix creates the file under a shared GC lock (Nix 1.x addTempRoot).
        int gc_fd = guix ? open_lock_file(config_.state_dir + "/gc.lock") : -1;
        if (guix) lock_fd(gc_fd, lock_kind::shared, true, flavour);
        ::unlink(file_.c_str());  // stale: no two live processes share a pid
        fd_ = open_lock_file(file_);
        if (guix) ::close(gc_fd);
        lock_fd(fd_, guix ? lock_kind::shared : lock_kind::exclusive, true, flavour);
        struct stat st;
        if (::fstat(fd_, &st) != 0) sys_fail(fmt::format("cannot stat '{}'", file_));
        if (st.st_size == 0) break;
        // The collector deleted and we opened a file it had written to: retry.
        ::close(fd_);
        fd_ = -1;
    }
    gc_lock_fd_ = open_lock_file(config_.state_dir + "/gc.lock");
}

void temp_roots::add(const std::string& path) {
    if (fd_ < 0) open_file();
    const bool guix = config_.flavour == store_flavour::guix;
    if (guix) {
        // Nix 1.x protocol: the collector holds our file's write lock while reading.
        lock_fd(fd_, lock_kind::exclusive, true, config_.flavour);
        write_all(fd_, path + '\0', fmt::format("cannot write '{}'", file_));
        lock_fd(fd_, lock_kind::shared, true, config_.flavour);
        return;
    }
    for (;;) {
        if (lock_fd(gc_lock_fd_, lock_kind::shared, false, config_.flavour)) {
            write_all(fd_, path + '\0', fmt::format("cannot write '{}'", file_));
            lock_fd(gc_lock_fd_, lock_kind::none, true, config_.flavour);
            return;
        }
        // The collector runs: tell it directly, then also record the root.
        if (send_to_collector(config_.state_dir + "/gc-socket/socket", path)) {
            write_all(fd_, path + '\0', fmt::format("cannot write '{}'", file_));
            return;
        }
        ::usleep(10000);
    }
}

path_lock::path_lock(const std::string& path, store_flavour flavour) : lock_file_(path + ".lock") {
    for (;;) {
        fd_ = open_lock_file(lock_file_);
        lock_fd(fd_, lock_kind::exclusive, true, flavour);
        struct stat st;
        if (::fstat(fd_, &st) != 0) sys_fail(fmt::format("cannot stat '{}'", lock_file_));
        if (st.st_size == 0) return;
        ::close(fd_);  // stale: its holder unlinked it
        fd_ = -1;
    }
}

path_lock::~path_lock() { release(); }

path_lock::path_lock(path_lock&& o) noexcept : lock_file_(std::move(o.lock_file_)), fd_(o.fd_) { o.fd_ = -1; }

path_lock& path_lock::operator=(path_lock&& o) noexcept {
    if (this != &o) {
        release();
        lock_file_ = std::move(o.lock_file_);
        fd_ = o.fd_;
        o.fd_ = -1;
    }
    return *this;
}

void path_lock::release() noexcept {
    if (fd_ < 0) return;
    // As Nix's deleteLockFile: unlink, then mark the open file stale for waiters.
    ::unlink(lock_file_.c_str());
    [[maybe_unused]] auto n = ::write(fd_, "d", 1);
    ::close(fd_);
    fd_ = -1;
}

}  // namespace ferry::store
