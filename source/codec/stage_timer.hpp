// Adds a call's wall time and output bytes to a stage_stats when the call ends,
// however it ends.
#pragma once

#include <chrono>
#include <string>

#include "ferry/codec/stage_stats.hpp"

namespace ferry::codec::detail {

class stage_timer {
public:
    stage_timer(stage_stats& stats, const std::string& out)
        : stats_(stats), out_(out), out_start_(out.size()), start_(std::chrono::steady_clock::now()) {}
    ~stage_timer() {
        stats_.busy += std::chrono::steady_clock::now() - start_;
        stats_.bytes_out += out_.size() - out_start_;
    }
    stage_timer(const stage_timer&) = delete;
    stage_timer& operator=(const stage_timer&) = delete;

    std::size_t out_start() const { return out_start_; }

private:
    stage_stats& stats_;
    const std::string& out_;
    std::size_t out_start_;
    std::chrono::steady_clock::time_point start_;
};

}  // namespace ferry::codec::detail
