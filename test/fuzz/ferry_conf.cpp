// Fuzz the ferry.conf parser and per-machine overrides.
#include <ferry/machines/ferry_conf.hpp>
#include <ferry/util/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        auto c = ferry::machines::parse_ferry_conf(std::string_view(reinterpret_cast<const char*>(data), size),
                                                   "fuzz.conf", "/var/lib/ferry");
        for (const auto& name : c.section_names()) (void)c.for_machine(name);
    } catch (const ferry::failure&) {
    }
    return 0;
}
