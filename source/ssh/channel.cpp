// Channels: the libssh callbacks that fill their buffers, channel slots
// (MaxSessions), and exec, write, send_eof, read, wait and close.
#include "session_state.hpp"

#include <cstring>

#include <asio/use_awaitable.hpp>

#include "ferry/io/deadline.hpp"

namespace ferry::ssh {

std::string exit_status::describe() const {
    if (!signal.empty()) return fmt::format("killed by signal {}{}", signal, core_dumped ? " (core dumped)" : "");
    return fmt::format("exit code {}", code);
}

namespace detail {

// --- channels -------------------------------------------------------------------

namespace {

channel_state* state_of(void* userdata) { return static_cast<channel_state*>(userdata); }

int on_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr, void* user) {
    auto* c = state_of(user);
    c->session->last_input = clock::now();
    auto& buf = c->buffered[is_stderr ? 1 : 0];
    std::size_t take = len;
    if (!c->discard) {
        // Bounded: what we do not take stays in libssh's buffer, which stops
        // granting window to the remote until it drains.
        std::size_t held = buf.size() - c->consumed[is_stderr ? 1 : 0];
        take = std::min<std::size_t>(len, held >= channel_state::buffer_limit ? 0 : channel_state::buffer_limit - held);
        buf.append(static_cast<const char*>(data), take);
    }
    c->libssh_holds[is_stderr ? 1 : 0] = take < len;
    c->session->notify();
    return static_cast<int>(take);
}

void on_eof(ssh_session, ssh_channel, void* user) {
    auto* c = state_of(user);
    c->remote_eof = true;
    c->session->notify();
}

void on_close(ssh_session, ssh_channel, void* user) {
    auto* c = state_of(user);
    c->remote_eof = c->remote_closed = true;
    c->session->notify();
}

void on_exit_status(ssh_session, ssh_channel, int code, void* user) {
    auto* c = state_of(user);
    exit_status st;
    st.code = code;
    c->status = st;
    c->session->notify();
}

void on_exit_signal(ssh_session, ssh_channel, const char* signal, int core, const char*, const char*, void* user) {
    auto* c = state_of(user);
    exit_status st;
    st.signal = signal ? signal : "?";
    st.core_dumped = core != 0;
    c->status = st;
    c->session->notify();
}

}  // namespace

void channel_state::install_callbacks() {
    callbacks = {};
    ssh_callbacks_init(&callbacks);
    callbacks.userdata = this;
    callbacks.channel_data_function = on_data;
    callbacks.channel_eof_function = on_eof;
    callbacks.channel_close_function = on_close;
    callbacks.channel_exit_status_function = on_exit_status;
    callbacks.channel_exit_signal_function = on_exit_signal;
    ssh_set_channel_callbacks(ch, &callbacks);
}

void channel_state::close() {
    if (ch) {
        ssh_remove_channel_callbacks(ch, &callbacks);
        if (!session->closed) {
            if (!remote_closed) ssh_channel_close(ch);
            ssh_channel_free(ch);
        }
        ch = nullptr;
        std::erase(session->channels, this);
    }
    release_slot();
}

// Takes what libssh kept in its own buffer while ours was full (or discards it).
void channel_state::pull_leftovers(int which) {
    if (!ch) return;
    std::array<char, 16384> scratch;
    // Also asked when libssh_holds is false: reading the (empty) libssh buffer makes
    // libssh read the socket, which the driver alone might not get to at once.
    for (;;) {
        auto& buf = buffered[which];
        std::size_t held = buf.size() - consumed[which];
        if (!discard && held >= buffer_limit) return;
        std::size_t want = discard ? scratch.size() : std::min(scratch.size(), buffer_limit - held);
        int n = ssh_channel_read_nonblocking(ch, scratch.data(), static_cast<uint32_t>(want), which);
        if (n > 0 && !discard) buf.append(scratch.data(), static_cast<std::size_t>(n));
        // Fewer than asked for: libssh's buffer is empty now.
        if (n <= 0 || static_cast<std::size_t>(n) < want) {
            libssh_holds[which] = false;
            return;
        }
    }
}

}  // namespace detail

