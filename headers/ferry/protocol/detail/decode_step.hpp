// Helpers shared by the binary decoders (nix_hook.cpp, serve.cpp): propagating
// "need more" out of a parse function, and naming the protocol and step in errors.
#pragma once

#include <string_view>

#include <fmt/core.h>

#include "ferry/util/error.hpp"

// Inside a parse function returning std::optional: return "need more" when a
// wire::cursor getter does.
#define FERRY_GET(var, expr) \
    auto var = (expr);       \
    if (!var) return std::nullopt

namespace ferry::protocol::detail {

// Runs f; a ferry::failure from it is rethrown with "<protocol>, <step>: " in front.
template <class F>
auto with_step(std::string_view protocol, std::string_view step, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const failure& e) {
        throw failure(e.code(), fmt::format("{}, {}: {}", protocol, step, e.what()));
    }
}

}  // namespace ferry::protocol::detail
