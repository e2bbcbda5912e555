#include "ferry/store/nar_dump.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "ferry/protocol/nar.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store {

namespace nar = protocol::nar;

namespace {

[[noreturn]] void sys_fail(const std::string& what, const std::string& path) {
    throw failure(std::error_code(errno, std::system_category()),
                  fmt::format("NAR dump: {} '{}': {}", what, path, std::strerror(errno)));
}

std::vector<std::string> sorted_entries(const std::string& path) {
    DIR* dir = opendir(path.c_str());
    if (!dir) sys_fail("cannot open directory", path);
    std::vector<std::string> names;
    errno = 0;
    while (auto* d = readdir(dir)) {
        std::string_view name = d->d_name;
        if (name != "." && name != "..") names.emplace_back(name);
        errno = 0;
    }
    int err = errno;
    closedir(dir);
    if (err) {
        errno = err;
        sys_fail("cannot read directory", path);
    }
    std::sort(names.begin(), names.end());  // byte order, as Nix's std::map
    return names;
}

}  // namespace

struct nar_source::impl {
    struct frame {
        std::string path;
        std::vector<std::string> names;
        std::size_t next = 0;
    };
    std::string root;
    std::size_t chunk_size;
    byte_buffer out;
    std::string scratch;  // the tokens of one emit()
    std::vector<frame> stack;
    int fd = -1;
    std::string file_path;
    std::uint64_t file_size = 0, file_left = 0;
    bool started = false, done = false, hashing = true;
    std::uint64_t produced = 0;
    sha256 hash;
    sha256_digest digest{};

    ~impl() {
        if (fd >= 0) ::close(fd);
    }

    template <typename Append>
    void emit(Append&& append) {
        scratch.clear();
        append(scratch);
        out.insert(out.end(), scratch.begin(), scratch.end());
    }

    // Emits the node at path (header, or the whole node for a symlink).
    void begin_node(const std::string& path) {
        struct stat st;
        if (::lstat(path.c_str(), &st) != 0) sys_fail("cannot stat", path);
        if (S_ISREG(st.st_mode)) {
            fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) sys_fail("cannot open", path);
            file_path = path;
            file_size = file_left = static_cast<std::uint64_t>(st.st_size);
            emit([&](std::string& t) { nar::append_regular_header(t, (st.st_mode & S_IXUSR) != 0, file_size); });
            if (file_size == 0) finish_file();
        } else if (S_ISLNK(st.st_mode)) {
            // st_size may be 0 on some file systems: never trust it below PATH_MAX.
            std::string target(std::max<std::size_t>(static_cast<std::size_t>(st.st_size) + 1, 4096), '\0');
            auto n = ::readlink(path.c_str(), target.data(), target.size());
            if (n < 0) sys_fail("cannot read symlink", path);
            if (static_cast<std::size_t>(n) >= target.size())
                throw failure(errc::bad_input, fmt::format("NAR dump: symlink '{}' changed while read", path));
            target.resize(static_cast<std::size_t>(n));
            emit([&](std::string& t) { nar::append_symlink(t, target); });
            node_done();
        } else if (S_ISDIR(st.st_mode)) {
            emit([&](std::string& t) { nar::append_directory_begin(t); });
            stack.push_back({path, sorted_entries(path), 0});
        } else {
            throw failure(errc::unsupported, fmt::format("NAR dump: '{}' has an unsupported file type", path));
        }
    }

    void node_done() {
        if (stack.empty()) done = true;
        else emit([&](std::string& t) { nar::append_entry_end(t); });
    }

    void read_file() {
        auto room = chunk_size > out.size() ? chunk_size - out.size() : 0;
        auto want = static_cast<std::size_t>(std::min<std::uint64_t>(file_left, std::max<std::size_t>(room, 1)));
        auto old = out.size();
        out.resize(old + want);
        auto n = ::read(fd, out.data() + old, want);
        if (n < 0) {
            out.resize(old);
            sys_fail("cannot read", file_path);
        }
        out.resize(old + static_cast<std::size_t>(n));
        if (n == 0)
            throw failure(errc::bad_input, fmt::format("NAR dump: file '{}' shrank while being read", file_path));
        file_left -= static_cast<std::uint64_t>(n);
        if (file_left == 0) finish_file();
    }

    void finish_file() {
        {
            char extra;
            if (::read(fd, &extra, 1) > 0)
                throw failure(errc::bad_input, fmt::format("NAR dump: file '{}' grew while being read", file_path));
            ::close(fd);
            fd = -1;
            emit([&](std::string& t) { nar::append_regular_end(t, file_size); });
            node_done();
        }
    }

    void step() {
        if (!started) {
            started = true;
            emit([&](std::string& t) { nar::append_magic(t); });
            begin_node(root);
            return;
        }
        if (fd >= 0) return read_file();
        auto& top = stack.back();
        if (top.next == top.names.size()) {
            stack.pop_back();
            emit([&](std::string& t) { nar::append_directory_end(t); });
            node_done();
            return;
        }
        const auto& name = top.names[top.next++];
        emit([&](std::string& t) { nar::append_entry_begin(t, name); });
        auto child = top.path + "/" + name;
        begin_node(child);
    }
};

nar_source::nar_source(std::string path, std::size_t chunk_size, nar_hashing hashing)
    : impl_(std::make_unique<impl>()) {
    impl_->root = std::move(path);
    impl_->chunk_size = std::max<std::size_t>(chunk_size, 4096);
    impl_->hashing = hashing == nar_hashing::on;
}
nar_source::~nar_source() = default;
nar_source::nar_source(nar_source&&) noexcept = default;
nar_source& nar_source::operator=(nar_source&&) noexcept = default;

std::string_view nar_source::next_chunk() {
    auto& s = *impl_;
    s.out.clear();
    if (s.done) return {};
    while (!s.done && s.out.size() < s.chunk_size) s.step();
    std::string_view chunk(s.out.data(), s.out.size());
    if (s.hashing) s.hash.update(chunk);
    s.produced += chunk.size();
    if (s.done && s.hashing) s.digest = s.hash.finish();
    return chunk;
}

std::size_t nar_source::next_chunk_into(byte_buffer& buffer) {
    // The chunk is built in impl_->out; swapping hands it over and lends the
    // caller's old buffer (and its capacity) to the next chunk.
    std::swap(impl_->out, buffer);
    auto chunk = next_chunk();
    std::swap(impl_->out, buffer);
    return chunk.size();
}

bool nar_source::finished() const { return impl_->done; }
std::uint64_t nar_source::bytes_produced() const { return impl_->produced; }
sha256_digest nar_source::digest() const {
    if (!impl_->done || !impl_->hashing)
        throw failure(errc::bad_input, "NAR dump: digest requested before the end or of an unhashed NAR");
    return impl_->digest;
}

std::string dump_to_string(const std::string& path) {
    nar_source src(path);
    std::string all;
    for (auto chunk = src.next_chunk(); !chunk.empty(); chunk = src.next_chunk()) all.append(chunk);
    return all;
}

}  // namespace ferry::store
