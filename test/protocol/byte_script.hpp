// Helpers for the protocol tests: captured files and byte-script checks in the
// style of Boost.MySQL's sansio tests.
#pragma once

#include <boost/test/unit_test.hpp>

#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace ferry_test {

inline std::string data_file(std::string_view name) {
    std::string path = std::string(FERRY_SOURCE_DIR) + "/test/protocol/data/" + std::string(name);
    std::ifstream in(path, std::ios::binary);
    BOOST_REQUIRE_MESSAGE(in, "cannot open " << path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string u64(std::uint64_t v) {
    std::string out;
    ferry::protocol::wire::append_u64(out, v);
    return out;
}

inline std::string str(std::string_view s) {
    std::string out;
    ferry::protocol::wire::append_string(out, s);
    return out;
}

inline std::string strs(const std::vector<std::string>& v) {
    std::string out;
    ferry::protocol::wire::append_strings(out, v);
    return out;
}

// Every proper prefix of `message` is "need more" without consuming anything.
// make_decoder() returns a fresh decoder in the state just before the message.
template <class MakeDecoder>
void check_every_prefix_needs_more(const std::string& message, MakeDecoder make_decoder) {
    for (std::size_t n = 0; n < message.size(); ++n) {
        auto decoder = make_decoder();
        auto r = decoder.decode(std::string_view(message).substr(0, n));
        BOOST_TEST_REQUIRE(r.need_more(), "prefix of " << n << " bytes was decoded");
        BOOST_TEST_REQUIRE(r.consumed == 0u);
    }
}

// The exception is a ferry::failure with this code and a message containing `part`.
inline auto failure_with(ferry::errc code, std::string part) {
    return [code, part](const ferry::failure& f) {
        BOOST_TEST_MESSAGE("failure: " << f.what());
        return f.code() == code && std::string(f.what()).find(part) != std::string::npos;
    };
}

}  // namespace ferry_test
