// An allocator handed to libzstd (ZSTD_customMem) and liblzma (lzma_allocator) so
// ferry can see what a codec really holds: the memory budget's estimates are checked
// against peak() in tests and in bench/codec_speed. Worker threads allocate too,
// hence the atomics.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#define ZSTD_STATIC_LINKING_ONLY
#include <lzma.h>
#include <zstd.h>
#include <zstd_errors.h>

namespace ferry::codec::detail {

class counting_allocator {
public:
    counting_allocator();
    counting_allocator(const counting_allocator&) = delete;
    counting_allocator& operator=(const counting_allocator&) = delete;

    void* allocate(std::size_t size);
    void release(void* pointer);

    std::uint64_t in_use() const { return in_use_.load(std::memory_order_relaxed); }
    std::uint64_t peak() const { return peak_.load(std::memory_order_relaxed); }

    ZSTD_customMem zstd() { return {&zstd_alloc, &zstd_free, this}; }
    const lzma_allocator* lzma() const { return &lzma_; }

private:
    static void* zstd_alloc(void* self, std::size_t size);
    static void zstd_free(void* self, void* pointer);
    static void* lzma_alloc(void* self, std::size_t count, std::size_t size);
    static void lzma_free(void* self, void* pointer);

    std::atomic<std::uint64_t> in_use_{0};
    std::atomic<std::uint64_t> peak_{0};
    lzma_allocator lzma_;
};

}  // namespace ferry::codec::detail
