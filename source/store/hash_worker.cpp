#include "ferry/store/hash_worker.hpp"

#include <algorithm>

namespace ferry::store {

hash_worker::hash_worker() : thread_([this] { run(); }) {}

hash_worker::~hash_worker() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    work_.notify_one();
    thread_.join();
}

std::uint64_t hash_worker::submit(sha256& h, std::string_view bytes) {
    std::uint64_t ticket;
    {
        std::lock_guard lock(mutex_);
        queue_.push_back({&h, bytes});
        backlog_ += bytes.size();
        ticket = ++submitted_;
    }
    work_.notify_one();
    return ticket;
}

void hash_worker::wait(std::uint64_t ticket) {
    std::unique_lock lock(mutex_);
    finished_.wait(lock, [&] { return completed_ >= ticket; });
    if (error_) std::rethrow_exception(error_);
}

void hash_worker::drain() noexcept {
    std::unique_lock lock(mutex_);
    finished_.wait(lock, [&] { return completed_ >= submitted_; });
}

bool hash_worker::done(std::uint64_t ticket) {
    std::lock_guard lock(mutex_);
    return completed_ >= ticket;
}

std::uint64_t hash_worker::backlog() {
    std::lock_guard lock(mutex_);
    return backlog_;
}

void hash_worker::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and everything queued ran
        auto j = queue_.front();
        queue_.pop_front();
        lock.unlock();
        std::exception_ptr failed;
        try {
            j.hash->update(j.bytes);
        } catch (...) {
            failed = std::current_exception();
        }
        lock.lock();
        if (failed && !error_) error_ = failed;
        backlog_ -= j.bytes.size();
        ++completed_;
        finished_.notify_all();
    }
}

unsigned default_hash_threads() {
    auto cores = std::thread::hardware_concurrency();
    return cores <= 1 ? 0 : std::min(cores - 1, 4u);
}

}  // namespace ferry::store
