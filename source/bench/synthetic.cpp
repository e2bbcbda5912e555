#include "ferry/bench/synthetic.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "ferry/store/hash.hpp"
#include "ferry/store/nar_dump.hpp"
#include "ferry/util/error.hpp"

namespace ferry::bench {
namespace {

namespace fs = std::filesystem;

// splitmix64: tiny, fast, and the same on every platform (std:: distributions are not).
struct rng {
    std::uint64_t state;
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
    std::uint64_t below(std::uint64_t n) { return n ? next() % n : 0; }
};

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
    rng r{a * 0x100000001b3ull ^ b};
    return r.next();
}

// A fixed vocabulary made of syllables: words look like identifiers and prose.
const std::vector<std::string>& vocabulary() {
    static const std::vector<std::string> words = [] {
        const char* syllables[] = {"lib", "con", "fig", "ure", "set", "get", "buf", "fer", "str", "ing",
                                   "init", "pro", "cess", "ex", "port", "file", "path", "nix", "data",
                                   "ma", "ke", "in", "stall", "test", "out", "put", "read", "write",
                                   "er", "ror", "han", "dle", "the", "of", "and", "to", "for", "is"};
        constexpr std::size_t n = sizeof syllables / sizeof *syllables;
        std::vector<std::string> w;
        rng r{42};
        for (int i = 0; i < 600; ++i) {
            std::string word;
            int parts = 1 + static_cast<int>(r.below(3));
            for (int p = 0; p < parts; ++p) word += syllables[r.below(n)];
            w.push_back(std::move(word));
        }
        return w;
    }();
    return words;
}

void text_content(std::string& out, std::uint64_t bytes, rng& r) {
    const auto& words = vocabulary();
    const std::size_t v = words.size();
    static constexpr std::array<const char*, 8> separators = {" ", " ", " ", "_", "(", ") ", " = ", "; "};
    while (out.size() < bytes) {
        out.append(4 * r.below(4), ' ');
        int count = 3 + static_cast<int>(r.below(10));
        for (int i = 0; i < count; ++i) {
            std::uint64_t x = r.next();
            // Skewed towards the first words (Zipf-like): products of two uniforms.
            std::size_t idx = ((x & 0xffff) % v) * (((x >> 16) & 0xffff) % v) / v;
            out += words[idx];
            out += separators[(x >> 32) & 7];
        }
        if (r.below(16) == 0) out += fmt::format("{}", r.next() % 100000);
        out += '\n';
    }
    out.resize(bytes);
}

void binary_content(std::string& out, std::uint64_t bytes, rng& r) {
    // "Instructions": 256 templates of 2-12 bytes per file, each followed by an
    // operand with little entropy; now and then a run of random bytes (constants,
    // hashes) — about what machine code looks like to an LZ coder.
    std::array<std::string, 256> templates;
    for (auto& t : templates) {
        t.resize(2 + r.below(11));
        for (auto& c : t) c = static_cast<char>(r.next());
    }
    while (out.size() < bytes) {
        std::uint64_t x = r.next();
        out += templates[x & 0xff];
        std::uint64_t operand = r.next();
        switch ((x >> 8) & 15) {
        case 0: out.append(reinterpret_cast<const char*>(&operand), 8); break;
        case 1:
        case 2:
        case 3: out.push_back(static_cast<char>(operand & 0x0f)); out.push_back(0); break;
        case 4:
        case 5: out.append(4, static_cast<char>(operand & 0x3)); break;
        default: out.push_back(static_cast<char>((operand & 0x7) << 3)); break;
        }
    }
    out.resize(bytes);
}

void random_content(std::string& out, std::uint64_t bytes, rng& r) {
    out.resize(bytes);
    std::size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        std::uint64_t x = r.next();
        std::memcpy(out.data() + i, &x, 8);
    }
    for (; i < bytes; ++i) out[i] = static_cast<char>(r.next());
}

