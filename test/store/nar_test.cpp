#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <filesystem>

#include "ferry/protocol/nar.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/store/hash.hpp"
#include "ferry/store/hash_worker.hpp"
#include "ferry/store/nar_dump.hpp"
#include "ferry/store/nar_restore.hpp"
#include "ferry/util/error.hpp"
#include "store/nix_fixture.hpp"

namespace nar = ferry::protocol::nar;
namespace wire = ferry::protocol::wire;
namespace store = ferry::store;
using namespace std::string_literals;

namespace {

std::string str(std::string_view s) {
    std::string out;
    wire::append_string(out, s);
    return out;
}

// magic ( type directory entry ( name "a" node <file "hi" exec> ) entry ( name "l" node <symlink> ) )
std::string sample_nar() {
    std::string out;
    nar::append_magic(out);
    nar::append_directory_begin(out);
    nar::append_entry_begin(out, "a");
    nar::append_regular_header(out, true, 2);
    out += "hi";
    nar::append_regular_end(out, 2);
    nar::append_entry_end(out);
    nar::append_entry_begin(out, "l");
    nar::append_symlink(out, "a");
    nar::append_entry_end(out);
    nar::append_directory_end(out);
    return out;
}

struct parse_result {
    std::vector<nar::event_type> types;
    std::string names, data;
    bool done = false;
};

// Feeds input in pieces of `piece` bytes.
parse_result parse_all(std::string_view input, std::size_t piece, nar::parser_limits l = {}) {
    nar::parser p(l);
    parse_result r;
    for (std::size_t pos = 0;;) {
        auto chunk = input.substr(pos, std::min(piece, input.size() - pos));
        auto s = p.next(chunk);
        pos += s.consumed;
        if (s.ev) {
            r.types.push_back(s.ev->type);
            if (s.ev->type == nar::event_type::entry || s.ev->type == nar::event_type::symlink)
                r.names += std::string(s.ev->text) + ";";
            if (s.ev->type == nar::event_type::data) r.data += s.ev->text;
        } else if (pos == input.size()) {
            break;
        }
    }
    r.done = p.done();
    return r;
}

// The offset reported by the failure, parsed from the message.
std::uint64_t failure_offset(const std::string& what) {
    auto at = what.rfind("offset ");
    BOOST_REQUIRE(at != std::string::npos);
    return std::stoull(what.substr(at + 7));
}

std::uint64_t rejected_at(const std::string& bytes) {
    try {
        parse_all(bytes, 1);
    } catch (const ferry::failure& f) {
        return failure_offset(f.what());
    }
    BOOST_FAIL("accepted malformed NAR");
    return 0;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(nar_parser)

BOOST_AUTO_TEST_CASE(events_of_a_small_archive) {
    auto bytes = sample_nar();
    using t = nar::event_type;
    for (std::size_t piece : {1, 3, 8, 13, 4096}) {
        auto r = parse_all(bytes, piece);
        BOOST_TEST(r.done);
        BOOST_TEST(r.names == "a;l;a;");
        BOOST_TEST(r.data == "hi");
        BOOST_TEST((r.types.front() == t::directory));
        BOOST_TEST((r.types.back() == t::end));
    }
}

BOOST_AUTO_TEST_CASE(every_prefix_needs_more) {
    auto bytes = sample_nar();
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        auto r = parse_all(std::string_view(bytes).substr(0, n), 5);
        BOOST_TEST(!r.done, "prefix " << n);
        nar::parser p;
        std::string_view in(bytes.data(), n);
        for (;;) {
            auto s = p.next(in);
            in.remove_prefix(s.consumed);
            if (!s.ev) break;
        }
        BOOST_CHECK_THROW(p.finish(), ferry::failure);
    }
}

BOOST_AUTO_TEST_CASE(malformed_archives_are_rejected_with_their_offset) {
    auto good = sample_nar();
    // Bad magic at 0.
    BOOST_TEST(rejected_at(str("nix-archive-2") + good.substr(24)) == 0u);
    // Unknown node type: "type" token at 32+16=48... the value starts at 72.
    {
        auto bad = good;
        auto pos = bad.find("directory");
        bad.replace(pos, 9, "directorx");
        BOOST_TEST(rejected_at(bad) == pos - 8);
    }
    auto with_names = [](std::vector<std::string> names) {
        std::string out;
        nar::append_magic(out);
        nar::append_directory_begin(out);
        for (auto& n : names) {
            nar::append_entry_begin(out, n);
            nar::append_symlink(out, "x");
            nar::append_entry_end(out);
        }
        nar::append_directory_end(out);
        return out;
    };
    for (std::string bad : {"."s, ".."s, "a/b"s, "a\0b"s, ""s}) {
        auto bytes = with_names({bad});
        // The name token follows magic(24) + "(" "type" "directory"(16*3=48... compute)
        auto expected = bytes.find(str(bad) + str("node"), 72);
        BOOST_TEST(rejected_at(bytes) == expected, "name '" << bad << "'");
    }
    {
        auto bytes = with_names({"b", "a"});
        auto expected = bytes.rfind(str("a") + str("node"));
        BOOST_TEST(rejected_at(bytes) == expected);
        bytes = with_names({"a", "a"});
        expected = bytes.rfind(str("a") + str("node"));
        BOOST_TEST(rejected_at(bytes) == expected);
        // Byte order: "B" < "a", so B then a is fine.
        BOOST_TEST(parse_all(with_names({"B", "a"}), 7).done);
    }
    // Non-zero padding after contents.
    {
        auto bad = good;
        auto pos = bad.find("hi\0"s) + 2;
        bad[pos + 3] = 'x';
        BOOST_TEST(rejected_at(bad) == pos + 3);
    }
    // Trailing garbage.
    BOOST_TEST(rejected_at(good + "x") == good.size());
    // Executable marker with a value.
    {
        auto bad = good;
        auto pos = bad.find(str("executable")) + 24;
        bad.replace(pos, 8, str("x").substr(0, 8));
        bad.insert(pos + 8, "x\0\0\0\0\0\0\0"s);
        BOOST_TEST(rejected_at(bad) == pos);
    }
    // Over-long name: rejected at the token start before buffering it.
    {
        std::string bytes;
        nar::append_magic(bytes);
        nar::append_directory_begin(bytes);
        auto pos = bytes.size() + 48 /* "entry" "(" "name" */;
        nar::append_entry_begin(bytes, std::string(300, 'n'));
        BOOST_TEST(rejected_at(bytes) == pos);
    }
    // Hostile length for a keyword.
    {
        std::string bytes;
        nar::append_magic(bytes);
        wire::append_u64(bytes, 1ull << 60);
        BOOST_TEST(rejected_at(bytes) == 24u);
    }
}

BOOST_AUTO_TEST_CASE(depth_limit) {
    std::string bytes;
    nar::append_magic(bytes);
    for (int i = 0; i < 5; ++i) {
        nar::append_directory_begin(bytes);
        nar::append_entry_begin(bytes, "d");
    }
    nar::parser_limits l;
    l.max_depth = 3;
    BOOST_CHECK_THROW(parse_all(bytes, 64, l), ferry::failure);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(nar_files)

BOOST_AUTO_TEST_CASE(dump_equals_nix_store_dump_and_hash_equals_nix_hash) {
    auto dir = ferry_test::make_temp_dir("dump");
    ferry_test::make_sample_tree(dir + "/t");
    auto mine = store::dump_to_string(dir + "/t");
    auto theirs = ferry_test::run("nix-store --dump " + dir + "/t");
    BOOST_TEST(mine.size() == theirs.size());
    BOOST_TEST((mine == theirs));
    store::nar_source src(dir + "/t", 4096);
    std::size_t chunks = 0, max_chunk = 0;
    for (auto c = src.next_chunk(); !c.empty(); c = src.next_chunk()) {
        ++chunks;
        max_chunk = std::max(max_chunk, c.size());
    }
    BOOST_TEST(chunks > 10u);
    BOOST_TEST(max_chunk <= 4096u + 512u);
    BOOST_TEST(src.bytes_produced() == theirs.size());
    auto want = ferry_test::trim(ferry_test::run("nix-hash --type sha256 --base32 " + dir + "/t"));
    BOOST_TEST(store::to_nix_base32(src.digest()) == want);
    auto want16 = ferry_test::trim(ferry_test::run("nix-hash --type sha256 " + dir + "/t"));
    BOOST_TEST(store::to_base16(src.digest()) == want16);
    // A single file and a symlink as the root.
    BOOST_TEST((store::dump_to_string(dir + "/t/run.sh") == ferry_test::run("nix-store --dump " + dir + "/t/run.sh")));
    BOOST_TEST((store::dump_to_string(dir + "/t/sub/link") == ferry_test::run("nix-store --dump " + dir + "/t/sub/link")));
    store::remove_tree(dir);
}

BOOST_AUTO_TEST_CASE(restore_round_trip_and_canonical_metadata) {
    auto dir = ferry_test::make_temp_dir("restore");
    ferry_test::make_sample_tree(dir + "/t");
    auto bytes = store::dump_to_string(dir + "/t");
    for (std::size_t piece : {1, 7, 65536}) {
        auto target = dir + "/out" + std::to_string(piece);
        store::nar_restore_stream r(target);
        for (std::size_t pos = 0; pos < bytes.size(); pos += piece) r.feed(std::string_view(bytes).substr(pos, piece));
        auto digest = r.finish();
        r.restorer().release();
        BOOST_TEST((digest == store::sha256_of(bytes)));
        BOOST_TEST((store::dump_to_string(target) == bytes));
        struct stat st;
        BOOST_REQUIRE(::lstat((target + "/run.sh").c_str(), &st) == 0);
        BOOST_TEST((st.st_mode & 07777) == 0555u);
        BOOST_TEST(st.st_mtime == 1);
        BOOST_REQUIRE(::lstat((target + "/a").c_str(), &st) == 0);
        BOOST_TEST((st.st_mode & 07777) == 0444u);
        BOOST_REQUIRE(::lstat((target + "/sub").c_str(), &st) == 0);
        BOOST_TEST((st.st_mode & 07777) == 0555u);
        BOOST_TEST(st.st_mtime == 1);
        BOOST_REQUIRE(::lstat((target + "/sub/link").c_str(), &st) == 0);
        BOOST_TEST(st.st_mtime == 1);
    }
    store::remove_tree(dir);
}

BOOST_AUTO_TEST_CASE(failed_restore_leaves_nothing) {
    auto dir = ferry_test::make_temp_dir("abort");
    ferry_test::make_sample_tree(dir + "/t");
    auto bytes = store::dump_to_string(dir + "/t");
    {
        // Truncated: finish() throws and removes the partial tree.
        store::nar_restore_stream r(dir + "/cut");
        r.feed(std::string_view(bytes).substr(0, bytes.size() / 2));
        BOOST_TEST(std::filesystem::exists(dir + "/cut"));
        BOOST_CHECK_THROW(r.finish(), ferry::failure);
        BOOST_TEST(!std::filesystem::exists(dir + "/cut"));
    }
    {
        // Malformed in the middle: feed throws and removes.
        auto bad = bytes;
        bad[bad.size() - 20] = 'Z';
        store::nar_restore_stream r(dir + "/bad");
        BOOST_CHECK_THROW(r.feed(bad), ferry::failure);
        BOOST_TEST(!std::filesystem::exists(dir + "/bad"));
    }
    {
        // An existing target is never written through.
        std::filesystem::create_directories(dir + "/exists");
        store::nar_restore_stream r(dir + "/exists");
        BOOST_CHECK_THROW(r.feed(bytes), ferry::failure);
    }
    store::remove_tree(dir);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(hashes)

BOOST_AUTO_TEST_CASE(base32_vectors) {
    // sha256("") and sha256("abc") as nix-hash prints them (Nix's own test vectors).
    BOOST_TEST(store::to_nix_base32(store::sha256_of("")) == "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
    BOOST_TEST(store::to_nix_base32(store::sha256_of("abc")) == "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s");
    BOOST_TEST(store::to_base16(store::sha256_of("abc")) ==
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    auto d = store::sha256_of("abc");
    auto back = store::from_nix_base32(store::to_nix_base32(d), 32);
    BOOST_REQUIRE(back);
    BOOST_TEST(std::equal(back->begin(), back->end(), d.begin()));
    // (replace(), not "e" + substr(): g++ 12 -O3 warns falsely on that concatenation.)
    BOOST_TEST(!store::from_nix_base32(store::to_nix_base32(d).replace(0, 1, "e"), 32));
    // Overflow bits: the first character of a 52-char SHA-256 encoding holds 256-255=1 bit.
    BOOST_TEST(!store::from_nix_base32(store::to_nix_base32(d).replace(0, 1, "z"), 32));
    auto parsed = store::parse_sha256(store::sha256_db_string(d));
    BOOST_TEST((parsed && *parsed == d));
    parsed = store::parse_sha256("sha256:" + store::to_nix_base32(d));
    BOOST_TEST((parsed && *parsed == d));
}

// Pieces queued on two workers, interleaved, each hash in its own order: the
// digests equal one-shot hashing; tickets say when a piece is done.
BOOST_AUTO_TEST_CASE(hash_workers_keep_each_hashs_order) {
    std::string data(3 << 20, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
    std::string_view all(data);
    store::sha256 h1, h2;
    store::hash_worker w1, w2;
    std::uint64_t t1 = 0, t2 = 0;
    // Two hashes of the same bytes, cut differently, queued in turns on two workers.
    std::size_t pos1 = 0, pos2 = 0, piece = 1;
    while (pos1 < data.size() || pos2 < data.size()) {
        if (pos1 < data.size()) t1 = w1.submit(h1, all.substr(pos1, piece)), pos1 += piece;
        if (pos2 < data.size()) t2 = w2.submit(h2, all.substr(pos2, 2 * piece + 7)), pos2 += 2 * piece + 7;
        piece = piece * 3 % 70001 + 1;
    }
    w1.wait(t1);
    BOOST_TEST(w1.done(t1));
    BOOST_TEST(w1.backlog() == 0u);
    w2.drain();
    BOOST_TEST(w2.done(t2));
    BOOST_TEST((h1.finish() == store::sha256_of(all)));
    BOOST_TEST((h2.finish() == store::sha256_of(all)));
    store::sha256 h3;
    {
        store::hash_worker w3;
        w3.submit(h3, all.substr(0, 1000));
        w3.submit(h3, all.substr(1000));
    }  // the destructor runs what is queued
    BOOST_TEST((h3.finish() == store::sha256_of(all)));
}

BOOST_AUTO_TEST_CASE(base32_agrees_with_nix_hash_to_base32) {
    auto d = store::sha256_of("ferry");
    auto want = ferry_test::trim(ferry_test::run("nix-hash --type sha256 --to-base32 " + store::to_base16(d)));
    BOOST_TEST(store::to_nix_base32(d) == want);
}

BOOST_AUTO_TEST_SUITE_END()
