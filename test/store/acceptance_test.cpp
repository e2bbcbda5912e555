// Store-layer acceptance checks against real Nix 2.8 on a large closure, plus the
// importer's rejection rules and a deterministic NAR mutation run.
//
// big_closure is ONE fixture shared by the suite (built on first use, about 230
// paths with every kind of NAR entry and a 101 MiB file): the source store is
// exported by ferry and by `nix-store --export`, its registration data is queried
// in batches, then it is deleted so fresh stores can take the same store directory.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "ferry/protocol/wire.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/exporter.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/importer.hpp"
#include "ferry/store/nar_dump.hpp"
#include "ferry/util/error.hpp"
#include "store/nix_fixture.hpp"

namespace store = ferry::store;
namespace wire = ferry::protocol::wire;
namespace fs = std::filesystem;
using ferry_test::run;
using ferry_test::trim;

namespace {

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (auto& s : v) out += s + " ";
    return out;
}

std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);)
        if (!l.empty()) out.push_back(l);
    return out;
}

// Every entry below `dir` with its type, mode, size and (symlinks) target: what
// "the store directory is unchanged" compares.
std::string tree_listing(const std::string& dir) {
    std::vector<std::string> rows;
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
        struct stat st {};
        ::lstat(it->path().c_str(), &st);
        std::string row = it->path().string() + " " + std::to_string(st.st_mode) + " " +
                          (S_ISREG(st.st_mode) ? std::to_string(st.st_size) : "");
        if (S_ISLNK(st.st_mode)) row += " -> " + fs::read_symlink(it->path()).string();
        rows.push_back(row);
    }
    std::sort(rows.begin(), rows.end());
    return join(rows);
}

// Paths whose NAR must match: one store path per tested shape.
std::string hash_part(unsigned i) {
    std::string h(32, '0');
    h[0] = 'z', h[1] = 'z';
    for (int k = 31; k >= 26; --k, i /= 32) h[static_cast<std::size_t>(k)] = store::nix_base32_alphabet[i % 32];
    return h;
}

// Moves a fresh `nix-store --init`ed store to `root` (which must not exist), so
// its store directory is the same string the bundles name.
struct fresh_store_at : ferry_test::private_nix_store {
    explicit fresh_store_at(const std::string& at) {
        fs::rename(root, at);
        root = at, store_dir = at + "/store", state_dir = at + "/var";
        ::setenv("NIX_STORE_DIR", store_dir.c_str(), 1);
        ::setenv("NIX_STATE_DIR", state_dir.c_str(), 1);
        ::setenv("NIX_LOG_DIR", (root + "/log").c_str(), 1);
        ::setenv("NIX_CONF_DIR", (root + "/etc").c_str(), 1);
    }
};

struct big_closure {
    std::string root;
    std::vector<std::string> paths, drvs;
    std::string work = ferry_test::make_temp_dir("big");
    std::string nix_bundle = work + "/nix.bundle";      // `nix-store --export`, as it streamed out
    std::string ferry_bundle = work + "/ferry.bundle";  // ferry's bundle_source output
    std::string nix_sha, ferry_sha;                     // base-16 SHA-256 of the two streams
    std::uint64_t ferry_bytes = 0;
    int nar_mismatches = 0;
    std::uint64_t biggest_nar = 0;
    std::size_t regular = 0, executable = 0, empty = 0, symlinks = 0, directories = 0;
    // Batch queries of the source store.
    std::string dump_db, derivers, references, outputs, derivation_outputs;
    double export_seconds = 0;

    static const big_closure& get() {
        static big_closure c;
        return c;
    }

