// Fault injection by design (Boost.Beast's fail_count): a counter that makes the
// n-th operation, and every one after it, fail with errc::injected_fault, so tests
// can walk every error path of a layer without a network. Layers take an optional
// `fault_counter*` and consult it before each operation; fault_stream puts one in
// front of any Asio stream.
#pragma once

#include <cstddef>
#include <limits>
#include <string_view>
#include <system_error>
#include <utility>

#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/post.hpp>

#include "ferry/util/error.hpp"

namespace ferry::io {

class fault_counter {
public:
    static constexpr std::size_t never = std::numeric_limits<std::size_t>::max();

    // fail_on: 1-based index of the first operation to fail; `never` to count only.
    explicit fault_counter(std::size_t fail_on = never) noexcept : fail_on_(fail_on) {}

    // Counts one operation. Returns errc::injected_fault from the fail_on-th on:
    // a broken connection stays broken, as a real one does.
    std::error_code step() noexcept {
        ++count_;
        return count_ >= fail_on_ ? make_error_code(errc::injected_fault) : std::error_code{};
    }

    // step(), throwing ferry::failure that names `what` and the operation number.
    void check(std::string_view what);

    std::size_t count() const noexcept { return count_; }
    std::size_t fail_on() const noexcept { return fail_on_; }
    void reset(std::size_t fail_on = never) noexcept {
        count_ = 0;
        fail_on_ = fail_on;
    }

private:
    std::size_t count_ = 0;
    std::size_t fail_on_;
};

// A stream that consults a fault_counter before each async_read_some /
// async_write_some of the stream beneath it; an injected fault completes the
// operation with errc::injected_fault and 0 bytes, without touching the stream.
template <class Stream>
class fault_stream {
public:
    using executor_type = typename Stream::executor_type;

    fault_stream(Stream& next, fault_counter& faults) noexcept : next_(next), faults_(faults) {}

    executor_type get_executor() noexcept { return next_.get_executor(); }
    Stream& next_layer() noexcept { return next_; }

    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& b) {
                if (auto ec = faults_.step())
                    fail(std::move(handler), ec);
                else
                    next_.async_read_some(b, std::move(handler));
            },
            token, buffers);
    }

    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token) {
        return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& b) {
                if (auto ec = faults_.step())
                    fail(std::move(handler), ec);
                else
                    next_.async_write_some(b, std::move(handler));
            },
            token, buffers);
    }

private:
    // Completes through the handler's executor, never inline (Asio's rule).
    template <class Handler>
    void fail(Handler handler, std::error_code ec) {
        auto ex = asio::get_associated_executor(handler, next_.get_executor());
        asio::post(ex, [h = std::move(handler), ec]() mutable { std::move(h)(ec, std::size_t{0}); });
    }

    Stream& next_;
    fault_counter& faults_;
};

}  // namespace ferry::io
