#include "ferry/remote/build_machine.hpp"

#include <chrono>

#include <asio/this_coro.hpp>

namespace ferry::remote {

asio::awaitable<std::unique_ptr<nix_build_machine>> nix_build_machine::open(ssh::session& s,
                                                                            nix_remote_options options) {
    std::unique_ptr<nix_build_machine> m(new nix_build_machine());
    m->session_ = &s;
    m->options_ = options;
    m->control_ = co_await serve_connection::open(s, std::move(options));
    co_return m;
}

asio::awaitable<void> nix_build_machine::protect(const std::vector<std::string>& paths) {
    // Temp roots of the serve process (QueryValidPaths with lock = 1: nix-store
    // --serve --write calls addTempRoot for every path named, valid yet or not).
    // They hold as long as the serve process, i.e. until finish() hangs up (it
    // exits on the EOF), and go with it however the offload ends. One round trip,
    // where a symlink root per path cost the machine a fork of `ln` per path (3000
    // inputs: ~7 s).
    if (paths.empty()) co_return;
    co_await control_.query_valid_paths(paths, /*lock=*/true, /*substitute=*/false);
}

asio::awaitable<std::vector<std::string>> nix_build_machine::protect_and_find_missing(
    const std::vector<std::string>& paths, bool substitute) {
    if (paths.empty()) co_return std::vector<std::string>{};
    co_return co_await control_.protect_and_query_missing(paths, substitute);
}

asio::awaitable<std::vector<std::string>> nix_build_machine::missing_paths(const std::vector<std::string>& paths) {
    co_return co_await control_.query_missing(paths);
}

asio::awaitable<std::vector<std::string>> nix_build_machine::missing_paths(const std::vector<std::string>& paths,
                                                                           bool substitute) {
    co_return co_await control_.query_missing(paths, substitute);
}

asio::awaitable<protocol::serve::build_result> nix_build_machine::build(build_request request, log_sink log) {
    try {
        co_return co_await control_.build_derivation(std::move(request.drv_path), std::move(request.drv),
                                                     request.options, std::move(log));
    } catch (...) {
        control_.abort();  // hang up now: the remote build must not outlive us
        throw;
    }
}

asio::awaitable<void> nix_build_machine::finish() noexcept {
    try {
        co_await asio::this_coro::reset_cancellation_state();
    } catch (...) {
    }
    co_await detail::remove_roots_quietly(roots_, std::chrono::seconds(30));
    control_.hang_up();
}

}  // namespace ferry::remote
