#include "ferry/transfer/report.hpp"

namespace ferry::transfer {

std::string transfer_report::bottleneck() const {
    const stage_report* best = nullptr;
    for (const auto& s : stages)
        if (!best || s.busy > best->busy) best = &s;
    return best && best->busy.count() > 0 ? best->name : std::string();
}

}  // namespace ferry::transfer
