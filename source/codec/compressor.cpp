#include "ferry/codec/compressor.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "ferry/util/error.hpp"
#include "stage_timer.hpp"

namespace ferry::codec {

compressor::compressor(compression_plan plan, const compression_options& options)
    : plan_(std::move(plan)),
      memory_budget_(options.memory_budget),
      output_limit_(std::max<std::size_t>(options.output_limit, 1)) {}

bool compressor::end_frame_for_level_change(std::string& out) {
    if (!level_change_pending_) return true;
    if (frame_open_) {
        if (!do_drain(drain_mode::end, out, output_limit_)) return false;
        frame_open_ = false;
        frame_written_ = true;
    }
    do_apply(pending_plan_);
    plan_ = pending_plan_;
    level_change_pending_ = false;
    return true;
}

std::size_t compressor::feed(std::span<const std::byte> in, std::string& out) {
    if (draining_ != drain_state::idle)
        throw failure(errc::unsupported,
                      fmt::format("{} compressor: feed() while flush()/finish() is incomplete; call "
                                  "it until it returns true",
                                  name(plan_.spec.kind)));
    detail::stage_timer timer(stats_, out);
    if (!end_frame_for_level_change(out)) return 0;
    if (in.empty()) return 0;
    auto already = out.size() - timer.out_start();
    if (already >= output_limit_) return 0;
    auto consumed = do_compress(in, out, output_limit_ - already);
    if (consumed > 0) frame_open_ = true;
    stats_.bytes_in += consumed;
    return consumed;
}

bool compressor::flush(std::string& out) {
    if (draining_ == drain_state::ending)
        throw failure(errc::unsupported,
                      fmt::format("{} compressor: flush() while finish() is incomplete; call finish() "
                                  "until it returns true",
                                  name(plan_.spec.kind)));
    detail::stage_timer timer(stats_, out);
    return flush_step(out, timer.out_start());
}

bool compressor::flush_step(std::string& out, std::size_t out_start) {
    draining_ = drain_state::flushing;
    // A pending level change ends the frame: that flushes too.
    if (!end_frame_for_level_change(out)) return false;
    auto already = out.size() - out_start;
    if (frame_open_ && !(already < output_limit_ && do_drain(drain_mode::flush, out, output_limit_ - already)))
        return false;
    draining_ = drain_state::idle;
    return true;
}

bool compressor::finish(std::string& out) {
    detail::stage_timer timer(stats_, out);
    // liblzma wants a started flush completed with the same action before LZMA_FINISH.
    if (draining_ == drain_state::flushing && !flush_step(out, timer.out_start())) return false;
    draining_ = drain_state::ending;
    auto already = out.size() - timer.out_start();
    // A frame ended by a level change with nothing fed since: nothing to end twice.
    // With no input at all, still write one (empty) frame: receivers reject nothing.
    if (frame_open_ || !frame_written_) {
        if (already >= output_limit_ || !do_drain(drain_mode::end, out, output_limit_ - already))
            return false;
        frame_open_ = false;
        frame_written_ = true;
    }
    end_frame_for_level_change(out);  // no frame open: only applies the new plan
    draining_ = drain_state::idle;
    return true;
}

void compressor::set_level(int level) {
    check_level(plan_.spec.kind, level);
    auto next = plan_compression({plan_.spec.kind, level}, plan_.requested_threads, memory_budget_);
    pending_plan_ = std::move(next);
    level_change_pending_ = true;
}

}  // namespace ferry::codec