    static std::string derivation_outputs_rows(const std::string& state_dir) {
        return run("sqlite3 " + state_dir + "/db/db.sqlite 'select v.path, d.id, d.path from DerivationOutputs d "
                   "join ValidPaths v on v.id = d.drv order by 1, 2'");
    }

private:
    big_closure() {
        auto src = std::make_unique<ferry_test::private_nix_store>();
        root = src->root;
        // Real derivations (inputDrvs, multiple outputs), to have .drv files and derivers.
        std::ofstream(work + "/expr.nix") << R"NIX(
let dep = derivation { name = "dep"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
in derivation { name = "top"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = [ "out" "dev" ];
                args = [ "-c" "echo ${dep} > $out" ]; }
)NIX";
        auto top = trim(run("nix-instantiate " + work + "/expr.nix 2>/dev/null"));
        drvs = lines(run("nix-store -qR " + top));
        BOOST_TEST_REQUIRE(drvs.size() == 2u);
        paths = drvs;

        // 228 generated paths written straight into the store, then registered with
        // `nix-store --register-validity` (which canonicalises and hashes them):
        // references to earlier paths and to themselves, derivers for two thirds.
        std::mt19937 rng(20261123);
        std::string block(1 << 20, '\0');
        for (auto& c : block) c = static_cast<char>(rng());
        std::string registration;
        const unsigned n = 228;
        for (unsigned i = 0; i < n; ++i) {
            auto p = src->store_dir + "/" + hash_part(i) + "-item-" + std::to_string(i);
            switch (i % 6) {
            case 0:  // a tree of every entry kind
                fs::create_directories(p + "/bin");
                fs::create_directories(p + "/share/doc/empty-dir");
                ferry_test::write_file(p + "/bin/tool", "#!/bin/sh\necho " + std::to_string(i) + "\n", true);
                ferry_test::write_file(p + "/share/doc/README", std::string(i * 37 % 5000, 'r'));
                ferry_test::write_file(p + "/share/empty", "");
                ferry_test::write_file(p + "/share/Upper.dat", block.substr(i * 1000, 4096 + i));
                fs::create_symlink("../share/doc/README", p + "/bin/readme");
                fs::create_symlink(paths.back(), p + "/dep");
                ++directories, ++executable, ++empty, regular += 2, symlinks += 2;
                break;
            case 1: ferry_test::write_file(p, block.substr(i * 997, 1 + i * 13)); ++regular; break;
            case 2:
                ferry_test::write_file(p, "#!/bin/sh\nexit " + std::to_string(i % 7) + "\n", true);
                ++executable;
                break;
            case 3: fs::create_symlink(paths.back(), p); ++symlinks; break;
            case 4: ferry_test::write_file(p, ""); ++empty; break;
            case 5:
                fs::create_directories(p + "/a/b/c");
                ferry_test::write_file(p + "/a/b/c/deep", std::to_string(i));
                ++directories, ++regular;
                break;
            }
            if (i == 7) {  // the big one: 101 blocks of 1 MiB, each made distinct by its first bytes
                std::ofstream big(p, std::ios::binary | std::ios::trunc);
                for (int b = 0; b < 101; ++b) {
                    std::snprintf(block.data(), 16, "block %08d", b);
                    big.write(block.data(), static_cast<std::streamsize>(block.size()));
                }
            }
            std::vector<std::string> refs;
            if (i > 0) refs.push_back(paths.back());
            if (i > 2) refs.push_back(paths[paths.size() / 2]);
            if (i % 5 == 0) refs.push_back(p);
            if (i % 11 == 0) refs.push_back(drvs[0]);
            std::string deriver = i % 3 == 0 ? top : i % 3 == 1 ? drvs[0] : "";
            registration += p + "\n" + deriver + "\n" + std::to_string(refs.size()) + "\n";
            for (auto& r : refs) registration += r + "\n";
            paths.push_back(p);
        }
        std::ofstream(work + "/registration") << registration;
        run("nix-store --register-validity < " + work + "/registration");
        std::sort(paths.begin(), paths.end());

        // ferry's export, hashed as it streams (also kept for the nix-store --import case).
        store::store_database db(store::store_config::from_environment());
        {
            auto t0 = std::chrono::steady_clock::now();
            store::bundle_source bundle(db, paths);
            store::sha256 h;
            std::ofstream out(ferry_bundle, std::ios::binary);
            for (auto c = bundle.next_chunk(); !c.empty(); c = bundle.next_chunk()) {
                h.update(c);
                out.write(c.data(), static_cast<std::streamsize>(c.size()));
                ferry_bytes += c.size();
            }
            ferry_sha = store::to_base16(h.finish());
            export_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        nix_sha = run("nix-store --export " + join(paths) + " | tee " + nix_bundle + " | sha256sum").substr(0, 64);
        // ferry's NAR hash and size of every path against the database.
        for (auto& p : paths) {
            store::nar_source nar(p);
            while (!nar.next_chunk().empty()) {
            }
            auto info = db.query_path_info(p);
            biggest_nar = std::max(biggest_nar, nar.bytes_produced());
            if (!info || info->nar_hash != store::sha256_db_string(nar.digest()) ||
                info->nar_size != nar.bytes_produced()) {
                ++nar_mismatches;
                BOOST_TEST_MESSAGE("NAR mismatch: " << p);
            }
        }
        dump_db = run("nix-store --dump-db " + join(paths));
        derivers = run("nix-store -q --deriver " + join(paths));
        references = run("nix-store -q --references " + join(paths));
        outputs = run("nix-store -q --outputs " + join(drvs));
        derivation_outputs = derivation_outputs_rows(src->state_dir);
        src.reset();  // frees `root` for the fresh stores
    }
    ~big_closure() { store::remove_tree(work); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(big_closure_against_nix)

BOOST_AUTO_TEST_CASE(ferry_export_is_nix_export_and_nar_info_matches) {
    auto& c = big_closure::get();
    BOOST_TEST_MESSAGE("ferry export of " << c.paths.size() << " paths, " << c.ferry_bytes << " bytes: "
                                          << c.export_seconds << " s");
    BOOST_TEST(c.paths.size() >= 200u);
    BOOST_TEST(c.biggest_nar > 100u * 1000 * 1000);
    BOOST_TEST((c.regular > 0 && c.executable > 0 && c.empty > 0 && c.symlinks > 0 && c.directories > 0));
    BOOST_TEST(c.nix_sha.size() == 64u);
    BOOST_TEST(c.ferry_sha == c.nix_sha);
    BOOST_TEST(c.ferry_bytes == fs::file_size(c.nix_bundle));
    BOOST_TEST(c.nar_mismatches == 0);
    // The registration really carries references and derivers to compare later.
    BOOST_TEST(lines(c.derivers).size() == c.paths.size());
    BOOST_TEST(c.derivers.find("-top.drv") != std::string::npos);
    BOOST_TEST(lines(c.references).size() > 100u);
}

BOOST_AUTO_TEST_CASE(nix_store_import_accepts_ferry_bundle) {
    auto& c = big_closure::get();
    fresh_store_at s(c.root);
    auto imported = lines(run("nix-store --import < " + c.ferry_bundle));
    BOOST_TEST(imported.size() == c.paths.size());
    run("nix-store --verify --check-contents 2>&1");
    BOOST_TEST(run("nix-store --dump-db " + join(c.paths)) == c.dump_db);
}

BOOST_AUTO_TEST_CASE(ferry_import_of_nix_bundle_matches_the_source) {
    auto& c = big_closure::get();
    fresh_store_at s(c.root);
    auto config = store::store_config::from_environment();
    {
        store::store_database db(config);
        store::temp_roots roots(config);
        store::bundle_importer importer(db, roots);
        std::ifstream in(c.nix_bundle, std::ios::binary);
        std::vector<char> buf(1 << 20);
        while (in) {
            in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
            importer.feed(std::string_view(buf.data(), static_cast<std::size_t>(in.gcount())));
        }
        BOOST_TEST(importer.finish().size() == c.paths.size());
    }
    auto verify = run("nix-store --verify --check-contents 2>&1");
    BOOST_TEST(verify.find("modified") == std::string::npos, verify);
    // One batch query each: references (union), derivers (one line per path), and
    // per-path references + hash + size (--dump-db).
    BOOST_TEST(run("nix-store -q --references " + join(c.paths)) == c.references);
    BOOST_TEST(run("nix-store -q --deriver " + join(c.paths)) == c.derivers);
    BOOST_TEST(run("nix-store --dump-db " + join(c.paths)) == c.dump_db);
    // .drv outputs: what Nix reads from the drv, and the DerivationOutputs rows ferry wrote.
    BOOST_TEST(run("nix-store -q --outputs " + join(c.drvs)) == c.outputs);
    BOOST_TEST(lines(c.outputs).size() == 3u);
    BOOST_TEST(big_closure::derivation_outputs_rows(s.state_dir) == c.derivation_outputs);
    BOOST_TEST(lines(c.derivation_outputs).size() == 3u);
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

// NAR and bundle builders for hand-made (malformed) inputs.
struct nar_writer {
    std::string out;
    nar_writer& s(std::string_view t) { return wire::append_string(out, t), *this; }
    nar_writer& file(std::string_view contents) {
        return s("(").s("type").s("regular").s("contents").s(contents).s(")");
    }
    nar_writer& entry(std::string_view name, std::string_view contents) {
        return s("entry").s("(").s("name").s(name).s("node").file(contents).s(")");
    }
};

std::string dir_nar(const std::vector<std::string>& names, std::string_view magic = "nix-archive-1") {
    nar_writer w;
    w.s(magic).s("(").s("type").s("directory");
    for (auto& n : names) w.entry(n, "x");
    w.s(")");
    return w.out;
}

std::string bundle_of(const std::string& nar, const std::string& path, const std::vector<std::string>& refs = {},
                      std::uint64_t export_magic = 0x4558494e) {
    std::string b;
    wire::append_u64(b, 1);
    b += nar;
    wire::append_u64(b, export_magic);
    wire::append_string(b, path);
    wire::append_strings(b, refs);
    wire::append_string(b, "");
    wire::append_u64(b, 0);
    wire::append_u64(b, 0);
    return b;
}

// A private store with one valid path; each case imports a bad bundle and checks
// that it is rejected and that the store directory and database are unchanged.
struct rejection_store : ferry_test::private_nix_store {
    std::string work = ferry_test::make_temp_dir("rej");
    std::string valid, fresh_path;
    store::store_config config = store::store_config::from_environment();

    rejection_store() {
        ferry_test::make_sample_tree(work + "/t");
        valid = trim(run("nix-store --add " + work + "/t"));
        fresh_path = store_dir + "/" + hash_part(42) + "-new";
    }
    ~rejection_store() { store::remove_tree(work); }

    std::string snapshot() const {
        return tree_listing(store_dir) + "\n" + run("sqlite3 " + config.database_path + " .dump");
    }

    void expect_rejected(const std::string& bundle, const std::string& message_part) {
        auto before = snapshot();
        {
            store::store_database db(config);
            store::temp_roots roots(config);
            try {
                store::bundle_importer importer(db, roots);
                importer.feed(bundle);
                importer.finish();
                BOOST_ERROR("bundle accepted");
            } catch (const ferry::failure& f) {
                BOOST_TEST(std::string(f.what()).find(message_part) != std::string::npos, f.what());
            }
        }
        BOOST_TEST(snapshot() == before);
        BOOST_TEST(!fs::exists(fresh_path));
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(bundle_rejections)

BOOST_AUTO_TEST_CASE(good_bundle_is_accepted) {  // the baseline the other cases corrupt
    rejection_store s;
    store::store_database db(s.config);
    store::temp_roots roots(s.config);
    store::bundle_importer importer(db, roots);
    importer.feed(bundle_of(dir_nar({"A", "a", "b.c"}), s.fresh_path, {s.valid}));
    importer.finish();
    BOOST_TEST(db.is_valid(s.fresh_path));
    run("nix-store --verify-path " + s.fresh_path);
}

BOOST_AUTO_TEST_CASE(bad_nar_magic) {
    rejection_store s;
    s.expect_rejected(bundle_of(dir_nar({"a"}, "nix-archive-2"), s.fresh_path),
                      "bad magic \"nix-archive-2\" (not a NAR) at offset 8");
}
BOOST_AUTO_TEST_CASE(unsorted_entries) {
    rejection_store s;
    s.expect_rejected(bundle_of(dir_nar({"b", "a"}), s.fresh_path), "entry \"a\" is not sorted after \"b\" at offset");
}
BOOST_AUTO_TEST_CASE(duplicate_entry) {
    rejection_store s;
    s.expect_rejected(bundle_of(dir_nar({"a", "a"}), s.fresh_path), "entry \"a\" duplicates \"a\" at offset");
}
BOOST_AUTO_TEST_CASE(name_with_slash) {
    rejection_store s;
    s.expect_rejected(bundle_of(dir_nar({"a/b"}), s.fresh_path), "invalid entry name \"a/b\" at offset");
}
BOOST_AUTO_TEST_CASE(name_dot) {
    rejection_store s;
    s.expect_rejected(bundle_of(dir_nar({"."}), s.fresh_path), "invalid entry name \".\" at offset");
}
BOOST_AUTO_TEST_CASE(name_dot_dot) {
    rejection_store s;
    s.expect_rejected(bundle_of(dir_nar({".."}), s.fresh_path), "invalid entry name \"..\" at offset");
}
BOOST_AUTO_TEST_CASE(name_with_nul) {
    rejection_store s;
    s.expect_rejected(bundle_of(dir_nar({std::string("a\0b", 3)}), s.fresh_path),
                      "invalid entry name \"a\\x00b\" at offset");
}
BOOST_AUTO_TEST_CASE(truncation) {
    rejection_store s;
    auto good = bundle_of(dir_nar({"a", "b"}), s.fresh_path);
    // Inside the NAR, inside the trailer, inside the signature flag.
    // (Without only the end marker the item is complete and stays registered, as with
    // Nix's import: not a rejection of that item.)
    for (std::size_t cut : {good.size() / 3, good.size() - 30, good.size() - 12})
        s.expect_rejected(good.substr(0, cut), "before the end marker");
}
BOOST_AUTO_TEST_CASE(trailing_garbage) {
    rejection_store s;
    // After an item that is valid already (skipped), so nothing may change.
    auto b = run("nix-store --export " + s.valid);
    s.expect_rejected(b + std::string(8, '\x01'), "trailing data at offset " + std::to_string(b.size()));
}
BOOST_AUTO_TEST_CASE(bad_export_magic) {
    rejection_store s;
    s.expect_rejected(bundle_of(dir_nar({"a"}), s.fresh_path, {}, 0x4558494f), "expected export magic 0x4558494e");
}
BOOST_AUTO_TEST_CASE(missing_reference) {
    rejection_store s;
    s.expect_rejected(bundle_of(dir_nar({"a"}), s.fresh_path, {s.store_dir + "/" + hash_part(43) + "-gone"}),
                      hash_part(43));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(nar_mutations)

BOOST_AUTO_TEST_CASE(ten_thousand_mutations_stay_inside_the_target) {
    // In tmpfs when there is one: on this ext4, creating and deleting ~60,000 inodes
    // costs tens of seconds of kernel inode-allocation time, which tests nothing of ours.
    std::string parent = "/dev/shm/ferry-mut-XXXXXX";
    if (!fs::is_directory("/dev/shm") || !::mkdtemp(parent.data())) parent = ferry_test::make_temp_dir("mut");
    auto tree = parent + "-src";
    fs::create_directories(tree + "/sub/empty");
    ferry_test::write_file(tree + "/a", "hello\n");
    ferry_test::write_file(tree + "/e", "");
    ferry_test::write_file(tree + "/run", "#!/bin/sh\n", true);
    ferry_test::write_file(tree + "/sub/f", "0123456789abcdef0123");
    fs::create_symlink("../a", tree + "/sub/up");
    fs::create_symlink("/etc/passwd", tree + "/abs");
    std::string nar;
    {
        store::nar_source src(tree);
        for (auto c = src.next_chunk(); !c.empty(); c = src.next_chunk()) nar += c;
    }
    store::remove_tree(tree);
    ferry_test::write_file(parent + "/sentinel", "untouched");
    const auto listing = tree_listing(parent);
    const auto target = parent + "/t";

    std::mt19937 rng(12345);  // raw outputs only: the same sequence on every platform
    int accepted = 0, rejected = 0, escaped = 0, leftovers = 0;
    for (int i = 0; i < 10000; ++i) {
        auto m = nar;
        switch (rng() % 3) {
        case 0:  // flip 1..4 bytes
            for (auto k = rng() % 4 + 1; k > 0; --k) m[rng() % m.size()] ^= static_cast<char>(rng() % 255 + 1);
            break;
        case 1: m.resize(rng() % m.size()); break;
        case 2: {
            std::string ins(rng() % 16 + 1, '\0');
            for (auto& ch : ins) ch = static_cast<char>(rng());
            m.insert(rng() % (m.size() + 1), ins);
            break;
        }
        }
        std::size_t piece = rng() % 200 + 1;
        bool ok = false;
        try {
            store::nar_restore_stream r(target);
            for (std::size_t pos = 0; pos < m.size(); pos += piece) r.feed(std::string_view(m).substr(pos, piece));
            r.finish();
            ok = true;
        } catch (const ferry::failure&) {
        }
        ok ? ++accepted : ++rejected;
        if (ok) {
            store::remove_tree(target);
        } else if (fs::exists(fs::symlink_status(target))) {
            ++leftovers;
            store::remove_tree(target);
        }
        if (tree_listing(parent) != listing) {
            ++escaped;
            BOOST_TEST_MESSAGE("mutation " << i << " changed " << parent);
            break;
        }
    }
    BOOST_TEST_MESSAGE("mutations of a " << nar.size() << "-byte NAR: " << accepted << " accepted, " << rejected
                                          << " rejected");
    BOOST_TEST(escaped == 0);
    BOOST_TEST(leftovers == 0);
    BOOST_TEST(rejected > 5000);
    BOOST_TEST(accepted > 0);
    std::ifstream sentinel(parent + "/sentinel");
    BOOST_TEST(std::string(std::istreambuf_iterator<char>(sentinel), {}) == "untouched");
    store::remove_tree(parent);
}

BOOST_AUTO_TEST_SUITE_END()
