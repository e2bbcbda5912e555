#include <boost/test/unit_test.hpp>

#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ferry/protocol/export_bundle.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/store/database.hpp"
#include "ferry/store/derivation.hpp"
#include "ferry/store/exporter.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/importer.hpp"
#include "ferry/store/store_path.hpp"
#include "ferry/util/error.hpp"
#include "store/nix_fixture.hpp"

namespace store = ferry::store;
namespace wire = ferry::protocol::wire;
using ferry_test::run;
using ferry_test::trim;

namespace {

std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);)
        if (!l.empty()) out.push_back(l);
    return out;
}

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (auto& s : v) out += s + " ";
    return out;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::set<std::string> store_entries(const std::string& dir) {
    std::set<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(dir)) out.insert(e.path().filename().string());
    return out;
}

// A private store holding sources, toFile texts with references between them, and
// two derivations (one depending on the other), so the graph has several levels.
struct populated_store : ferry_test::private_nix_store {
    std::string work = ferry_test::make_temp_dir("work");
    std::string top_drv;
    std::vector<std::string> all;  // closure of top_drv

    populated_store() {
        ferry_test::make_sample_tree(work + "/t");
        std::string expr = R"NIX(
let
  src = builtins.path { path = "WORKDIR/t"; name = "t"; };
  a = builtins.toFile "a" "hello";
  b = builtins.toFile "b" "uses ${a}";
  c = builtins.toFile "c" "uses ${a} and ${b}";
  dep = derivation { name = "dep"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
  fod = derivation { name = "fod"; system = "x86_64-linux"; builder = "/bin/sh"; outputHashMode = "recursive";
                     outputHashAlgo = "sha256"; outputHash = "0000000000000000000000000000000000000000000000000000"; };
  top = derivation {
    name = "top"; system = "x86_64-linux"; builder = "/bin/sh";
    args = [ "-c" "echo ${dep} ${fod} ${c} ${src} \"q\" \\ \t > $out" ];
    outputs = [ "out" "dev" ];
    multi = "line1\nline2\r\ttab \"quoted\" back\\slash";
  };
in top
)NIX";
        expr.replace(expr.find("WORKDIR"), 7, work);
        std::ofstream(work + "/expr.nix") << expr;
        top_drv = trim(run("nix-instantiate " + work + "/expr.nix 2>/dev/null"));
        all = lines(run("nix-store -qR " + top_drv));
    }
    ~populated_store() { store::remove_tree(work); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(store_paths)

BOOST_AUTO_TEST_CASE(parse_and_validate) {
    auto p = store::parse_store_path("/nix/store", "/nix/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn-t-1.0_x+y?=z");
    BOOST_TEST(p.hash_part == "7ij2krkbb9614l5fxxb3fwylkw6r2crn");
    BOOST_TEST(p.name == "t-1.0_x+y?=z");
    BOOST_TEST(store::is_store_path("/gnu/store", "/gnu/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn-guile"));
    for (const char* bad : {
             "/nix/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn",          // no name
             "/nix/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn-",         // empty name
             "/nix/store/eij2krkbb9614l5fxxb3fwylkw6r2crn-t",        // 'e' not in the alphabet
             "/nix/store/7ij2krkbb9614l5fxxb3fwylkw6r2cr-t",         // 31 characters
             "/nix/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn-a b",      // space
             "/nix/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn-t/sub",    // below a store path
             "/gnu/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn-t",        // other store dir
             "/nix/store2/7ij2krkbb9614l5fxxb3fwylkw6r2crn-t",
         })
        BOOST_TEST(!store::is_store_path("/nix/store", bad), bad);
    BOOST_TEST(store::is_store_path("/nix/store", "/nix/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn-" + std::string(211, 'x')));
    BOOST_TEST(!store::is_store_path("/nix/store", "/nix/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn-" + std::string(212, 'x')));
    try {
        store::parse_store_path("/nix/store", "/nix/store/7ij2krkbb9614l5fxxb3fwylkw6r2crn-a b");
    } catch (const ferry::failure& f) {
        BOOST_TEST(std::string(f.what()).find("a b") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(config_from_environment) {
    ::setenv("NIX_STORE_DIR", "/x/store/", 1);
    ::setenv("NIX_STATE_DIR", "/x/var", 1);
    auto c = store::store_config::from_environment();
    BOOST_TEST(c.store_dir == "/x/store");
    BOOST_TEST(c.database_path == "/x/var/db/db.sqlite");
    ::setenv("GUIX_DATABASE_DIRECTORY", "/y/db", 1);
    auto g = store::store_config::from_environment(store::store_flavour::guix);
    BOOST_TEST(g.database_path == "/y/db/db.sqlite");
    ::unsetenv("NIX_STORE_DIR");
    ::unsetenv("NIX_STATE_DIR");
    ::unsetenv("GUIX_DATABASE_DIRECTORY");
    BOOST_TEST(store::store_config::from_environment(store::store_flavour::guix).store_dir == "/gnu/store");
    BOOST_TEST(store::store_config::from_environment().state_dir == "/nix/var/nix");
}

BOOST_AUTO_TEST_CASE(nix_topological_order_tie_breaking) {
    // c -> b -> a, d -> a, e alone. Nix: DFS over the base-name-ordered set, post-order, reversed.
    auto p = [](char c) { return "/s/" + std::string(32, c) + "-x"; };
    std::map<std::string, std::vector<std::string>> refs{{p('c'), {p('b')}}, {p('b'), {p('a')}}, {p('d'), {p('a')}}};
    auto sorted = store::nix_topo_sort({p('d'), p('a'), p('c'), p('b'), p('f')}, refs);
    // post-order from a: a; b: b; c: c; d: d; f: f => reversed: f d c b a
    BOOST_TEST(join(sorted) == join({p('f'), p('d'), p('c'), p('b'), p('a')}));
    refs[p('a')] = {p('c')};
    BOOST_CHECK_THROW(store::nix_topo_sort({p('a'), p('b'), p('c')}, refs), ferry::failure);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(derivations)

BOOST_AUTO_TEST_CASE(round_trip_real_drv_files_and_basic_derivation) {
    populated_store s;
    int drvs = 0;
    for (const auto& p : s.all) {
        if (!p.ends_with(".drv")) continue;
        ++drvs;
        auto text = read_file(p);
        auto drv = store::parse_derivation(text, p);
        BOOST_TEST((store::print_derivation(drv) == text), p);
    }
    BOOST_TEST(drvs == 3);
    auto drv = store::parse_derivation(read_file(s.top_drv), s.top_drv);
    BOOST_REQUIRE(drv.output("dev"));
    BOOST_TEST(drv.output("out")->path == trim(run("nix-store -q --binding out " + s.top_drv)));
    BOOST_TEST(drv.output("dev")->path == trim(run("nix-store -q --binding dev " + s.top_drv)));
    bool found = false;
    for (auto& [k, v] : drv.env)
        if (k == "multi") found = v == "line1\nline2\r\ttab \"quoted\" back\\slash";
    BOOST_TEST(found);

    // BasicDerivation: decode what was written with the wire cursor.
    auto inputs = std::vector<std::string>{drv.input_srcs.back(), drv.input_srcs.front(), drv.input_srcs.front()};
    auto bytes = store::serialize_basic_derivation(drv, inputs);
    wire::cursor c(bytes);
    BOOST_TEST(*c.u64() == 2u);
    BOOST_TEST(*c.string(100) == "dev");
    BOOST_TEST(*c.string(1000) == drv.output("dev")->path);
    BOOST_TEST(c.string(100)->empty());
    BOOST_TEST(c.string(100)->empty());
    c.string(100), c.string(1000), c.string(100), c.string(100);
    auto srcs = *c.strings(100, 1000);
    std::set<std::string, store::store_path_less> want(inputs.begin(), inputs.end());
    BOOST_TEST(join(srcs) == join({want.begin(), want.end()}));
    BOOST_TEST(*c.string(100) == "x86_64-linux");
    BOOST_TEST(*c.string(100) == "/bin/sh");
    BOOST_TEST(c.strings(10, 10000)->size() == 2u);
    auto n = *c.u64();
    BOOST_TEST(n == drv.env.size());
    for (std::uint64_t i = 0; i < n; ++i) c.string(1 << 20), c.string(1 << 20);
    BOOST_TEST(c.rest().empty());
}

BOOST_AUTO_TEST_CASE(malformed_derivations_name_the_position) {
    auto check = [](const std::string& text, const std::string& where) {
        try {
            store::parse_derivation(text, "x.drv");
            BOOST_FAIL("accepted: " << text);
        } catch (const ferry::failure& f) {
            BOOST_TEST(std::string(f.what()).find(where) != std::string::npos, f.what());
        }
    };
    check("Derive([(\"out\",\"/p\",\"\",\"\")],[],[],\"sys\",\"b\",[],[]", "offset 49 (line 1, column 50): expected ')', found 'end of input'");
    check("Derive([(\"out\",\"/p\",\"\"\"\")],[],[],\"s\",\"b\",[],[])", "offset 22 (line 1, column 23): expected ','");
    check("Derivx(", "offset 0 (line 1, column 1)");
    check("Derive([],[],[],\"s\",\"b\",[],[])x", "trailing");
    check("Derive([],[],[],\"s\n\",\"b\",[],[],)", "line 2");
    check("Derive([],[],[],\"unterminated", "unterminated");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(database_export_import)

BOOST_AUTO_TEST_CASE(export_matches_nix_store_export_byte_for_byte) {
    populated_store s;
    store::store_database db(store::store_config::from_environment());
    BOOST_TEST(db.config().store_dir == s.store_dir);
    // Whole closure, given in a scrambled order.
    auto scrambled = s.all;
    std::reverse(scrambled.begin(), scrambled.end());
    std::rotate(scrambled.begin(), scrambled.begin() + 2, scrambled.end());
    auto theirs = run("nix-store --export " + join(s.all));
    // Small chunks: items span several pieces, up to 128 are read ahead of the
    // output while 0 (inline) to 4 workers and this thread hash different paths.
    for (int threads : {0, 1, 2, 4}) {
        std::string mine;
        store::bundle_source src(db, scrambled, 4096, threads);
        for (auto c = src.next_chunk(); !c.empty(); c = src.next_chunk()) mine += c;
        BOOST_TEST(mine.size() == theirs.size());
        BOOST_TEST((mine == theirs), threads << " hash threads");
        BOOST_TEST(src.bytes_produced() == theirs.size());
    }
    // Subsets, including paths unrelated to each other.
    for (std::size_t skip = 1; skip < s.all.size(); skip += 2) {
        std::vector<std::string> subset;
        for (std::size_t i = 0; i < s.all.size(); i += skip) subset.push_back(s.all[i]);
        std::string m;
        store::bundle_source sub(db, subset);
        for (auto c = sub.next_chunk(); !c.empty(); c = sub.next_chunk()) m += c;
        BOOST_TEST((m == run("nix-store --export " + join(subset))), "subset step " << skip);
    }
    // Path info as Nix reports it.
    auto info = db.query_path_info(s.top_drv);
    BOOST_REQUIRE(info);
    BOOST_TEST(info->nar_hash.starts_with("sha256:"));
    BOOST_TEST(info->nar_hash.size() == 7u + 64u);
    BOOST_TEST(join(info->references) == join(lines(run("nix-store -q --references " + s.top_drv))));
    BOOST_TEST(join(db.closure({s.top_drv})).size() == join(s.all).size());
}

// Nix refuses to export a path whose contents no longer match its NAR hash, and so
// does ferry: the item's trailer is never written. A path that cannot be read
// fails the export only after every item before it was handed out, although the
// reading runs ahead of the output.
BOOST_AUTO_TEST_CASE(export_refuses_changed_and_unreadable_paths) {
    populated_store s;
    store::store_database db(store::store_config::from_environment());
    auto theirs = run("nix-store --export " + join(s.all));
    auto order = store::bundle_source(db, s.all).order();
    auto src = *std::find_if(order.begin(), order.end(), [](auto& p) { return p.ends_with("-t"); });
    auto text = *std::find_if(order.begin(), order.end(), [](auto& p) { return p.ends_with("-c"); });
    auto export_until_failure = [&](int threads) {
        store::bundle_source b(db, s.all, 4096, threads);
        std::string mine;
        try {
            for (auto c = b.next_chunk(); !c.empty(); c = b.next_chunk()) mine += c;
        } catch (const ferry::failure& f) {
            return std::pair{mine, std::string(f.what())};
        }
        return std::pair{mine, std::string("no failure")};
    };
    // Same size, one byte different: the NAR streams, then the hash check fails.
    std::filesystem::permissions(src + "/sub/deeper/.hidden", std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add);
    ferry_test::write_file(src + "/sub/deeper/.hidden", std::string(99999, 'x') + "y");
    for (int threads : {0, 2}) {
        auto [mine, error] = export_until_failure(threads);
        BOOST_TEST(error.find("hash of path '" + src + "' has changed") != std::string::npos, error);
        BOOST_TEST(mine.find(src) == std::string::npos);  // no trailer: the path string is only in it
    }
    ferry_test::write_file(src + "/sub/deeper/.hidden", std::string(100000, 'x'));
    // A store path gone from the disk: what comes before it is all there.
    store::remove_tree(text);
    auto before = order[static_cast<std::size_t>(std::find(order.begin(), order.end(), text) - order.begin()) - 1];
    for (int threads : {0, 2}) {
        auto [mine, error] = export_until_failure(threads);
        BOOST_TEST(error.find(text) != std::string::npos, error);
        BOOST_TEST(theirs.starts_with(mine));
        BOOST_TEST(mine.size() > theirs.find(before));  // up to and including the previous item's trailer
    }
}

BOOST_AUTO_TEST_CASE(import_into_a_fresh_store_then_verify) {
    std::string bundle, references_before, derivation_outputs_before;
    std::vector<std::string> paths;
    std::string root;
    {
        populated_store s;
        root = s.root;
        paths = s.all;
        bundle = run("nix-store --export " + join(paths));
        for (auto& p : paths) references_before += p + ": " + run("nix-store -q --references " + p);
        derivation_outputs_before = run("sqlite3 " + s.state_dir +
                                        "/db/db.sqlite 'select v.path, d.id, d.path from DerivationOutputs d join "
                                        "ValidPaths v on v.id = d.drv order by 1, 2'");
    }
    // A fresh store at the same place, so the same paths are valid store paths.
    ferry_test::private_nix_store fresh;
    std::filesystem::rename(fresh.root, root);  // occupy the old root
    ::setenv("NIX_STORE_DIR", (root + "/store").c_str(), 1);
    ::setenv("NIX_STATE_DIR", (root + "/var").c_str(), 1);
    ::setenv("NIX_LOG_DIR", (root + "/log").c_str(), 1);
    ::setenv("NIX_CONF_DIR", (root + "/etc").c_str(), 1);
    fresh.root = root;
    auto config = store::store_config::from_environment();
    {
        store::store_database db(config);
        store::temp_roots roots(config);
        store::bundle_importer importer(db, roots);
        // Feed in odd-sized pieces; run the garbage collector mid-way: the half-restored
        // temporary and the already imported items are temp-rooted and must survive.
        std::size_t pos = 0, piece = 777;
        bool collected = false;
        while (pos < bundle.size()) {
            importer.feed(std::string_view(bundle).substr(pos, piece));
            pos += piece;
            if (!collected && pos > bundle.size() / 2) {
                run("nix-store --gc 2>/dev/null");
                collected = true;
            }
        }
        auto imported = importer.finish();
        BOOST_TEST(imported.size() == paths.size());
        auto temproots = read_file(roots.file());
        for (auto& p : paths) BOOST_TEST(temproots.find(p + '\0') != std::string::npos, p);
    }
    run("nix-store --verify --check-contents 2>&1");
    std::string references_after;
    for (auto& p : paths) references_after += p + ": " + run("nix-store -q --references " + p);
    BOOST_TEST(references_after == references_before);
    BOOST_TEST(run("sqlite3 " + config.state_dir +
                   "/db/db.sqlite 'select v.path, d.id, d.path from DerivationOutputs d join "
                   "ValidPaths v on v.id = d.drv order by 1, 2'") == derivation_outputs_before);
    // Re-exporting gives back the same bytes (hashes, sizes, derivers, order).
    BOOST_TEST((run("nix-store --export " + join(paths)) == bundle));
    // Nothing else was left in the store directory (no temporaries, no lock files).
    auto entries = store_entries(config.store_dir);
    entries.erase(".links");
    BOOST_TEST(entries.size() == paths.size());
    // Importing again: everything is valid already, nothing changes.
    {
        store::store_database db(config);
        store::temp_roots roots(config);
        store::bundle_importer importer(db, roots);
        importer.feed(bundle);
        BOOST_TEST(importer.finish().size() == paths.size());
    }
    auto again = store_entries(config.store_dir);
    again.erase(".links");
    BOOST_TEST((again == entries));
}

BOOST_AUTO_TEST_CASE(failed_imports_leave_nothing_behind) {
    ferry_test::private_nix_store s;
    auto work = ferry_test::make_temp_dir("fail");
    ferry_test::make_sample_tree(work + "/t");
    auto added = trim(run("nix-store --add " + work + "/t"));
    auto bundle = run("nix-store --export " + added);
    run("nix-store --delete " + added + " 2>/dev/null");
    auto config = store::store_config::from_environment();
    auto before = store_entries(config.store_dir);
    store::store_database db(config);
    store::temp_roots roots(config);
    // Truncated in the middle of the NAR.
    {
        store::bundle_importer importer(db, roots);
        importer.feed(std::string_view(bundle).substr(0, bundle.size() / 2));
        BOOST_TEST(store_entries(config.store_dir).size() == before.size() + 1);  // the temporary
        BOOST_CHECK_THROW(importer.finish(), ferry::failure);
        BOOST_TEST(store_entries(config.store_dir) == before);
    }
    // A reference that is not valid: rejected at the trailer, the temporary removed.
    {
        ferry::protocol::export_bundle::parser p;
        std::string doctored = bundle.substr(0, bundle.size() - 8 - 8 - 8 - 8);  // ... refs(0) deriver("") flag end
        wire::append_strings(doctored, {config.store_dir + "/00000000000000000000000000000000-missing"});
        wire::append_string(doctored, "");
        wire::append_u64(doctored, 0);
        wire::append_u64(doctored, 0);
        store::bundle_importer importer(db, roots);
        BOOST_CHECK_THROW(importer.feed(doctored), ferry::failure);
        BOOST_TEST(store_entries(config.store_dir) == before);
        BOOST_TEST(!db.is_valid(added));
    }
    // Corrupted NAR hash in a known-info import: restored, checked, removed.
    {
        store::path_info info;
        info.path = added;
        info.nar_hash = "sha256:" + std::string(64, '0');
        store::nar_importer imp(db, roots, info);
        BOOST_TEST(imp.needed());
        imp.feed(run("nix-store --dump " + work + "/t"));
        BOOST_CHECK_THROW(imp.finish(), ferry::failure);
        BOOST_TEST(!db.is_valid(added));
    }
    BOOST_TEST(store_entries(config.store_dir) == before);
    // The good import, with the output lock held by "the daemon" (another process
    // holding flock on <path>.lock, as Nix 2.8's PathLocks): ferry must not wait for it.
    {
        run("python3 -c \"import fcntl,time,sys; f=open('" + added + ".lock','w'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); sys.stdout.close(); time.sleep(4)\" > " + work + "/locker.out & for i in $(seq 200); do grep -q locked " + work + "/locker.out && break; sleep 0.05; done");
        BOOST_TEST(ferry_test::trim(read_file(work + "/locker.out")) == "locked");
        store::import_options o;
        o.locked_by_caller.insert(added);
        o.hash_thread = false;  // the calling thread hashes (elsewhere a helper thread does)
        auto start = std::chrono::steady_clock::now();
        store::bundle_importer importer(db, roots, o);
        importer.feed(bundle);
        importer.finish();
        BOOST_TEST(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 2.0);
        BOOST_TEST(db.is_valid(added));
        BOOST_TEST(std::filesystem::exists(added + ".lock"));  // still the holder's
        run("nix-store --verify-path " + added);
    }
    // Without naming it, ferry waits for the holder like Nix does (python exits at 4 s).
    {
        auto other = trim(run("nix-store --add " + work + "/t/a"));
        auto other_bundle = run("nix-store --export " + other);
        run("nix-store --delete " + other + " 2>/dev/null");
        run("python3 -c \"import fcntl,time,sys; f=open('" + other + ".lock','w'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); sys.stdout.close(); time.sleep(1.5)\" > " + work + "/locker2.out & for i in $(seq 200); do grep -q locked " + work + "/locker2.out && break; sleep 0.05; done");
        BOOST_TEST(ferry_test::trim(read_file(work + "/locker2.out")) == "locked");
        auto start = std::chrono::steady_clock::now();
        store::bundle_importer importer(db, roots);
        importer.feed(other_bundle);
        importer.finish();
        BOOST_TEST(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > 0.5);
        BOOST_TEST(db.is_valid(other));
        BOOST_TEST(!std::filesystem::exists(other + ".lock"));  // released the Nix way: unlinked
    }
    store::remove_tree(work);
}

BOOST_AUTO_TEST_CASE(registration_waits_for_a_busy_writer) {
    // Another writer (standing in for the daemon) holds the write lock for a while:
    // registration must wait and succeed, and the journal mode must stay WAL.
    ferry_test::private_nix_store s;
    auto work = ferry_test::make_temp_dir("busy");
    ferry_test::make_sample_tree(work + "/t");
    auto added = trim(run("nix-store --add " + work + "/t"));
    auto bundle = run("nix-store --export " + added);
    run("nix-store --delete " + added + " 2>/dev/null");
    auto config = store::store_config::from_environment();
    BOOST_TEST(trim(run("sqlite3 " + config.database_path + " 'pragma journal_mode'")) == "wal");
    run("python3 -c \"import sqlite3,time,sys; c=sqlite3.connect('" + config.database_path +
        "', isolation_level=None); c.execute('begin immediate'); print('locked', flush=True); sys.stdout.close(); "
        "time.sleep(1.5); c.execute('commit')\" > " + work + "/locker.out & for i in $(seq 200); do grep -q locked " + work + "/locker.out && break; sleep 0.05; done");
    BOOST_TEST(trim(read_file(work + "/locker.out")) == "locked");
    auto start = std::chrono::steady_clock::now();
    {
        store::store_database db(config);
        store::temp_roots roots(config);
        store::bundle_importer importer(db, roots);
        importer.feed(bundle);
        importer.finish();
    }
    auto waited = std::chrono::steady_clock::now() - start;
    BOOST_TEST(std::chrono::duration<double>(waited).count() > 0.5);
    run("nix-store --verify-path " + added);
    BOOST_TEST(trim(run("sqlite3 " + config.database_path + " 'pragma journal_mode'")) == "wal");
    store::remove_tree(work);
}

BOOST_AUTO_TEST_CASE(guix_schema_columns_are_detected) {
    auto dir = ferry_test::make_temp_dir("guixdb");
    std::filesystem::create_directories(dir + "/var/db");
    std::filesystem::create_directories(dir + "/store");
    // Guix's schema: no ultimate, sigs, ca.
    store::create_guix_database(dir + "/var/db/db.sqlite");
    BOOST_TEST(trim(run("sqlite3 " + dir + "/var/db/db.sqlite 'pragma journal_mode'")) == "wal");
    auto config = store::store_config::make(store::store_flavour::guix, dir + "/store", dir + "/var");
    store::store_database db(config);
    BOOST_TEST(!db.has_column("ValidPaths", "ultimate"));
    BOOST_TEST(db.has_column("ValidPaths", "narSize"));
    auto a = dir + "/store/0000000000000000000000000000000a-a";
    auto b = dir + "/store/0000000000000000000000000000000b-b";
    std::filesystem::create_directories(a);
    std::filesystem::create_directories(b);
    store::path_info ia{a, "sha256:" + std::string(64, '1'), 120, "", {}, 0, true, {"sig:x"}, ""};
    store::path_info ib{b, "sha256:" + std::string(64, '2'), 0, a, {a, b}, 5, false, {}, ""};
    db.register_valid_paths({ib, ia});  // same batch, referrer first
    auto info = db.query_path_info(b);
    BOOST_REQUIRE(info);
    BOOST_TEST(info->registration_time == 5);
    BOOST_TEST(info->deriver == a);
    BOOST_TEST(join(info->references) == join({a, b}));
    BOOST_TEST(trim(run("sqlite3 " + config.database_path + " 'pragma journal_mode'")) == "wal");
    // Temp roots with the Guix (Nix 1.x) locking protocol.
    store::temp_roots roots(config);
    roots.add(a);
    BOOST_TEST((read_file(roots.file()) == a + '\0'));
    store::remove_tree(dir);
}

BOOST_AUTO_TEST_SUITE_END()
