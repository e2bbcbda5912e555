// Running one remote command with a deadline and collecting its output: the
// transport for the schedule layer's probes (schedule::run_remote_fn) and for
// `ferry test`. Never throws for remote trouble: the outcome says what went wrong
// (connect_failed, auth_failed, host_key_mismatch, timed_out, too_large...) with a
// message naming the host and the step.
#pragma once

#include <chrono>
#include <string>
#include <system_error>

#include <asio/awaitable.hpp>

#include "ferry/ssh/session.hpp"

namespace ferry::remote {

struct command_outcome {
    std::error_code error;  // set when the command could not be run to its end
    std::string message;    // names the host and step when error is set
    ssh::exit_status status;
    std::string out, err;
    bool ok() const { return !error && status.success(); }
};

// On an open session. The deadline covers opening the channel, the run and its output.
asio::awaitable<command_outcome> run_command(ssh::session& s, std::string command, std::chrono::milliseconds deadline,
                                             std::string input = {}, std::size_t output_limit = 1 << 20);

// Connects first; the deadline covers connecting too. The session is closed afterwards.
asio::awaitable<command_outcome> run_command(ssh::session_options options, std::string command,
                                             std::chrono::milliseconds deadline, std::string input = {},
                                             std::size_t output_limit = 1 << 20);

}  // namespace ferry::remote
