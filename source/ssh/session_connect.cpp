// Bringing a session up: the SSH handshake, the host-key check (pinned key or
// known_hosts; an unknown key is never accepted) and public-key authentication.
#include "session_state.hpp"

#include <asio/use_awaitable.hpp>

namespace ferry::ssh::detail {
namespace {

std::string fingerprint(ssh_key key) {
    unsigned char* hash = nullptr;
    std::size_t len = 0;
    if (!key || ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &len) != 0) return "(unknown)";
    char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len);
    std::string out = text ? text : "(unknown)";
    ssh_string_free_char(text);
    ssh_clean_pubkey_hash(&hash);
    return out;
}

struct key_holder {
    ssh_key key = nullptr;
    ~key_holder() { ssh_key_free(key); }
};

}  // namespace

// --- connecting -----------------------------------------------------------------

asio::awaitable<void> session_state::handshake() {
    for (;;) {
        int rc = ssh_connect(s);
        if (rc == SSH_OK) break;
        if (rc == SSH_ERROR) throw error(errc::connect_failed, fmt::format("{} to {}", step_connect, target));
        co_await wait_socket(step_handshake);
    }
    ensure_socket();
    verify_host_key();
    co_await authenticate();
}

void session_state::verify_host_key() {
    key_holder offered;
    if (ssh_get_server_publickey(s, &offered.key) != SSH_OK) throw error(errc::connect_failed, "reading the host key");
    const std::string offered_fp = fingerprint(offered.key);
    const char* offered_type = ssh_key_type_to_char(ssh_key_type(offered.key));
    if (!opt.host_key.empty()) {
        // "type base64 [comment]"
        std::string line = opt.host_key;
        auto a = line.find_first_of(" \t");
        auto b = a == std::string::npos ? a : line.find_first_not_of(" \t", a);
        auto c = b == std::string::npos ? b : line.find_first_of(" \t\r\n", b);
        key_holder pinned;
        if (b == std::string::npos ||
            ssh_pki_import_pubkey_base64(line.substr(b, c == std::string::npos ? c : c - b).c_str(),
                                         ssh_key_type_from_name(line.substr(0, a).c_str()), &pinned.key) != SSH_OK)
            throw failure(errc::bad_input,
                          fmt::format("{}: the pinned host key is not an OpenSSH public key line "
                                      "(\"ssh-ed25519 AAAA...\"): '{}'",
                                      host, line.substr(0, 40)));
        if (ssh_key_cmp(offered.key, pinned.key, SSH_KEY_CMP_PUBLIC) != 0)
            throw failure(errc::host_key_mismatch,
                          fmt::format("{} ({}): host key mismatch: pinned {} {}, but the server offered {} {}; "
                                      "not connecting",
                                      host, target, line.substr(0, a), fingerprint(pinned.key), offered_type,
                                      offered_fp));
        return;
    }
    std::string file = opt.known_hosts.empty() ? "known_hosts" : opt.known_hosts.string();
    switch (ssh_session_is_known_server(s)) {
    case SSH_KNOWN_HOSTS_OK:
        return;
    case SSH_KNOWN_HOSTS_CHANGED: {
        ssh_knownhosts_entry* entry = nullptr;
        std::string expected = "(unknown)";
        if (ssh_session_get_known_hosts_entry(s, &entry) == SSH_KNOWN_HOSTS_CHANGED && entry)
            expected = fingerprint(entry->publickey);
        ssh_knownhosts_entry_free(entry);
        throw failure(errc::host_key_mismatch,
                      fmt::format("{} ({}): host key mismatch: {} lists {}, but the server offered {} {}; "
                                  "not connecting",
                                  host, target, file, expected, offered_type, offered_fp));
    }
    case SSH_KNOWN_HOSTS_OTHER:
        throw failure(errc::host_key_mismatch,
                      fmt::format("{} ({}): host key mismatch: {} lists a key of another type, the server "
                                  "offered {} {}; not connecting",
                                  host, target, file, offered_type, offered_fp));
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN:
        throw failure(errc::host_key_mismatch,
                      fmt::format("{} ({}): unknown host key {} {}: not in {} and no key pinned; ferry never "
                                  "accepts an unknown key",
                                  host, target, offered_type, offered_fp, file));
    default:
        throw error(errc::host_key_mismatch, fmt::format("checking the host key against {}", file));
    }
}

asio::awaitable<void> session_state::authenticate() {
    key_holder key;
    if (!opt.identity.empty() &&
        ssh_pki_import_privkey_file(opt.identity.c_str(), nullptr, nullptr, nullptr, &key.key) != SSH_OK)
        throw failure(errc::auth_failed,
                      fmt::format("{}: cannot read the private key {} (missing, or protected by a passphrase)", host,
                                  opt.identity.string()));
    for (;;) {
        int rc = key.key ? ssh_userauth_publickey(s, nullptr, key.key) : ssh_userauth_publickey_auto(s, nullptr, nullptr);
        if (rc == SSH_AUTH_SUCCESS) co_return;
        if (rc == SSH_AUTH_AGAIN) {
            co_await wait_socket(step_auth);
            continue;
        }
        if (rc == SSH_AUTH_ERROR) throw error(errc::auth_failed, step_auth);
        throw failure(errc::auth_failed,
                      fmt::format("{} ({}): public key authentication refused for {}", host, target,
                                  opt.identity.empty() ? std::string("the default identities and ssh-agent")
                                                       : opt.identity.string()));
    }
}

}  // namespace ferry::ssh::detail