namespace {

asio::awaitable<void> open_and_exec(std::shared_ptr<detail::channel_state> c) {
    auto& st = *c->session;
    const std::string step_open_full = c->step(detail::step_open);
    const std::string step_exec_full = c->step(detail::step_exec);
    for (int refused = 0;;) {
        std::uint64_t seen = st.generation;
        int rc = ssh_channel_open_session(c->ch);
        if (rc == SSH_OK) break;
        if (rc == SSH_ERROR && st.channels_in_use > 1 && ++refused < 50 && !st.broken && !st.closed) {
            // sshd frees a closed channel's session a moment after the CLOSE
            // exchange: an open right after a slot came free can still be refused
            // (MaxSessions). Try again shortly on a fresh channel.
            ssh_remove_channel_callbacks(c->ch, &c->callbacks);
            ssh_channel_free(c->ch);
            c->ch = ssh_channel_new(st.s);
            if (!c->ch) throw c->error(errc::remote_failed, detail::step_open);
            c->install_callbacks();
            asio::steady_timer pause(st.ex, std::chrono::milliseconds(20 * refused));
            co_await pause.async_wait(asio::use_awaitable);
            continue;
        }
        if (rc == SSH_ERROR) throw c->error(errc::remote_failed, detail::step_open);
        co_await st.flush(detail::step_flush);
        co_await st.wait_change(seen, step_open_full.c_str());
    }
    for (;;) {
        std::uint64_t seen = st.generation;
        int rc = ssh_channel_request_exec(c->ch, c->command.c_str());
        if (rc == SSH_OK) break;
        if (rc == SSH_ERROR) throw c->error(errc::remote_failed, detail::step_exec);
        co_await st.flush(detail::step_flush);
        co_await st.wait_change(seen, step_exec_full.c_str());
    }
    co_await st.flush(detail::step_flush);
}

}  // namespace

asio::awaitable<channel> session::exec(std::string command) {
    auto st = state_;
    if (!st) throw failure(errc::cancelled, "ssh exec on a closed session");
    auto c = std::make_shared<detail::channel_state>(st);
    c->command = std::move(command);
    c->fault(detail::step_exec);
    const std::string slot_step = c->step(detail::step_slot);
    // MaxSessions: queue rather than have the server refuse the channel.
    while (st->channels_in_use >= std::max<std::size_t>(1, st->opt.max_channels))
        co_await st->wait_change(st->generation, slot_step.c_str());
    st->check_usable(slot_step);
    ++st->channels_in_use;
    c->slot_held = true;
    c->ch = ssh_channel_new(st->s);
    if (!c->ch) throw c->error(errc::remote_failed, detail::step_open);
    st->channels.push_back(c.get());
    c->install_callbacks();
    const std::string what = fmt::format("{}: {}", st->host, c->step(detail::step_exec));
    co_await io::with_deadline(open_and_exec(c), st->opt.request_timeout, what);
    channel result;
    result.state_ = std::move(c);
    co_return result;
}

// --- channel ------------------------------------------------------------------------

channel::~channel() { close(); }

channel& channel::operator=(channel&& other) noexcept {
    if (this != &other) {
        close();
        state_ = std::move(other.state_);
    }
    return *this;
}

void channel::close() {
    if (state_) {
        state_->close();
        state_.reset();
    }
}

const std::string& channel::command() const {
    static const std::string none;
    return state_ ? state_->command : none;
}

namespace {
detail::channel_state& live(const std::shared_ptr<detail::channel_state>& c, const char* step) {
    if (!c) throw failure(errc::cancelled, fmt::format("ssh channel: {}: channel closed", step));
    return *c;
}
}  // namespace

