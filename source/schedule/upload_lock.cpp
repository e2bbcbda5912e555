// g++ 12 reports a false -Wmismatched-new-delete on every Asio coroutine frame
// (awaitable_frame_base's class-specific operator new/delete).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "ferry/schedule/upload_lock.hpp"

#include <unistd.h>

#include <variant>

#include <asio.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <fmt/core.h>

namespace ferry::schedule {

namespace fs = std::filesystem;

fs::path upload_lock_directory(const fs::path& state_dir, const machine& m) {
    return state_dir / "ferry" / "upload" / machine_key(m);
}

namespace {

constexpr std::size_t max_holder_text = 512;  // what a waiter reads of the lock file

// Best effort: the text only feeds a log line.
void write_holder(const slot& lock, const std::string& what) {
    std::string text = fmt::format("pid {} {}", ::getpid(), what);
    if (text.size() > max_holder_text) text.resize(max_holder_text);
    int fd = lock.native_handle();
    if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, text.data(), text.size(), 0);
}

// What the previous holder wrote: read once we hold the lock, before our own
// text replaces it, so it names the upload we waited for last.
std::string read_holder(const slot& lock) {
    std::string text(max_holder_text, '\0');
    ssize_t n = ::pread(lock.native_handle(), text.data(), text.size(), 0);
    text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    for (char& c : text)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return text;
}

}  // namespace

asio::awaitable<upload_lock> acquire_upload_lock(const fs::path& state_dir, const machine& m, std::string what,
                                                 upload_lock_options options) {
    using namespace asio::experimental::awaitable_operators;
    const fs::path dir = upload_lock_directory(state_dir, m);
    if (auto free = try_lock_any(dir, 1)) {
        write_holder(*free, what);
        co_return upload_lock(std::move(*free), false, {}, {});
    }
    // Taken: wait for it (a release wakes us through the slot layer's inotify watch).
    const auto start = std::chrono::steady_clock::now();
    asio::steady_timer give_up(co_await asio::this_coro::executor, options.max_wait);
    auto got = co_await (lock_any(dir, 1, options.wait) || give_up.async_wait(asio::use_awaitable));
    const auto waited = std::chrono::steady_clock::now() - start;
    if (got.index() == 1) co_return upload_lock(slot(), true, waited, {});
    slot lock = std::get<0>(std::move(got));
    std::string holder = read_holder(lock);
    write_holder(lock, what);
    co_return upload_lock(std::move(lock), true, waited, std::move(holder));
}

std::string describe_wait(const upload_lock& lock, std::string_view machine_uri) {
    if (!lock.contended()) return {};
    const double seconds = std::chrono::duration<double>(lock.waited()).count();
    std::string who = lock.holder().empty() ? "" : fmt::format(" ({})", lock.holder());
    if (!lock.acquired())
        return fmt::format("ferry: gave up after {:.2f} s waiting for another hook's upload to {}{}; sending anyway",
                           seconds, machine_uri, who);
    return fmt::format("ferry: waited {:.2f} s for another hook's upload to {}{} before sending to it", seconds,
                       machine_uri, who);
}

}  // namespace ferry::schedule
