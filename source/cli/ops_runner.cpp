// g++ 12 reports a false -Wmismatched-new-delete on every Asio coroutine frame.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "ferry/cli/ops_runner.hpp"

#include <exception>

#include <asio.hpp>
#include <fmt/core.h>

#include "ferry/io/deadline.hpp"
#include "ferry/util/error.hpp"

namespace ferry::cli {

void run_per_machine(std::size_t n, std::chrono::milliseconds deadline,
                     const std::function<asio::awaitable<void>(std::size_t)>& body,
                     const std::function<void(std::size_t, std::error_code, const std::string&)>& on_error) {
    asio::io_context io(1);
    for (std::size_t i = 0; i < n; ++i) {
        asio::co_spawn(io, io::with_deadline(body(i), deadline, fmt::format("machine {}", i)),
                       [i, &on_error](std::exception_ptr e) {
                           if (!e) return;
                           try {
                               std::rethrow_exception(e);
                           } catch (const failure& f) {
                               on_error(i, f.code(), f.what());
                           } catch (const std::system_error& s) {
                               on_error(i, s.code(), s.what());
                           } catch (const std::exception& x) {
                               on_error(i, make_error_code(errc::remote_failed), x.what());
                           }
                       });
    }
    io.run();
}

}  // namespace ferry::cli
