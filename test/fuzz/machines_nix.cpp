// Fuzz the Nix machines-file parser (includes resolve to nothing, or to the input itself).
#include <ferry/machines/nix_machines.hpp>
#include <ferry/util/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    ferry::machines::nix_parse_options opt;
    opt.default_system = "x86_64-linux";
    opt.max_include_depth = 3;
    opt.read = [&](const std::string& p) -> std::optional<std::string> {
        if (p == "self") return text;  // exercises nesting and the depth bound
        return std::nullopt;
    };
    try {
        auto ms = ferry::machines::parse_nix_machines(text, "fuzz", opt);
        for (const auto& m : ms) (void)m.can_build("x86_64-linux", {"kvm"});
    } catch (const ferry::failure&) {
    }
    return 0;
}
