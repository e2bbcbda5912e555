// SSH sessions and channels as Asio awaitables (libssh 0.10 in non-blocking mode).
//
// One session is one TCP connection with many channels. libssh is not thread safe
// per session, so a session and all its channels live on one executor (use a
// strand or a single-threaded io_context). Inside, a driver coroutine waits for the
// session socket to turn readable (Asio async_wait on libssh's fd), lets libssh
// process what arrived — channel data lands in per-channel buffers through libssh's
// channel callbacks — and wakes every waiting operation, which then retries its
// non-blocking libssh call. A keepalive coroutine sends keepalive@openssh.com
// during silences (a build may print nothing for an hour) and fails the session
// if the peer stays silent for keepalive_interval * keepalive_count_max.
//
// Security: the host key is checked against a pinned OpenSSH public-key line or,
// when none is pinned, a known_hosts file; a mismatch or an unknown host is an error
// naming the host and the SHA256 fingerprints. Never a prompt, never accept-any.
// libssh's logging is silenced: this library never writes to stdout or stderr.
//
// Errors are ferry::failure: errc::connect_failed, host_key_mismatch, auth_failed,
// timed_out, cancelled, remote_failed, injected_fault; the message names the host,
// the step and libssh's own message. Every await is cancellable (Asio per-operation
// cancellation, e.g. io::with_deadline) and the connection phase is bounded by
// connect_timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>

namespace ferry::io {
class fault_counter;
}

namespace ferry::ssh {

// aes128-gcm first: measured ~1.7x chacha20 here (../shared/reference/library-notes.md).
inline constexpr const char* default_ciphers =
    "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr";

struct session_options {
    std::string host;                     // a host name, address or ssh_config alias
    std::optional<std::uint16_t> port;    // overrides ssh_config / 22
    std::string user;                     // overrides ssh_config; empty: config, else libssh's default
    // ssh_config to honour (Host aliases: HostName, Port, User, IdentityFile,
    // UserKnownHostsFile...). Empty: ~/.ssh/config and /etc/ssh/ssh_config.
    std::filesystem::path config_file;
    bool read_config = true;
    // Private key to log in with. Empty: IdentityFile from the config, the default
    // identities (~/.ssh/id_*) and ssh-agent.
    std::filesystem::path identity;
    // Pinned host key, an OpenSSH public-key line "ssh-ed25519 AAAA..." (a comment
    // after it is ignored). Empty: check `known_hosts` instead.
    std::string host_key;
    // known_hosts file used when no key is pinned. Empty: the config's
    // UserKnownHostsFile, else ~/.ssh/known_hosts.
    std::filesystem::path known_hosts;
    std::string ciphers = default_ciphers;
    std::chrono::milliseconds connect_timeout{30000};  // TCP + handshake + auth, together
    std::chrono::milliseconds request_timeout{60000};  // opening a channel, exec request
    std::chrono::milliseconds keepalive_interval{15000};
    int keepalive_count_max = 4;
    // Concurrent channels: OpenSSH's default MaxSessions. Further exec() calls wait
    // for a free slot (they queue), bounded by request_timeout.
    std::size_t max_channels = 10;
    io::fault_counter* faults = nullptr;  // consulted before every channel operation
};

// How a remote command ended.
struct exit_status {
    int code = -1;           // exit code; -1 if killed by a signal
    std::string signal;      // "TERM", "KILL"... when killed by a signal
    bool core_dumped = false;
    bool success() const noexcept { return code == 0; }
    std::string describe() const;  // "exit code 1" / "killed by signal TERM"
};

namespace detail {
struct session_state;
struct channel_state;
}  // namespace detail

class channel;

class session {
public:
    // Connects, checks the host key and logs in, on the calling coroutine's executor.
    static asio::awaitable<session> connect(session_options options);

    session() = default;
    session(session&&) noexcept = default;
    session& operator=(session&& other) noexcept;  // closes this one first
    ~session();  // close()

    // Runs `command` (one shell command line: quote arguments with shell_quote) on a
    // new channel. Waits for one of max_channels slots first: that wait lasts as long
    // as other channels are busy (builds may take hours), so bound it from outside
    // (io::with_deadline) when that matters; opening and the exec request are
    // bounded by request_timeout.
    asio::awaitable<channel> exec(std::string command);

    const std::string& host() const;
    std::size_t open_channels() const;
    // Disconnects; operations still waiting fail with errc::cancelled. Idempotent.
    void close();
    bool is_open() const;

private:
    std::shared_ptr<detail::session_state> state_;
};

enum class stream { out, err };

class channel {
public:
    channel() = default;
    channel(channel&&) noexcept = default;
    channel& operator=(channel&& other) noexcept;  // closes this one first
    ~channel();  // close()

    // Writes all of `data` to the command's stdin, waiting while the remote
    // window is closed (back-pressure) and while the socket is full.
    asio::awaitable<void> write(asio::const_buffer data);
    asio::awaitable<void> send_eof();  // the command sees end of its stdin

    // Reads what is there (at least 1 byte) from stdout or stderr; 0 at EOF.
    // stdout and stderr are buffered separately (bounded), so read both when
    // the command may write much to both.
    asio::awaitable<std::size_t> read(asio::mutable_buffer into, stream which = stream::out);

    // Waits until the command has ended (discarding output not read yet) and
    // returns how. Throws errc::remote_failed if the channel closes without an
    // exit status.
    asio::awaitable<exit_status> wait();

    // Closes the channel and frees its slot. Idempotent.
    void close();
    const std::string& command() const;

private:
    friend class session;
    std::shared_ptr<detail::channel_state> state_;
};

// Runs `command`, feeding it `input` and collecting stdout and stderr (each up to
// output_limit bytes; more is errc::too_large).
struct command_result {
    exit_status status;
    std::string out, err;
};
asio::awaitable<command_result> run(session& s, std::string command, std::string input = {},
                                    std::size_t output_limit = 64 << 20);

}  // namespace ferry::ssh
