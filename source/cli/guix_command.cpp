#include "ferry/cli/guix_command.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <fmt/core.h>

#include "ferry/hook/guix_offload.hpp"
#include "ferry/protocol/guix_hook.hpp"

#ifndef FERRY_REAL_GUIX
#define FERRY_REAL_GUIX ""
#endif

namespace ferry::cli {

namespace {

std::string_view base_name(std::string_view path) {
    auto slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

constexpr std::array<std::string_view, 9> ferry_commands{"help", "-h", "--help", "version", "--version",
                                                         "test", "status", "bench", "hosts"};

bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool system_word(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; }

bool same_file(const std::string& a, const std::string& b) {
    struct stat sa {}, sb {};
    if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char ra[PATH_MAX], rb[PATH_MAX];
    return ::realpath(a.c_str(), ra) && ::realpath(b.c_str(), rb) && std::strcmp(ra, rb) == 0;
}

bool executable_file(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

}  // namespace

bool looks_like_hook_operands(std::span<const std::string_view> op) {
    if (op.size() != 4) return false;
    auto sys = op[0];
    auto dash = sys.find('-');
    if (dash == std::string_view::npos || dash == 0 || dash + 1 == sys.size()) return false;
    if (!std::all_of(sys.begin(), sys.end(), system_word)) return false;
    return all_digits(op[1]) && (op[2] == "0" || op[2] == "1" || op[2] == "true" || op[2] == "false") &&
           all_digits(op[3]);
}

guix_role classify_invocation(std::string_view argv0, std::span<const std::string_view> args) {
    const bool as_guix = base_name(argv0) == "guix";
    if (!args.empty() && args[0] == "offload") return args.size() == 5 ? guix_role::offload_hook : guix_role::passthrough;
    if (looks_like_hook_operands(args)) return guix_role::offload_hook;
    if (as_guix) return guix_role::passthrough;
    if (args.empty()) return guix_role::ferry_command;
    if (std::find(ferry_commands.begin(), ferry_commands.end(), args[0]) != ferry_commands.end())
        return guix_role::ferry_command;
    return guix_role::passthrough;
}

std::span<const std::string_view> hook_operands(std::span<const std::string_view> args) {
    if (!args.empty() && args[0] == "offload") return args.subspan(1);
    return args;
}

real_guix_inputs real_guix_inputs_from_environment() {
    real_guix_inputs in;
    if (const char* v = std::getenv("FERRY_GUIX"); v && *v) in.ferry_guix = v;
    in.recorded = FERRY_REAL_GUIX;
    if (const char* v = std::getenv("PATH")) in.path = v;
    return in;
}

std::optional<std::string> find_real_guix(const real_guix_inputs& in, std::string* why) {
    auto fail = [&](std::string reason) -> std::optional<std::string> {
        if (why) *why = std::move(reason);
        return std::nullopt;
    };
    if (in.ferry_guix) {
        if (!executable_file(*in.ferry_guix)) return fail(fmt::format("FERRY_GUIX={} is not an executable file", *in.ferry_guix));
        if (same_file(*in.ferry_guix, in.self)) return fail(fmt::format("FERRY_GUIX={} is ferry itself", *in.ferry_guix));
        return *in.ferry_guix;
    }
    if (!in.recorded.empty() && executable_file(in.recorded) && !same_file(in.recorded, in.self)) return in.recorded;
    if (in.path) {
        std::string_view rest = *in.path;
        for (;;) {
            auto colon = rest.find(':');
            std::string dir(rest.substr(0, colon));
            if (dir.empty()) dir = ".";
            std::string candidate = dir + "/guix";
            if (executable_file(candidate) && !same_file(candidate, in.self)) return candidate;
            if (colon == std::string_view::npos) break;
            rest.remove_prefix(colon + 1);
        }
    }
    return fail(fmt::format("no real guix: FERRY_GUIX is unset, {}, and no other `guix` is on PATH",
                            in.recorded.empty() ? std::string("none was recorded at build time")
                                                : fmt::format("the recorded {} is unusable", in.recorded)));
}

int offload_command(std::span<const std::string_view> operands) {
    protocol::guix_hook_args args;
    try {
        args = protocol::parse_guix_hook_args(operands);
    } catch (const std::exception& e) {
        fmt::print(stderr, "ferry offload: {}\n", e.what());
        return 1;
    }
    auto env = hook::guix_environment::from([](const char* n) { return std::getenv(n); });
    if (auto g = find_real_guix(real_guix_inputs_from_environment())) env.local_guix = *g;
    return hook::run_guix_offload(args, env);
}

std::optional<int> guix_dispatch(int argc, char** argv) {
    if (argc < 1) return std::nullopt;
    std::vector<std::string_view> args(argv + 1, argv + argc);
    switch (classify_invocation(argv[0], args)) {
    case guix_role::ferry_command: return std::nullopt;
    case guix_role::offload_hook: return offload_command(hook_operands(args));
    case guix_role::passthrough: break;
    }
    std::string why;
    auto real = find_real_guix(real_guix_inputs_from_environment(), &why);
    if (!real) {
        // Named ferry, nothing asked of guix explicitly: an unknown command is ferry's usage error.
        if (base_name(argv[0]) != "guix" && !args.empty() && args[0] != "offload" && !std::getenv("FERRY_GUIX"))
            return std::nullopt;
        fmt::print(stderr, "ferry: cannot pass '{}' on to guix: {}\n", args.empty() ? "" : args[0], why);
        return 2;
    }
    std::vector<char*> new_argv;
    new_argv.push_back(real->data());
    for (int i = 1; i < argc; ++i) new_argv.push_back(argv[i]);
    new_argv.push_back(nullptr);
    ::execv(real->c_str(), new_argv.data());
    fmt::print(stderr, "ferry: executing {}: {}\n", *real, std::strerror(errno));
    return 127;
}

}  // namespace ferry::cli
