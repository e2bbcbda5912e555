#include "ferry/transfer/send_plan.hpp"

#include <algorithm>
#include <map>
#include <string>

namespace ferry::transfer {

namespace {

// Waves in export order: wave d holds the paths whose deepest in-set reference is in wave d-1.
std::vector<std::vector<store::path_info>> waves_of(std::vector<store::path_info> infos) {
    std::map<std::string, std::size_t> depth;
    std::size_t max_depth = 0;
    for (const auto& info : infos) {
        std::size_t d = 0;
        for (const auto& r : info.references)
            if (auto it = depth.find(r); it != depth.end() && r != info.path) d = std::max(d, it->second + 1);
        depth[info.path] = d;
        max_depth = std::max(max_depth, d);
    }
    std::vector<std::vector<store::path_info>> waves(infos.empty() ? 0 : max_depth + 1);
    for (auto& info : infos) {
        const std::size_t d = depth[info.path];
        waves[d].push_back(std::move(info));
    }
    return waves;
}

bool goes_parallel(const std::vector<store::path_info>& wave, const send_plan_options& o) {
    std::uint64_t bytes = 0;
    for (const auto& i : wave) bytes += i.nar_size;
    const bool big = bytes >= o.parallel_threshold || wave.size() >= o.parallel_min_paths;
    return big && o.streams >= 2 && wave.size() >= 2;
}

send_round spread(std::vector<store::path_info> wave, const send_plan_options& o) {
    std::stable_sort(wave.begin(), wave.end(), [](const auto& a, const auto& b) { return a.nar_size > b.nar_size; });
    send_round groups(std::min<std::size_t>(o.streams, wave.size()));
    std::vector<std::uint64_t> load(groups.size(), 0);
    for (auto& i : wave) {
        auto k = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
        load[k] += i.nar_size + o.per_path_weight;
        groups[k].push_back(std::move(i));
    }
    return groups;
}

}  // namespace

std::vector<send_round> plan_send_rounds(std::vector<store::path_info> infos, const send_plan_options& options) {
    std::vector<send_round> rounds;
    std::vector<store::path_info> batch;  // consecutive small waves: one ordered stream
    auto flush_batch = [&] {
        if (batch.empty()) return;
        rounds.push_back(send_round(1));
        rounds.back()[0] = std::move(batch);
        batch.clear();
    };
    for (auto& wave : waves_of(std::move(infos))) {
        if (!goes_parallel(wave, options)) {
            for (auto& i : wave) batch.push_back(std::move(i));
            continue;
        }
        flush_batch();
        rounds.push_back(spread(std::move(wave), options));
    }
    flush_batch();
    return rounds;
}

}  // namespace ferry::transfer
