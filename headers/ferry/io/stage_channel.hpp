// A bounded channel between two pipeline stages (back-pressure: send waits while
// `capacity` items are buffered). The stream ends with an explicit end-of-stream
// message, because Asio 1.22's channel::close() drops what is still buffered; a
// producer that fails passes its exception on, so the consumer rethrows the
// producer's own ferry::failure (with its host/step message), not a bare code.
//
// One producer, one consumer, both on the channel's executor.
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/channel.hpp>
#include <asio/use_awaitable.hpp>

#include "ferry/util/error.hpp"

namespace ferry::io {

template <class T>
class stage_channel {
public:
    stage_channel(const asio::any_io_executor& ex, std::size_t capacity, std::string name = "stage channel")
        : channel_(ex, capacity), name_(std::move(name)) {}

    // Waits while the channel is full.
    asio::awaitable<void> send(T value) {
        // Named messages throughout: g++ 12 destroys a braced temporary inside a
        // co_await operand twice.
        message msg{std::move(value), nullptr};
        co_await put(std::move(msg));
    }
    // End of stream: the consumer's receive() returns nullopt after every item sent before.
    asio::awaitable<void> finish() {
        message msg{std::nullopt, nullptr};
        co_await put(std::move(msg));
    }
    // The producer failed: the consumer's receive() rethrows `error` after the items before it.
    asio::awaitable<void> fail(std::exception_ptr error) {
        message msg{std::nullopt, std::move(error)};
        co_await put(std::move(msg));
    }

    // The next item; nullopt at end of stream. Throws what the producer passed to fail().
    asio::awaitable<std::optional<T>> receive() {
        message msg;
        try {
            msg = co_await channel_.async_receive(asio::use_awaitable);
        } catch (const std::system_error& e) {
            throw failure(errc::cancelled, name_ + ": receive: " + e.code().message());
        }
        if (msg.error) std::rethrow_exception(msg.error);
        co_return std::move(msg.value);
    }

    // Abandons the stream: pending and later sends/receives fail (buffered items are dropped).
    void cancel() { channel_.cancel(); channel_.close(); }

private:
    struct message {
        std::optional<T> value;
        std::exception_ptr error;
    };

    asio::awaitable<void> put(message msg) {
        auto [ec] = co_await channel_.async_send(std::error_code{}, std::move(msg),
                                                 asio::experimental::as_tuple(asio::use_awaitable));
        if (ec) throw failure(errc::cancelled, name_ + ": send: " + ec.message());
    }

    asio::experimental::channel<void(std::error_code, message)> channel_;
    std::string name_;
};

}  // namespace ferry::io
