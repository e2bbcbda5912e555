// Unwrapping Asio's awaitable operators: when one side of `a && b` throws, the
// other is cancelled and `&&` throws asio::multiple_exceptions holding the first
// failure (nested once per `&&`). The first one is the cause; the rest are the
// cancellations it caused.
#pragma once

#include <exception>

namespace ferry::io {

// The innermost first exception of (nested) asio::multiple_exceptions; `e` itself otherwise.
std::exception_ptr first_cause(std::exception_ptr e);

}  // namespace ferry::io
