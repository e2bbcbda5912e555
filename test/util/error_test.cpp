#include <boost/test/unit_test.hpp>

#include "ferry/util/error.hpp"

BOOST_AUTO_TEST_SUITE(error)

BOOST_AUTO_TEST_CASE(codes_compare_and_name_themselves) {
    std::error_code ec = ferry::errc::truncated;
    BOOST_TEST(ec == ferry::errc::truncated);
    BOOST_TEST(ec != ferry::errc::bad_input);
    BOOST_TEST(std::string(ec.category().name()) == "ferry");
    BOOST_TEST(ec.message() == "input truncated");
}

BOOST_AUTO_TEST_CASE(failure_carries_code_and_message) {
    ferry::failure f(ferry::errc::host_key_mismatch, "host b1: key changed");
    BOOST_TEST(f.code() == ferry::errc::host_key_mismatch);
    BOOST_TEST(std::string(f.what()) == "host b1: key changed");
}

BOOST_AUTO_TEST_SUITE_END()
