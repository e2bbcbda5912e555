#include "counting_allocator.hpp"

#include <cstdlib>
#include <new>

namespace ferry::codec::detail {
namespace {

// Each block starts with its size, padded to keep the caller's part max-aligned.
constexpr std::size_t header = alignof(std::max_align_t);

}  // namespace

counting_allocator::counting_allocator() : lzma_{&lzma_alloc, &lzma_free, this} {}

void* counting_allocator::allocate(std::size_t size) {
    if (size > SIZE_MAX - header) return nullptr;
    auto* block = static_cast<unsigned char*>(std::malloc(size + header));
    if (block == nullptr) return nullptr;
    *reinterpret_cast<std::size_t*>(block) = size;
    auto now = in_use_.fetch_add(size, std::memory_order_relaxed) + size;
    auto peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return block + header;
}

void counting_allocator::release(void* pointer) {
    if (pointer == nullptr) return;
    auto* block = static_cast<unsigned char*>(pointer) - header;
    in_use_.fetch_sub(*reinterpret_cast<std::size_t*>(block), std::memory_order_relaxed);
    std::free(block);
}

void* counting_allocator::zstd_alloc(void* self, std::size_t size) {
    return static_cast<counting_allocator*>(self)->allocate(size);
}

void counting_allocator::zstd_free(void* self, void* pointer) {
    static_cast<counting_allocator*>(self)->release(pointer);
}

void* counting_allocator::lzma_alloc(void* self, std::size_t count, std::size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return nullptr;
    return static_cast<counting_allocator*>(self)->allocate(count * size);
}

void counting_allocator::lzma_free(void* self, void* pointer) {
    static_cast<counting_allocator*>(self)->release(pointer);
}

}  // namespace ferry::codec::detail