void write_file(const fs::path& file, const std::string& content, bool executable) {
    fs::create_directories(file.parent_path());
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw failure(std::error_code(errno, std::system_category()), "synthetic closure: create " + file.string());
    std::size_t done = 0;
    while (done < content.size()) {
        ssize_t n = ::write(fd, content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            auto ec = std::error_code(errno, std::system_category());
            ::close(fd);
            throw failure(ec, "synthetic closure: write " + file.string());
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fchmod(fd, executable ? 0555 : 0444) != 0 || ::close(fd) != 0)
        throw failure(std::error_code(errno, std::system_category()), "synthetic closure: close " + file.string());
}

// Nix's canonical metadata: read-only, mtime 1 (directories last, bottom-up).
void canonicalise(const fs::path& root) {
    std::vector<fs::path> entries;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it)
        entries.push_back(it->path());
    entries.push_back(root);
    std::sort(entries.begin(), entries.end(), [](const fs::path& a, const fs::path& b) {
        return a.string().size() > b.string().size();  // deeper first
    });
    const timespec times[2] = {{1, 0}, {1, 0}};
    for (const auto& e : entries) {
        struct stat st{};
        if (::lstat(e.c_str(), &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) ::chmod(e.c_str(), 0555);
        ::utimensat(AT_FDCWD, e.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }
}

void generate_path(const planned_path& p, const std::vector<planned_path>& all, std::uint64_t seed, std::size_t index) {
    fs::path root = p.path;
    std::error_code ec;
    fs::remove_all(root, ec);  // a leftover of an interrupted run (not registered)
    fs::create_directories(root);
    rng r{mix(seed, index + 1)};
    const auto& words = vocabulary();
    std::string word = words[r.below(words.size())];

    std::string refs;
    for (auto j : p.references) refs += all[j].path + "\n";
    std::uint64_t budget = p.bytes > refs.size() ? p.bytes - refs.size() : 0;
    if (!refs.empty()) write_file(root / "nix-support/references", refs, false);
    if (budget < 4096) {
        std::string content;
        text_content(content, budget, r);
        write_file(root / "share" / (word + ".conf"), content, false);
        canonicalise(root);
        return;
    }
    // Byte shares of the three kinds, varying per path around 35/50/15.
    double text = 0.3 + 0.2 * r.uniform(), random = 0.03 + 0.1 * r.uniform();
    std::uint64_t kind_bytes[3] = {static_cast<std::uint64_t>(budget * text), 0,
                                   static_cast<std::uint64_t>(budget * random)};
    kind_bytes[1] = budget - kind_bytes[0] - kind_bytes[2];
    constexpr std::uint64_t max_file = std::uint64_t{32} << 20;
    std::string content;
    for (int kind = 0; kind < 3; ++kind) {
        std::uint64_t left = kind_bytes[kind];
        int files = static_cast<int>(std::max<std::uint64_t>(1 + r.below(3), (left + max_file - 1) / max_file));
        for (int f = 0; f < files && left > 0; ++f) {
            std::uint64_t size = f + 1 == files ? left : left / (files - f);
            left -= size;
            content.clear();
            rng fr{mix(mix(seed, index + 1), static_cast<std::uint64_t>(kind * 1000 + f))};
            std::string name = words[fr.below(words.size())];
            fs::path file;
            switch (kind) {
            case 0:
                text_content(content, size, fr);
                file = root / "share/doc" / word / fmt::format("{}-{}.txt", name, f);
                break;
            case 1:
                binary_content(content, size, fr);
                file = f == 0 ? root / "bin" / word : root / "lib" / fmt::format("lib{}-{}.so", name, f);
                break;
            default:
                random_content(content, size, fr);
                file = root / "share" / word / fmt::format("{}-{}.dat.gz", name, f);
                break;
            }
            write_file(file, content, kind == 1 && f == 0);
        }
    }
    fs::create_directories(root / "lib");
    fs::create_symlink("../bin/" + word, root / "lib" / (word + ".link"));
    canonicalise(root);
}

}  // namespace

std::uint64_t parse_size(std::string_view text) {
    std::string_view original = text;
    auto bad = [&] {
        return failure(errc::bad_input,
                       fmt::format("size '{}': expected a number with an optional K, M, G or T (10^3 steps) "
                                   "or Ki, Mi, Gi, Ti (2^10 steps) suffix, e.g. 20M or 1G",
                                   original));
    };
    if (!text.empty() && (text.back() == 'B' || text.back() == 'b')) text.remove_suffix(1);
    std::uint64_t unit = 1;
    if (text.size() >= 2 && (text.back() == 'i' || text.back() == 'I')) {
        char c = static_cast<char>(std::toupper(static_cast<unsigned char>(text[text.size() - 2])));
        std::uint64_t u = c == 'K' ? 1ull << 10 : c == 'M' ? 1ull << 20 : c == 'G' ? 1ull << 30 : c == 'T' ? 1ull << 40 : 0;
        if (!u) throw bad();
        unit = u;
        text.remove_suffix(2);
    } else if (!text.empty() && std::isalpha(static_cast<unsigned char>(text.back()))) {
        char c = static_cast<char>(std::toupper(static_cast<unsigned char>(text.back())));
        std::uint64_t u = c == 'K' ? 1000ull : c == 'M' ? 1000000ull : c == 'G' ? 1000000000ull : c == 'T' ? 1000000000000ull : 0;
        if (!u) throw bad();
        unit = u;
        text.remove_suffix(1);
    }
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) throw bad();
    if (n > (std::uint64_t{1} << 50) / unit) throw failure(errc::too_large, fmt::format("size '{}' is too large", original));
    return n * unit;
}

