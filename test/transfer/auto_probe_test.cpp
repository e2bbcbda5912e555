// The pure parts of codec auto's measuring: which candidates are worth measuring,
// and whether a machine runs on this kernel.
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "ferry/codec/codec_spec.hpp"
#include "ferry/transfer/auto_probe.hpp"

using namespace ferry;

namespace {
std::vector<std::string> names(const std::vector<codec::codec_spec>& specs) {
    std::vector<std::string> out;
    for (const auto& s : specs) out.push_back(codec::to_string(s));
    return out;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(auto_probe)

BOOST_AUTO_TEST_CASE(slow_codecs_are_not_measured_for_links_they_cannot_keep_up_with) {
    using v = std::vector<std::string>;
    // 2 cores: zstd:9 only below 120 MB/s, xz:0 below 50 MB/s, xz:3 below 5 MB/s.
    BOOST_TEST((names(transfer::auto_candidates(440e6, 2)) == v{"zstd:1", "zstd:3", "zstd:6"}));
    BOOST_TEST((names(transfer::auto_candidates(117e6, 2)) == v{"zstd:1", "zstd:3", "zstd:6", "zstd:9"}));
    BOOST_TEST((names(transfer::auto_candidates(11.7e6, 2)) == v{"zstd:1", "zstd:3", "zstd:6", "zstd:9", "xz:0"}));
    BOOST_TEST((names(transfer::auto_candidates(1.1e6, 2)) ==
                v{"zstd:1", "zstd:3", "zstd:6", "zstd:9", "xz:0", "xz:3"}));
    // 64 cores keep every codec worth measuring on a 1 Gbit/s link.
    BOOST_TEST(transfer::auto_candidates(117e6, 64).size() == 5u);
}

BOOST_AUTO_TEST_CASE(same_kernel_means_the_same_boot_id) {
    std::string local;
    std::getline(std::ifstream("/proc/sys/kernel/random/boot_id"), local);
    BOOST_TEST_REQUIRE(!local.empty());
    BOOST_TEST(transfer::same_kernel("/usr/bin/zstd\nboot " + local + "\n"));
    BOOST_TEST(!transfer::same_kernel("/usr/bin/zstd\nboot 00000000-0000-0000-0000-000000000000\n"));
    BOOST_TEST(!transfer::same_kernel("boot \n"));  // a machine without /proc (macOS)
    BOOST_TEST(!transfer::same_kernel(""));
}

BOOST_AUTO_TEST_SUITE_END()
