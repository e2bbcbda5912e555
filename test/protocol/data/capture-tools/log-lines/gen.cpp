#include <cstdio>
#include "ferry/protocol/nix_hook.hpp"
#include "ferry/protocol/nix_log.hpp"
using namespace ferry::protocol;
int main(int argc, char**) {
    std::string s = encode_nix_accept("ssh://ferry-test");
    s += nix_log_start(42, nix_verbosity::info, nix_activity::copy_paths, "copying 2 paths");
    s += nix_log_result(42, nix_result::progress, {std::uint64_t(1), std::uint64_t(2), std::uint64_t(0), std::uint64_t(0)});
    s += nix_log_start(43, nix_verbosity::talkative, nix_activity::copy_path, "copying path 'x' to 'ssh://ferry-test'",
                       {std::string("/nix/store/x"), std::string("local"), std::string("ssh://ferry-test")});
    s += nix_log_result(43, nix_result::progress, {std::uint64_t(100), std::uint64_t(200), std::uint64_t(0), std::uint64_t(0)});
    s += nix_log_stop(43);
    s += nix_log_stop(42);
    s += nix_log_msg(nix_verbosity::error, "ferry-marker: remote build failed \xff");
    if (argc > 1) s += "@nix {\"action\":\"result\",\"id\":42,\"type\":105,\"fields\":[-1,2,0,0]}\n";
    fputs(s.c_str(), stdout);
}