synthetic_spec parse_synthetic(std::string_view text) {
    auto colon = text.find(':');
    if (colon == std::string_view::npos)
        throw failure(errc::bad_input, fmt::format("--synthetic '{}': expected SIZE:COUNT, e.g. 1G:600", text));
    synthetic_spec spec;
    spec.bytes = parse_size(text.substr(0, colon));
    std::string_view count = text.substr(colon + 1);
    auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), spec.count);
    if (count.empty() || ec != std::errc{} || end != count.data() + count.size() || spec.count == 0 ||
        spec.count > 1000000)
        throw failure(errc::bad_input,
                      fmt::format("--synthetic '{}': COUNT must be a number of paths from 1 to 1000000", text));
    if (spec.bytes < spec.count)
        throw failure(errc::bad_input, fmt::format("--synthetic '{}': SIZE must be at least COUNT bytes", text));
    return spec;
}

std::string synthetic_content(int kind, std::uint64_t bytes, std::uint64_t seed) {
    std::string out;
    rng r{seed};
    if (kind == 0) text_content(out, bytes, r);
    else if (kind == 1) binary_content(out, bytes, r);
    else random_content(out, bytes, r);
    return out;
}

std::vector<planned_path> plan_synthetic(const synthetic_spec& spec, std::string_view store_dir) {
    if (spec.count == 0 || spec.bytes < spec.count)
        throw failure(errc::bad_input, "synthetic closure: need COUNT >= 1 and SIZE >= COUNT");
    rng r{mix(mix(spec.seed, spec.bytes), spec.count)};
    // Log-uniform raw sizes between 100 bytes and a quarter of the total, scaled to the total.
    double lo = std::log(100.0), hi = std::log(std::max(200.0, spec.bytes / 4.0));
    std::vector<double> raw(spec.count);
    double sum = 0;
    for (auto& x : raw) sum += (x = std::exp(lo + (hi - lo) * r.uniform()));
    // Real closures have a few giants (compilers, big libraries): with 8 paths or
    // more, three of them take 25%, 12% and 6% of the total; the rest share 57%.
    std::vector<double> share(spec.count);
    for (std::size_t i = 0; i < spec.count; ++i) share[i] = raw[i] / sum;
    if (spec.count >= 8) {
        const double giants[3] = {0.25, 0.12, 0.06};
        double rest = 0;
        std::vector<std::size_t> giant_index;
        for (int g = 0; g < 3; ++g) giant_index.push_back(static_cast<std::size_t>(r.below(spec.count)));
        for (std::size_t i = 0; i < spec.count; ++i)
            if (std::find(giant_index.begin(), giant_index.end(), i) == giant_index.end()) rest += raw[i];
        for (std::size_t i = 0; i < spec.count; ++i) share[i] = raw[i] / rest * 0.57;
        for (int g = 0; g < 3; ++g) share[giant_index[g]] = 0;
        for (int g = 0; g < 3; ++g) share[giant_index[g]] += giants[g];
    }
    std::vector<planned_path> plan(spec.count);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < spec.count; ++i) {
        plan[i].bytes = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(share[i] * spec.bytes));
        total += plan[i].bytes;
    }
    // Exact total: the remainder goes to (or comes from) the largest path.
    auto largest = std::max_element(plan.begin(), plan.end(), [](auto& a, auto& b) { return a.bytes < b.bytes; });
    if (total < spec.bytes) largest->bytes += spec.bytes - total;
    else largest->bytes -= std::min(largest->bytes - 1, total - spec.bytes);

    const auto& words = vocabulary();
    for (std::size_t i = 0; i < spec.count; ++i) {
        std::string seed_text = fmt::format("ferry-synth:{}:{}:{}:{}", spec.seed, spec.bytes, spec.count, i);
        auto digest = store::sha256_of(seed_text);
        std::string hash = store::to_nix_base32(digest.data(), 20);
        plan[i].path = fmt::format("{}/{}-ferry-synth-{:04}-{}", store_dir, hash, i, words[r.below(words.size())]);
        if (i > 0) {
            std::set<std::size_t> refs;
            for (std::uint64_t k = r.below(4); k > 0; --k) refs.insert(r.below(i));
            plan[i].references.assign(refs.begin(), refs.end());
        }
    }
    return plan;
}

std::vector<std::string> add_synthetic(store::store_database& db, const synthetic_spec& spec) {
    auto plan = plan_synthetic(spec, db.config().store_dir);
    std::vector<store::path_info> infos;
    std::vector<std::string> paths;
    for (std::size_t i = 0; i < plan.size(); ++i) {
        paths.push_back(plan[i].path);
        if (db.is_valid(plan[i].path)) continue;
        generate_path(plan[i], plan, spec.seed, i);
        store::nar_source nar(plan[i].path);
        while (!nar.next_chunk().empty()) {
        }
        store::path_info info;
        info.path = plan[i].path;
        info.nar_hash = store::sha256_db_string(nar.digest());
        info.nar_size = nar.bytes_produced();
        for (auto j : plan[i].references) info.references.push_back(plan[j].path);
        std::sort(info.references.begin(), info.references.end(), store::store_path_less{});
        infos.push_back(std::move(info));
    }
    if (!infos.empty()) db.register_valid_paths(infos);
    std::sort(paths.begin(), paths.end());
    return paths;
}

}  // namespace ferry::bench
