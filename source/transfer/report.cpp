#include "ferry/transfer/report.hpp"

#include <fmt/format.h>

namespace ferry::transfer {

std::string transfer_report::bottleneck() const {
    const stage_report* best = nullptr;
    for (const auto& s : stages)
        if (!best || s.busy > best->busy) best = &s;
    return best && best->busy.count() > 0 ? best->name : std::string();
}

std::string transfer_report::busy_summary() const {
    std::string out;
    const double wall = static_cast<double>(elapsed.count());
    for (const auto& s : stages)
        out += fmt::format("{}{} {:.0f}%", out.empty() ? "" : ", ", s.name, wall > 0 ? 100.0 * s.busy.count() / wall : 0.0);
    return out;
}

}  // namespace ferry::transfer
