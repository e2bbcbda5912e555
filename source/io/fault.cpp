#include "ferry/io/fault.hpp"

#include <fmt/core.h>

#include "ferry/io/deadline.hpp"

namespace ferry::io {

void fault_counter::check(std::string_view what) {
    if (auto ec = step())
        throw failure(ec, fmt::format("{}: injected fault at operation {} (failing from {} on)", what, count_,
                                      fail_on_));
}

namespace detail {
void throw_timed_out(const std::string& what, std::chrono::steady_clock::duration limit) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit).count();
    throw failure(errc::timed_out, fmt::format("{}: no result within {} ms", what, ms));
}
}  // namespace detail

}  // namespace ferry::io

#include <asio/multiple_exceptions.hpp>

#include "ferry/io/errors.hpp"

namespace ferry::io {

std::exception_ptr first_cause(std::exception_ptr e) {
    for (int depth = 0; e && depth < 64; ++depth) {
        try {
            std::rethrow_exception(e);
        } catch (const asio::multiple_exceptions& m) {
            e = m.first_exception();
        } catch (...) {
            return e;
        }
    }
    return e;
}

}  // namespace ferry::io
