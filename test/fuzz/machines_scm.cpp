// Fuzz the machines.scm reader and data-subset evaluator.
#include <ferry/machines/guix_machines.hpp>
#include <ferry/util/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        auto ms = ferry::machines::parse_guix_machines(
            std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.scm");
        for (const auto& m : ms) (void)m.can_build("x86_64-linux", {});
    } catch (const ferry::failure&) {
    }
    return 0;
}
