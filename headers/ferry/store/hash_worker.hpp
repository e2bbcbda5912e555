// SHA-256 on a helper thread, so hashing overlaps reading and writing.
//
// SHA-256 (OpenSSL, SHA-NI, about 2 GB/s per core) is most of the CPU time of an
// export or an import: hashing a NAR while the calling thread reads or writes
// the next bytes, and hashing different store paths on different workers, is what
// makes ferry faster than Nix there (docs/store.md, "Speed").
//
// A hash_worker runs the updates it is given in submission order (so several
// pieces of one hash may be queued). The caller keeps the bytes alive and leaves
// the sha256 object alone until wait(ticket) for the last piece returned. Nothing
// is copied. The queue holds views only; its length is bounded by the caller's
// buffers (the importer waits before each feed() returns, the exporter keeps at
// most a fixed number of chunks in flight).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string_view>
#include <thread>

#include "ferry/store/hash.hpp"

namespace ferry::store {

class hash_worker {
public:
    hash_worker();
    ~hash_worker();  // finishes the queued work, then joins
    hash_worker(const hash_worker&) = delete;
    hash_worker& operator=(const hash_worker&) = delete;

    // Queues h.update(bytes); returns its ticket (1, 2, ...).
    std::uint64_t submit(sha256& h, std::string_view bytes);
    // Blocks until the job `ticket` and all before it ran; rethrows a failed update.
    void wait(std::uint64_t ticket);
    // Blocks until everything queued ran, without rethrowing (for error paths:
    // afterwards no queued view is read any more).
    void drain() noexcept;
    bool done(std::uint64_t ticket);
    // Bytes queued and not yet hashed (to spread work over several workers).
    std::uint64_t backlog();

private:
    struct job {
        sha256* hash;
        std::string_view bytes;
    };
    void run();

    std::mutex mutex_;
    std::condition_variable work_, finished_;
    std::deque<job> queue_;
    std::uint64_t submitted_ = 0, completed_ = 0, backlog_ = 0;
    std::exception_ptr error_;
    bool stopping_ = false;
    std::thread thread_;  // last: starts after the members above exist
};

// Hash workers worth starting when several hashes can run at once (export): one
// per core besides the calling thread's, which hashes too when the workers are
// busy; at most 4 (one reading thread feeds about that many at 2 GB/s each); 0 —
// hash on the calling thread only — on a single core. On 2 cores 1 worker was as
// fast as 2 (0.40–0.42 s against 0.40–0.43 s for the bench export).
unsigned default_hash_threads();

}  // namespace ferry::store
