#include <boost/test/unit_test.hpp>

#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace wire = ferry::protocol::wire;
using namespace std::string_literals;

BOOST_AUTO_TEST_SUITE(wire_primitives)

BOOST_AUTO_TEST_CASE(u64_is_little_endian) {
    std::string out;
    wire::append_u64(out, 0x0102030405060708ull);
    BOOST_TEST(out == "\x08\x07\x06\x05\x04\x03\x02\x01"s);
}

BOOST_AUTO_TEST_CASE(strings_are_padded_to_eight) {
    std::string out;
    wire::append_string(out, "try");
    BOOST_TEST(out == "\x03\0\0\0\0\0\0\0try\0\0\0\0\0"s);
    out.clear();
    wire::append_string(out, "12345678");
    BOOST_TEST(out.size() == 16u);
}

BOOST_AUTO_TEST_CASE(round_trip_string_list) {
    std::string out;
    wire::append_strings(out, {"a", "", "/nix/store/x"});
    wire::cursor in(out);
    auto back = in.strings(10, 100);
    BOOST_REQUIRE(back);
    BOOST_TEST((*back == std::vector<std::string>{"a", "", "/nix/store/x"}));
    BOOST_TEST(in.rest().empty());
}

BOOST_AUTO_TEST_CASE(every_prefix_asks_for_more_and_consumes_nothing) {
    std::string out;
    wire::append_strings(out, {"alpha", "beta"});
    for (std::size_t n = 0; n < out.size(); ++n) {
        wire::cursor in(std::string_view(out).substr(0, n));
        BOOST_TEST(!in.strings(10, 100).has_value());
        BOOST_TEST(in.consumed() == 0u);
    }
}

BOOST_AUTO_TEST_CASE(huge_length_prefix_is_refused_without_allocating) {
    std::string out;
    wire::append_u64(out, 1ull << 60);
    wire::cursor in(out, 100);
    BOOST_CHECK_EXCEPTION(in.string(1 << 20), ferry::failure, [](const ferry::failure& f) {
        return f.code() == ferry::errc::too_large && std::string(f.what()).find("offset 100") != std::string::npos;
    });
}

BOOST_AUTO_TEST_CASE(non_zero_padding_is_malformed) {
    std::string out = "\x01\0\0\0\0\0\0\0x\0\0\x01\0\0\0\0"s;
    wire::cursor in(out);
    BOOST_CHECK_EXCEPTION(in.string(10), ferry::failure,
                          [](const ferry::failure& f) { return f.code() == ferry::errc::bad_input; });
}

BOOST_AUTO_TEST_SUITE_END()
