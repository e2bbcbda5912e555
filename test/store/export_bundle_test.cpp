#include <boost/test/unit_test.hpp>

#include "ferry/protocol/export_bundle.hpp"
#include "ferry/protocol/nar.hpp"
#include "ferry/protocol/wire.hpp"
#include "ferry/util/error.hpp"

namespace bundle = ferry::protocol::export_bundle;
namespace nar = ferry::protocol::nar;
namespace wire = ferry::protocol::wire;

namespace {

using ferry::protocol::nar::regular_file_nar;

std::string two_items() {
    std::string out;
    bundle::append_item_begin(out);
    out += regular_file_nar("first");
    bundle::append_item_trailer(out, {"/s/aaaa-a", {}, "", std::nullopt});
    bundle::append_item_begin(out);
    out += regular_file_nar("second!!");
    bundle::append_item_trailer(out, {"/s/bbbb-b", {"/s/aaaa-a", "/s/bbbb-b"}, "/s/cccc-c.drv", std::string("sig")});
    bundle::append_end(out);
    return out;
}

struct outcome {
    std::vector<std::string> paths;
    std::string nar_bytes, data;
    bool done = false;
};

outcome parse(std::string_view in, std::size_t piece) {
    bundle::parser p;
    outcome o;
    for (std::size_t pos = 0;;) {
        auto chunk = in.substr(pos, std::min(piece, in.size() - pos));
        auto s = p.next(chunk);
        pos += s.consumed;
        o.nar_bytes += s.nar_bytes;
        if (s.ev) {
            if (s.ev->type == bundle::event_type::item_end) {
                auto& t = *s.ev->trailer;
                o.paths.push_back(t.path + "|" + std::to_string(t.references.size()) + "|" + t.deriver + "|" +
                                  t.signature.value_or("-"));
            }
            if (s.ev->type == bundle::event_type::nar && s.ev->nar.type == nar::event_type::data) o.data += s.ev->nar.text;
        } else if (pos == in.size()) {
            break;
        }
    }
    o.done = p.done();
    return o;
}

std::uint64_t rejected_at(const std::string& bytes) {
    try {
        parse(bytes, 3);
    } catch (const ferry::failure& f) {
        std::string w = f.what();
        return std::stoull(w.substr(w.rfind("offset ") + 7));
    }
    BOOST_FAIL("accepted a malformed bundle");
    return 0;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(export_bundle_codec)

BOOST_AUTO_TEST_CASE(items_in_any_chunking) {
    auto bytes = two_items();
    for (std::size_t piece : {1, 5, 8, 100, 1 << 20}) {
        auto o = parse(bytes, piece);
        BOOST_TEST(o.done);
        BOOST_REQUIRE(o.paths.size() == 2u);
        BOOST_TEST(o.paths[0] == "/s/aaaa-a|0||-");
        BOOST_TEST(o.paths[1] == "/s/bbbb-b|2|/s/cccc-c.drv|sig");
        BOOST_TEST(o.data == "firstsecond!!");
        BOOST_TEST((o.nar_bytes == regular_file_nar("first") + regular_file_nar("second!!")));
    }
}

BOOST_AUTO_TEST_CASE(every_prefix_needs_more) {
    auto bytes = two_items();
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        bundle::parser p;
        std::string_view in(bytes.data(), n);
        for (;;) {
            auto s = p.next(in);
            in.remove_prefix(s.consumed);
            if (!s.ev) break;
        }
        BOOST_TEST(in.empty(), "prefix " << n);
        BOOST_CHECK_THROW(p.finish(), ferry::failure);
    }
}

BOOST_AUTO_TEST_CASE(malformed_bundles) {
    auto good = two_items();
    // Item flag 2.
    {
        auto bad = good;
        bad[0] = 2;
        BOOST_TEST(rejected_at(bad) == 0u);
    }
    // Wrong export magic after the first NAR.
    {
        auto bad = good;
        auto at = 8 + regular_file_nar("first").size();
        bad[at] = 'X';
        BOOST_TEST(rejected_at(bad) == at);
    }
    // Signature flag 7.
    {
        std::string bad;
        bundle::append_item_begin(bad);
        bad += regular_file_nar("x");
        wire::append_u64(bad, bundle::export_magic);
        wire::append_string(bad, "/s/p");
        wire::append_u64(bad, 0);
        wire::append_string(bad, "");
        auto at = bad.size();
        wire::append_u64(bad, 7);
        BOOST_TEST(rejected_at(bad) == at);
    }
    // Bad NAR inside: offset is the bundle offset.
    {
        auto bad = good;
        auto at = 8 + 16 + 8;  // item flag, magic string, "(" length
        bad[at] = 'x';
        BOOST_TEST(rejected_at(bad) == std::uint64_t(8 + 24));
    }
    // Trailing bytes after the end marker.
    BOOST_TEST(rejected_at(good + std::string(8, '\0')) == good.size());
    // Hostile reference count.
    {
        std::string bad;
        bundle::append_item_begin(bad);
        bad += regular_file_nar("x");
        wire::append_u64(bad, bundle::export_magic);
        wire::append_string(bad, "/s/p");
        wire::append_u64(bad, 1ull << 40);
        BOOST_CHECK_THROW(parse(bad, 1 << 20), ferry::failure);
    }
}

BOOST_AUTO_TEST_SUITE_END()
