// Errors in ferry: a std::error_code for what went wrong (so callers can branch on it)
// plus a message for humans naming the file/line, host or step (Boost.MySQL's
// error_code + diagnostics split). Throwing wrappers raise ferry::failure, which
// carries both.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace ferry {

enum class errc {
    ok = 0,
    bad_input,        // malformed bytes or text from a file, the daemon or a peer
    truncated,        // the input ended in the middle of a unit
    too_large,        // a length or count beyond what ferry accepts
    unsupported,      // valid but outside what ferry implements
    host_key_mismatch,
    auth_failed,
    connect_failed,
    timed_out,
    remote_failed,    // a remote command failed (non-zero exit, signal)
    build_failed,     // the remote build itself failed: permanent
    no_space,
    cancelled,
    injected_fault,   // a failure injected by a test (see io/fault.hpp)
};

const std::error_category& ferry_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), ferry_category()};
}

// An error with its human-readable context. what() is the full message.
class failure : public std::runtime_error {
public:
    failure(std::error_code code, const std::string& message)
        : std::runtime_error(message), code_(code) {}
    failure(errc code, const std::string& message) : failure(make_error_code(code), message) {}

    std::error_code code() const noexcept { return code_; }

private:
    std::error_code code_;
};

}  // namespace ferry

template <>
struct std::is_error_code_enum<ferry::errc> : std::true_type {};
