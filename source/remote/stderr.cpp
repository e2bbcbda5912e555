#include "ferry/remote/stderr.hpp"

#include <array>
#include <chrono>

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>

namespace ferry::remote {

void stderr_tail::append(std::string_view bytes) {
    total_ += bytes.size();
    if (bytes.size() >= limit_) {
        text_.assign(bytes.substr(bytes.size() - limit_));
        return;
    }
    text_.append(bytes);
    if (text_.size() > limit_) text_.erase(0, text_.size() - limit_);
}

void stderr_tail::mark_complete() {
    complete_ = true;
    if (waiter_) waiter_->cancel();
}

asio::awaitable<void> stderr_tail::wait_complete(std::chrono::milliseconds limit) {
    if (complete_) co_return;
    asio::steady_timer timer(co_await asio::this_coro::executor, limit);
    waiter_ = &timer;
    std::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    waiter_ = nullptr;
}

std::string stderr_tail::quote() const {
    std::string t = text_;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    if (t.empty()) return {};
    // The last few lines say why; the rest is in the log.
    std::size_t start = t.size();
    for (int lines = 0; lines < 8; ++lines) {
        auto nl = start == 0 ? std::string::npos : t.rfind('\n', start - 1);
        if (nl == std::string::npos) {
            start = 0;
            break;
        }
        start = nl;
    }
    if (start < t.size() && t[start] == '\n') ++start;
    // The failure an operator must act on at once, said plainly (ENOSPC's text, as
    // Nix and coreutils print it, is otherwise buried in the quoted lines).
    std::string why = t.find("No space left on device") != std::string::npos ? "; disk full on the remote machine" : "";
    return why + "; remote stderr: " + t.substr(start);
}

asio::awaitable<void> pump_stderr(ssh::channel& ch, stderr_tail& tail, log_sink sink) {
    std::array<char, 16384> buf;
    for (;;) {
        std::size_t n = co_await ch.read(asio::buffer(buf), ssh::stream::err);
        if (n == 0) break;
        std::string_view bytes(buf.data(), n);
        tail.append(bytes);
        if (sink) co_await sink(bytes);
    }
    tail.mark_complete();
    asio::steady_timer forever(co_await asio::this_coro::executor, std::chrono::steady_clock::time_point::max());
    co_await forever.async_wait(asio::use_awaitable);
}

asio::awaitable<void> drain_stderr(ssh::channel& ch, stderr_tail& tail, std::chrono::milliseconds limit) {
    using namespace asio::experimental::awaitable_operators;
    co_await (pump_stderr(ch, tail, {}) || tail.wait_complete(limit));
}

}  // namespace ferry::remote
