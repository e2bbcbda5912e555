// `ferry bench`: measure closure transfer throughput per codec and direction
// (cli-contract.md; docs/bench.md). Exit 0 when every run succeeded, 1 on a failed
// transfer, 2 on bad usage.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "ferry/bench/options.hpp"

namespace ferry::cli {

struct usage_error {
    std::string message;  // what was wrong and what was expected
};
struct help_request {
    std::string text;
};

// Parses the arguments after "bench" (args[0] is the first option). Pure: no I/O.
std::variant<bench::bench_options, usage_error, help_request> parse_bench_args(const std::vector<std::string>& args);

// argv[0] is "bench".
int bench_command(int argc, char** argv);

}  // namespace ferry::cli
