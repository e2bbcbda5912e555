// Helpers of the bench tests: running build/ferry and checking the JSON schema of
// cli-contract.md key by key.
#pragma once

#include <cstdio>
#include <string>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

namespace bench_test {

struct command_result {
    int status = -1;
    std::string output;  // stdout and stderr together
};

inline std::string ferry_binary() { return std::string(FERRY_BINARY_DIR) + "/ferry"; }

// Runs `sh -c command` and returns its exit status and output.
inline command_result run(const std::string& command) {
    command_result r;
    std::FILE* p = ::popen((command + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    int status = ::pclose(p);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

inline void check_number(const nlohmann::json& j, const char* key) {
    BOOST_TEST_CONTEXT("key " << key) {
        BOOST_TEST_REQUIRE(j.contains(key));
        BOOST_TEST(j.at(key).is_number());
        if (j.at(key).is_number()) BOOST_TEST(j.at(key).get<double>() >= 0);
    }
}

inline void check_integer(const nlohmann::json& j, const char* key) {
    BOOST_TEST_CONTEXT("key " << key) {
        BOOST_TEST_REQUIRE(j.contains(key));
        BOOST_TEST(j.at(key).is_number_integer());
        BOOST_TEST(j.at(key).is_number_unsigned());
    }
}

inline void check_string(const nlohmann::json& j, const char* key) {
    BOOST_TEST_CONTEXT("key " << key) {
        BOOST_TEST_REQUIRE(j.contains(key));
        BOOST_TEST(j.at(key).is_string());
    }
}

// Every key and type of the contract's document.
inline void check_schema(const nlohmann::json& doc, bool with_compare) {
    BOOST_TEST_REQUIRE(doc.is_object());
    check_string(doc, "ferry_version");
    check_string(doc, "machine");
    BOOST_TEST_REQUIRE(doc.contains("closure"));
    BOOST_TEST_REQUIRE(doc["closure"].is_object());
    check_integer(doc["closure"], "paths");
    check_integer(doc["closure"], "bytes");
    BOOST_TEST_REQUIRE(doc.contains("results"));
    BOOST_TEST_REQUIRE(doc["results"].is_array());
    for (const auto& r : doc["results"]) {
        check_string(r, "codec");
        check_string(r, "direction");
        BOOST_TEST((r["direction"] == "send" || r["direction"] == "receive"));
        BOOST_TEST_REQUIRE(r.contains("runs"));
        BOOST_TEST_REQUIRE(r["runs"].is_array());
        BOOST_TEST(!r["runs"].empty());
        for (const auto& run : r["runs"]) {
            check_number(run, "seconds");
            check_integer(run, "wire_bytes");
        }
        for (auto key : {"median_seconds", "closure_mb_s", "wire_mb_s", "ratio", "cpu_percent"}) check_number(r, key);
        BOOST_TEST_REQUIRE(r.contains("stages"));
        BOOST_TEST_REQUIRE(r["stages"].is_object());
        BOOST_TEST(!r["stages"].empty());
        for (const auto& [name, st] : r["stages"].items()) {
            BOOST_TEST_CONTEXT("stage " << name) {
                check_integer(st, "bytes");
                check_number(st, "busy_percent");
            }
        }
        check_string(r, "bottleneck");
        BOOST_TEST(r["stages"].contains(r["bottleneck"].get<std::string>()));
    }
    BOOST_TEST(doc.contains("compare") == with_compare);
    if (with_compare) {
        check_string(doc["compare"], "tool");
        BOOST_TEST(doc["compare"]["tool"] == "nix-copy-closure");
        check_number(doc["compare"], "median_seconds");
        check_number(doc["compare"], "ratio");
    }
}

}  // namespace bench_test
