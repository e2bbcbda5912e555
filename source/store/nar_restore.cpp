#include "ferry/store/nar_restore.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "ferry/util/error.hpp"

namespace ferry::store {

namespace nar = protocol::nar;

namespace {

[[noreturn]] void sys_fail(const std::string& what, const std::string& path) {
    throw failure(std::error_code(errno, std::system_category()),
                  fmt::format("NAR restore: {} '{}': {}", what, path, std::strerror(errno)));
}

// mtime 1, as Nix's canonicalisation (atime too, like Nix).
void set_mtime_one(int dirfd, const std::string& path, int flags) {
    struct timespec times[2] = {{1, 0}, {1, 0}};
    if (::utimensat(dirfd, path.c_str(), times, flags) != 0) sys_fail("cannot set the time of", path);
}

}  // namespace

void remove_tree(const std::string& path) noexcept {
    std::error_code ec;
    auto status = std::filesystem::symlink_status(path, ec);
    if (ec || !std::filesystem::exists(status)) return;
    if (std::filesystem::is_directory(status)) {
        ::chmod(path.c_str(), 0700);
        for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
             !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
            if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0700);
        }
    }
    std::filesystem::remove_all(path, ec);
}

nar_restorer::nar_restorer(std::string target) : target_(std::move(target)) {}

nar_restorer::~nar_restorer() {
    if (!released_ && !complete_) abort();
}

void nar_restorer::abort() noexcept {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    if (started_ && !released_) remove_tree(target_);
    started_ = false;
}

void nar_restorer::close_file() {
    if (::fchmod(fd_, file_executable_ ? 0555 : 0444) != 0) sys_fail("cannot chmod", file_path_);
    struct timespec times[2] = {{1, 0}, {1, 0}};
    if (::futimens(fd_, times) != 0) sys_fail("cannot set the time of", file_path_);
    if (::close(fd_) != 0) {
        fd_ = -1;
        sys_fail("cannot close", file_path_);
    }
    fd_ = -1;
}

void nar_restorer::on_event(const nar::event& e) {
    // The path of the node this event starts: target for the root, else the entry.
    auto node_path = [&] { return paths_.empty() ? target_ : paths_.back() + "/" + pending_name_; };
    auto first = [&] { started_ = true; };
    switch (e.type) {
    case nar::event_type::directory: {
        auto p = node_path();
        if (::mkdir(p.c_str(), 0700) != 0) sys_fail("cannot create directory", p);
        first();
        paths_.push_back(p);
        break;
    }
    case nar::event_type::entry:
        pending_name_ = std::string(e.text);
        break;
    case nar::event_type::regular:
        file_path_ = node_path();
        fd_ = ::open(file_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd_ < 0) sys_fail("cannot create file", file_path_);
        first();
        file_executable_ = e.executable;
        break;
    case nar::event_type::data: {
        auto data = e.text;
        while (!data.empty()) {
            auto n = ::write(fd_, data.data(), data.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                sys_fail("cannot write", file_path_);
            }
            data.remove_prefix(static_cast<std::size_t>(n));
        }
        break;
    }
    case nar::event_type::regular_end:
        close_file();
        break;
    case nar::event_type::symlink: {
        auto p = node_path();
        std::string target(e.text);
        if (::symlink(target.c_str(), p.c_str()) != 0) sys_fail("cannot create symlink", p);
        first();
        set_mtime_one(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW);
        break;
    }
    case nar::event_type::entry_end:
        break;
    case nar::event_type::directory_end: {
        auto p = paths_.back();
        paths_.pop_back();
        if (::chmod(p.c_str(), 0555) != 0) sys_fail("cannot chmod", p);
        set_mtime_one(AT_FDCWD, p, 0);
        break;
    }
    case nar::event_type::end:
        complete_ = true;
        break;
    }
}

nar_restore_stream::nar_restore_stream(std::string target, nar::parser_limits limits)
    : parser_(limits), restorer_(std::move(target)) {}

void nar_restore_stream::feed(std::string_view bytes) {
    try {
        for (;;) {
            auto step = parser_.next(bytes);
            hash_.update(bytes.substr(0, step.consumed));
            bytes.remove_prefix(step.consumed);
            if (!step.ev) break;  // all bytes used, or none needed
            restorer_.on_event(*step.ev);
        }
    } catch (...) {
        restorer_.abort();
        throw;
    }
}

sha256_digest nar_restore_stream::finish() {
    try {
        feed({});
        parser_.finish();
    } catch (...) {
        restorer_.abort();
        throw;
    }
    return hash_.finish();
}

}  // namespace ferry::store
