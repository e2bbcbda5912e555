// NAR serialisation of a file system tree, pull-based with bounded memory.
//
// nar_source walks the tree lazily: each next_chunk() returns at most about
// chunk_size bytes (plus one small header) and reads file contents straight into
// that buffer, so a 1 GB file streams through a 1 MiB buffer. Output equals
// `nix-store --dump` byte for byte: entries in byte order, the executable bit taken
// from S_IXUSR, symlink targets verbatim. The SHA-256 of everything produced so
// far is computed on the way (the NAR hash once next_chunk() returned empty),
// unless the caller hashes the bytes itself (nar_hashing::by_caller: the bundle
// exporter hashes on worker threads).
// A file that changes size while it is read is an error (Nix's "file changed").
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ferry/store/hash.hpp"

namespace ferry::store {

enum class nar_hashing { on, by_caller };

// An allocator whose value-initialisation leaves bytes uninitialised, so that a
// byte_buffer grows without zero-filling what read() overwrites anyway (the
// zeroing of std::string::resize cost about 4% of an export's CPU time).
template <typename T>
struct uninitialized_allocator : std::allocator<T> {
    template <typename U>
    struct rebind {
        using other = uninitialized_allocator<U>;
    };
    uninitialized_allocator() = default;
    template <typename U>
    uninitialized_allocator(const uninitialized_allocator<U>&) noexcept {}
    template <typename U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <typename U, typename... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
};
using byte_buffer = std::vector<char, uninitialized_allocator<char>>;

class nar_source {
public:
    explicit nar_source(std::string path, std::size_t chunk_size = 1 << 20, nar_hashing hashing = nar_hashing::on);
    ~nar_source();
    nar_source(nar_source&&) noexcept;
    nar_source& operator=(nar_source&&) noexcept;

    // The next bytes; empty once the archive is complete. The view is valid until
    // the next call. Throws ferry::failure naming the path on I/O errors.
    std::string_view next_chunk();
    // The same, but the bytes replace buffer's contents and stay there (buffer's
    // capacity is reused for the one after): chunks the caller keeps, no copy.
    // Returns the size, 0 once complete.
    std::size_t next_chunk_into(byte_buffer& buffer);

    bool finished() const;
    std::uint64_t bytes_produced() const;
    sha256_digest digest() const;  // only once finished(), and only with nar_hashing::on

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Convenience for small trees and tests: the whole NAR in memory.
std::string dump_to_string(const std::string& path);

}  // namespace ferry::store
