#include "ferry/store/temp_sweep.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "ferry/store/nar_restore.hpp"

namespace ferry::store {

namespace {

namespace fs = std::filesystem;

bool process_exists(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

// The lock a live owner holds on its roots file (gc_protect.cpp: flock for Nix,
// fcntl record locks for Guix's daemon), tried without waiting.
bool lock_dead_file(int fd, store_flavour flavour) {
    if (flavour == store_flavour::nix) return ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    return ::fcntl(fd, F_SETLK, &fl) == 0;
}

// The NUL-terminated paths of a roots file, at most `limit` bytes of it.
std::vector<std::string> listed_paths(int fd, std::size_t limit) {
    std::string text;
    char buf[8192];
    for (ssize_t n; text.size() < limit && (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    std::vector<std::string> paths;
    for (std::size_t start = 0, end; (end = text.find('\0', start)) != std::string::npos; start = end + 1)
        paths.push_back(text.substr(start, end - start));
    return paths;
}

bool is_own_temporary(const std::string& path, const std::string& store_prefix, std::string_view marker) {
    return path.starts_with(store_prefix) && path.find('/', store_prefix.size()) == std::string::npos &&
           path.ends_with(marker);
}

}  // namespace

temp_sweep_report sweep_dead_import_temporaries(store_database& db, std::string_view marker) noexcept {
    temp_sweep_report report;
    try {
        const auto& config = db.config();
        const std::string store_prefix = config.store_dir + "/";
        std::error_code ec;
        for (auto& entry : fs::directory_iterator(config.state_dir + "/temproots", ec)) {
            const auto name = entry.path().filename().string();
            if (name.empty() || name.size() > 9 || name.find_first_not_of("0123456789") != std::string::npos) continue;
            const long pid = std::stol(name);
            if (pid == ::getpid() || process_exists(pid)) continue;
            int fd = ::open(entry.path().c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0) continue;
            if (lock_dead_file(fd, config.flavour)) {
                for (const auto& p : listed_paths(fd, 1 << 20))
                    if (is_own_temporary(p, store_prefix, marker) && fs::symlink_status(p, ec).type() != fs::file_type::not_found &&
                        !db.is_valid(p)) {
                        remove_tree(p);
                        ++report.temporaries;
                    }
                // Unlinked while locked, as the collector does: the owner is gone.
                if (::unlink(entry.path().c_str()) == 0) ++report.root_files;
            }
            ::close(fd);
        }
    } catch (...) {
        // Best effort: whatever is left, Nix's collector still removes.
    }
    return report;
}

}  // namespace ferry::store
