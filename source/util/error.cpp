#include "ferry/util/error.hpp"

namespace ferry {
namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "ferry"; }

    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::ok: return "success";
        case errc::bad_input: return "malformed input";
        case errc::truncated: return "input truncated";
        case errc::too_large: return "length or count too large";
        case errc::unsupported: return "not supported";
        case errc::host_key_mismatch: return "host key mismatch";
        case errc::auth_failed: return "authentication failed";
        case errc::connect_failed: return "connection failed";
        case errc::timed_out: return "timed out";
        case errc::remote_failed: return "remote command failed";
        case errc::build_failed: return "build failed";
        case errc::no_space: return "no space left";
        case errc::cancelled: return "cancelled";
        case errc::injected_fault: return "injected fault";
        }
        return "unknown ferry error";
    }
};

}  // namespace

const std::error_category& ferry_category() noexcept {
    static const category instance;
    return instance;
}

}  // namespace ferry
