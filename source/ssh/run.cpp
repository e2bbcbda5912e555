// ferry::ssh::run: a command, its input and its whole output in one call.
#include "ferry/ssh/session.hpp"

#include <array>
#include <string>

#include <asio/buffer.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <fmt/core.h>

#include "ferry/io/errors.hpp"
#include "ferry/util/error.hpp"

namespace ferry::ssh {

// --- run ------------------------------------------------------------------------------

namespace {

asio::awaitable<void> collect(channel& ch, stream which, std::string& into, std::size_t limit, std::string what) {
    std::array<char, 65536> buf;
    for (;;) {
        std::size_t n = co_await ch.read(asio::buffer(buf), which);
        if (n == 0) co_return;
        if (into.size() + n > limit)
            throw failure(errc::too_large, fmt::format("{}: more than {} bytes of output", what, limit));
        into.append(buf.data(), n);
    }
}

asio::awaitable<void> feed(channel& ch, const std::string& input) {
    if (!input.empty()) co_await ch.write(asio::buffer(input));
    co_await ch.send_eof();
}

}  // namespace

asio::awaitable<command_result> run(session& s, std::string command, std::string input, std::size_t output_limit) {
    using namespace asio::experimental::awaitable_operators;
    channel ch = co_await s.exec(command);
    command_result result;
    const std::string what_out = fmt::format("{}: stdout of `{}`", s.host(), command);
    const std::string what_err = fmt::format("{}: stderr of `{}`", s.host(), command);
    try {
        co_await (feed(ch, input) && collect(ch, stream::out, result.out, output_limit, what_out) &&
                  collect(ch, stream::err, result.err, output_limit, what_err));
    } catch (const asio::multiple_exceptions& e) {
        // The first failure is the cause; the others are the cancellations it caused.
        std::rethrow_exception(io::first_cause(e.first_exception()));
    }
    result.status = co_await ch.wait();
    co_return result;
}

}  // namespace ferry::ssh