asio::awaitable<void> channel::write(asio::const_buffer data) {
    auto keep = state_;
    auto& c = live(keep, detail::step_write);
    auto& st = *c.session;
    c.fault(detail::step_write);
    const std::string step = c.step(detail::step_write);
    const char* p = static_cast<const char*>(data.data());
    std::size_t left = data.size();
    while (left > 0) {
        st.check_usable(step);
        if (!c.ch) throw c.error(errc::remote_failed, detail::step_write);
        if (c.remote_closed) throw failure(errc::remote_failed, fmt::format("{}: {}: the channel was closed by the remote side", st.host, step));
        co_await st.flush(detail::step_flush);  // the socket takes no more: back-pressure
        std::uint64_t seen = st.generation;
        // Bounded per call so that libssh's output buffer stays small.
        int n = ssh_channel_write(c.ch, p, static_cast<uint32_t>(std::min<std::size_t>(left, 1 << 20)));
        if (n == SSH_ERROR) throw c.error(errc::remote_failed, detail::step_write);
        if (n > 0) {
            st.last_input = detail::clock::now();  // window to write into: the peer reads
            p += n;
            left -= static_cast<std::size_t>(n);
            continue;
        }
        // The remote window is closed: wait for a window adjust (processed by the driver).
        co_await st.wait_change(seen, step.c_str());
    }
    co_await st.flush(detail::step_flush);
}

asio::awaitable<void> channel::send_eof() {
    auto keep = state_;
    auto& c = live(keep, detail::step_eof);
    c.fault(detail::step_eof);
    c.session->check_usable(detail::step_eof);
    if (!c.ch || c.remote_closed) co_return;
    if (ssh_channel_send_eof(c.ch) == SSH_ERROR) throw c.error(errc::remote_failed, detail::step_eof);
    co_await c.session->flush(detail::step_flush);
}

asio::awaitable<std::size_t> channel::read(asio::mutable_buffer into, stream which) {
    auto keep = state_;
    auto& c = live(keep, detail::step_read);
    auto& st = *c.session;
    c.fault(detail::step_read);
    const int i = which == stream::err ? 1 : 0;
    const std::string step = c.step(detail::step_read);
    if (into.size() == 0) co_return 0;
    for (;;) {
        auto& buf = c.buffered[i];
        if (buf.size() == c.consumed[i]) {
            buf.clear();
            c.consumed[i] = 0;
            c.pull_leftovers(i);
        }
        if (buf.size() > c.consumed[i]) {
            std::size_t n = std::min(into.size(), buf.size() - c.consumed[i]);
            std::memcpy(into.data(), buf.data() + c.consumed[i], n);
            c.consumed[i] += n;
            // Reading from libssh's buffer may have granted window: send it.
            co_await st.flush(detail::step_flush);
            co_return n;
        }
        // stdout ends at the remote EOF. OpenSSH may still send stderr (extended
        // data) after its EOF, so stderr ends only when the channel closes.
        if (!c.ch || c.remote_closed || (i == 0 && c.remote_eof)) co_return 0;
        std::uint64_t seen = st.generation;
        co_await st.wait_change(seen, step.c_str());
    }
}

asio::awaitable<exit_status> channel::wait() {
    auto keep = state_;
    auto& c = live(keep, detail::step_wait);
    auto& st = *c.session;
    const std::string step = c.step(detail::step_wait);
    c.discard = true;
    for (int i = 0; i < 2; ++i) {
        c.buffered[i].clear();
        c.consumed[i] = 0;
    }
    for (;;) {
        if (c.status && c.remote_closed) break;
        if (c.remote_closed || !c.ch) {
            if (c.status) break;
            throw failure(errc::remote_failed,
                          fmt::format("{}: {}: the channel closed without an exit status", st.host, step));
        }
        c.pull_leftovers(0);
        c.pull_leftovers(1);
        co_await st.flush(detail::step_flush);
        std::uint64_t seen = st.generation;
        if (c.status && c.remote_closed) break;
        co_await st.wait_change(seen, step.c_str());
    }
    exit_status result = *c.status;
    c.close();  // frees the slot: the server has closed its side
    co_return result;
}

}  // namespace ferry::ssh
