#include "ferry/remote/command.hpp"

#include <fmt/core.h>

#include "ferry/io/deadline.hpp"
#include "ferry/util/error.hpp"

namespace ferry::remote {

namespace {

template <class F>
asio::awaitable<command_outcome> guarded(std::string host, std::chrono::milliseconds deadline, std::string what, F body) {
    command_outcome outcome;
    try {
        auto r = co_await io::with_deadline(body(), deadline, fmt::format("{}: {}", host, what));
        outcome.status = r.status;
        outcome.out = std::move(r.out);
        outcome.err = std::move(r.err);
    } catch (const failure& e) {
        outcome.error = e.code();
        outcome.message = e.what();
    } catch (const std::system_error& e) {
        outcome.error = e.code();
        outcome.message = fmt::format("{}: {}: {}", host, what, e.what());
    } catch (const std::exception& e) {
        outcome.error = make_error_code(errc::remote_failed);
        outcome.message = fmt::format("{}: {}: {}", host, what, e.what());
    }
    co_return outcome;
}

}  // namespace

asio::awaitable<command_outcome> run_command(ssh::session& s, std::string command, std::chrono::milliseconds deadline,
                                             std::string input, std::size_t output_limit) {
    std::string what = fmt::format("`{}`", command);
    co_return co_await guarded(s.host(), deadline, what, [&]() -> asio::awaitable<ssh::command_result> {
        co_return co_await ssh::run(s, command, input, output_limit);
    });
}

asio::awaitable<command_outcome> run_command(ssh::session_options options, std::string command,
                                             std::chrono::milliseconds deadline, std::string input,
                                             std::size_t output_limit) {
    std::string host = options.host;
    std::string what = fmt::format("connect and run `{}`", command);
    co_return co_await guarded(host, deadline, what, [&]() -> asio::awaitable<ssh::command_result> {
        ssh::session s = co_await ssh::session::connect(options);
        auto r = co_await ssh::run(s, command, input, output_limit);
        s.close();
        co_return r;
    });
}

}  // namespace ferry::remote
