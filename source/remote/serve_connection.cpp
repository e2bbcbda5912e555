#include "ferry/remote/serve_connection.hpp"

#include <array>
#include <set>
#include <variant>

#include <fmt/core.h>

#include "ferry/util/error.hpp"

namespace ferry::remote {

namespace serve = protocol::serve;

struct serve_connection::state {
    std::string host;
    nix_remote_options options;
    ssh::channel ch;
    serve::serve_client client;
    std::string in;  // reply bytes not decoded yet
    stderr_tail tail;
    bool broken = false;
    bool closed = false;
};

namespace {

// The next whole reply; throws remote_failed (with the stderr tail) if stdout ends first.
asio::awaitable<serve::serve_client::reply> read_reply(serve_connection_state_alias_dummy*);

}  // namespace

}  // namespace ferry::remote
