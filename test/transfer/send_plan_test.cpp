// The send planner (pure): waves, merging of small waves, spreading of big ones.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "ferry/transfer/send_plan.hpp"

using ferry::store::path_info;
using namespace ferry::transfer;

namespace {

path_info item(std::string name, std::uint64_t size, std::vector<std::string> refs = {}) {
    path_info i;
    i.path = "/nix/store/" + name;
    i.nar_size = size;
    for (auto& r : refs) i.references.push_back("/nix/store/" + r);
    return i;
}

std::vector<std::string> names(const std::vector<path_info>& group) {
    std::vector<std::string> out;
    for (const auto& i : group) out.push_back(i.path.substr(11));
    return out;
}

// Every path of the plan, each once; and no group holds a path whose in-set
// reference is in the same round but another group, or in a later round.
void check_complete_and_ordered(const std::vector<path_info>& in, const std::vector<send_round>& rounds) {
    std::set<std::string> all, seen_before;
    for (const auto& i : in) all.insert(i.path);
    std::size_t count = 0;
    for (const auto& round : rounds) {
        std::set<std::string> this_round;
        for (const auto& g : round)
            for (const auto& i : g) this_round.insert(i.path);
        for (const auto& g : round) {
            std::set<std::string> earlier_in_group;
            for (const auto& i : g) {
                for (const auto& r : i.references)
                    if (all.count(r) && r != i.path)
                        BOOST_TEST((seen_before.count(r) || earlier_in_group.count(r)),
                                   i.path << " goes out before its reference " << r);
                earlier_in_group.insert(i.path);
                ++count;
            }
        }
        seen_before.insert(this_round.begin(), this_round.end());
    }
    BOOST_TEST(count == in.size());
    BOOST_TEST(seen_before == all);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(send_plan)

BOOST_AUTO_TEST_CASE(a_chain_is_one_ordered_stream) {
    std::vector<path_info> in{item("a", 100 << 20), item("b", 100 << 20, {"a"}), item("c", 1, {"b", "a"})};
    auto rounds = plan_send_rounds(in, {});
    BOOST_TEST_REQUIRE(rounds.size() == 1u);  // every wave has one path: never parallel
    BOOST_TEST_REQUIRE(rounds[0].size() == 1u);
    BOOST_TEST((names(rounds[0][0]) == std::vector<std::string>{"a", "b", "c"}));
    check_complete_and_ordered(in, rounds);
}

BOOST_AUTO_TEST_CASE(many_small_independent_paths_go_parallel_balanced) {
    std::vector<path_info> in;
    for (int i = 0; i < 300; ++i) in.push_back(item(fmt::format("p{:03}", i), 1000));
    auto rounds = plan_send_rounds(in, {});  // 300 >= parallel_min_paths (256)
    BOOST_TEST_REQUIRE(rounds.size() == 1u);
    BOOST_TEST_REQUIRE(rounds[0].size() == 2u);
    BOOST_TEST(rounds[0][0].size() == 150u);
    BOOST_TEST(rounds[0][1].size() == 150u);
    check_complete_and_ordered(in, rounds);
    // 255 small paths (under both thresholds): one stream.
    in.resize(255);
    BOOST_TEST(plan_send_rounds(in, {}).at(0).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_big_wave_is_split_largest_first_onto_the_least_loaded) {
    // Wave 0: a big file and three small ones (>= 32 MiB in all); wave 1: x refers to all of them.
    std::vector<path_info> in{item("s1", 1 << 20), item("big", 64 << 20), item("s2", 2 << 20),
                              item("s3", 3 << 20), item("x", 10, {"s1", "big", "s2", "s3"})};
    auto rounds = plan_send_rounds(in, {});
    BOOST_TEST_REQUIRE(rounds.size() == 2u);
    BOOST_TEST_REQUIRE(rounds[0].size() == 2u);
    BOOST_TEST((names(rounds[0][0]) == std::vector<std::string>{"big"}));
    BOOST_TEST((names(rounds[0][1]) == std::vector<std::string>{"s3", "s2", "s1"}));
    BOOST_TEST((names(rounds[1].at(0)) == std::vector<std::string>{"x"}));  // a small wave: one stream
    check_complete_and_ordered(in, rounds);
}

BOOST_AUTO_TEST_CASE(small_waves_around_a_big_one_are_merged_in_order) {
    std::vector<path_info> in{item("a", 10), item("b", 10, {"a"}),                           // waves 0, 1
                              item("c", 40 << 20, {"b"}), item("d", 40 << 20, {"b"}),       // wave 2: big
                              item("e", 10, {"c", "d"}), item("f", 10, {"e"})};             // waves 3, 4
    auto rounds = plan_send_rounds(in, {});
    BOOST_TEST_REQUIRE(rounds.size() == 3u);
    BOOST_TEST((names(rounds[0].at(0)) == std::vector<std::string>{"a", "b"}));
    BOOST_TEST(rounds[1].size() == 2u);
    BOOST_TEST((names(rounds[2].at(0)) == std::vector<std::string>{"e", "f"}));
    check_complete_and_ordered(in, rounds);
}

BOOST_AUTO_TEST_CASE(one_stream_means_export_order) {
    std::vector<path_info> in{item("c", 40 << 20), item("d", 40 << 20), item("e", 10, {"c", "d"})};
    send_plan_options one;
    one.streams = 1;
    auto rounds = plan_send_rounds(in, one);
    BOOST_TEST_REQUIRE(rounds.size() == 1u);
    BOOST_TEST((names(rounds[0].at(0)) == std::vector<std::string>{"c", "d", "e"}));
    BOOST_TEST(plan_send_rounds({}, {}).empty());
}

BOOST_AUTO_TEST_SUITE_END()
