#include <ferry/machines/ferry_conf.hpp>
#include <ferry/machines/locate.hpp>
#include <ferry/util/error.hpp>

#include <boost/test/unit_test.hpp>

#include <set>

using namespace ferry::machines;
using namespace std::chrono_literals;

namespace {

std::string error_of(std::string_view text) {
    try {
        parse_ferry_conf(text, "/etc/ferry/ferry.conf", "/var/lib/ferry");
    } catch (const ferry::failure& e) {
        BOOST_TEST((e.code() == ferry::errc::bad_input));
        return e.what();
    }
    return "";
}

file_reader files(std::map<std::string, std::string> f) {
    return [f](const std::string& p) -> std::optional<std::string> {
        auto it = f.find(p);
        if (it == f.end()) return std::nullopt;
        return it->second;
    };
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ferry_conf_suite)

BOOST_AUTO_TEST_CASE(defaults) {
    auto c = parse_ferry_conf("", "f", "/var/guix");
    const auto& s = c.global();
    BOOST_TEST(s.codec == "auto");
    BOOST_TEST(s.compression_threads == 0u);
    BOOST_TEST(s.memory_budget == 128ull << 20);
    BOOST_TEST((s.probe_deadline == 5s));
    BOOST_TEST((s.probe_cache == 5s));
    BOOST_TEST(s.state_dir == "/var/guix");
    BOOST_TEST(!s.overload_threshold.has_value());
    BOOST_TEST(s.min_free_space == 100ull << 20);
    BOOST_TEST((s.level == log_level::info));
    BOOST_TEST(s.parallel_import_streams == 0u);
    // Every key in the table has a name, a type and a doc line.
    std::set<std::string_view> names;
    for (const auto& k : key_table()) {
        BOOST_TEST(!k.type.empty());
        BOOST_TEST(!k.doc.empty());
        names.insert(k.name);
    }
    BOOST_TEST(names.size() == 16u);
    BOOST_TEST((s.slot_wait == 2s));
    BOOST_TEST((s.flavour == remote_flavour::auto_detect));
    BOOST_TEST(s.remote_state_dir.empty());  // the flavour's own
}

BOOST_AUTO_TEST_CASE(global_and_sections) {
    auto c = parse_ferry_conf(
        "# ferry\ncodec = zstd:3\nmemory-budget=1G\nprobe-deadline = 1.5s\nconnect-timeout = 2m\n"
        "keepalive-interval = 1h\nlog-level = debug\nstate-dir = /srv/ferry\noverload-threshold = 0.5\nslot-wait = 0\n"
        "; another comment\n[machine fast.example]\ncodec = none\noverload-threshold = off\n"
        "min-free-space = 2G\nparallel-import-streams = 4\nremote-flavour = nix\n"
        "[ machine \"slow\" ]\ncompression-threads = 2\nremote-flavour = guix\n",
        "f", "/var/lib/ferry");
    const auto& g = c.global();
    BOOST_TEST((g.slot_wait == 0s));
    BOOST_TEST(g.codec == "zstd:3");
    BOOST_TEST(g.memory_budget == 1ull << 30);
    BOOST_TEST((g.probe_deadline == 1500ms));
    BOOST_TEST((g.connect_timeout == 120s));
    BOOST_TEST((g.keepalive_interval == 3600s));
    BOOST_TEST((g.level == log_level::debug));
    BOOST_TEST(g.state_dir == "/srv/ferry");
    BOOST_TEST(g.overload_threshold.value() == 0.5);
    auto f = c.for_machine("fast.example");
    BOOST_TEST(f.codec == "none");
    BOOST_TEST(!f.overload_threshold.has_value());
    BOOST_TEST(f.overload_threshold_off);
    BOOST_TEST(f.min_free_space == 2ull << 30);
    BOOST_TEST(f.parallel_import_streams == 4u);
    BOOST_TEST(f.memory_budget == 1ull << 30);  // inherited
    BOOST_TEST(c.for_machine("slow").compression_threads == 2u);
    BOOST_TEST((f.flavour == remote_flavour::nix));
    BOOST_TEST((c.for_machine("slow").flavour == remote_flavour::guix));
    BOOST_TEST((c.for_machine("other").flavour == remote_flavour::auto_detect));
    BOOST_TEST(c.for_machine("other").codec == "zstd:3");
    BOOST_TEST(c.has_section("slow"));
    BOOST_TEST(!c.has_section("other"));
    BOOST_TEST((c.section_names() == std::vector<std::string>{"fast.example", "slow"}));
}

BOOST_AUTO_TEST_CASE(sizes_and_durations) {
    BOOST_TEST(parse_size("0").value() == 0u);
    BOOST_TEST(parse_size("12K").value() == 12u * 1024);
    BOOST_TEST(!parse_size("M"));
    BOOST_TEST(!parse_size("1.5M"));
    BOOST_TEST(!parse_size("-1"));
    BOOST_TEST(!parse_size("99999999999999999G"));
    BOOST_TEST((parse_duration("10").value() == 10s));
    BOOST_TEST((parse_duration("0.25s").value() == 250ms));
    BOOST_TEST(!parse_duration("s"));
    BOOST_TEST(!parse_duration("5d"));
    BOOST_TEST(!parse_duration("-1s"));
}

BOOST_AUTO_TEST_CASE(errors) {
    BOOST_TEST(error_of("a\nmemory-budget = lots\n") ==
               "/etc/ferry/ferry.conf:1: expected 'key = value', got 'a'");
    BOOST_TEST(error_of("memory-budget = lots\n") ==
               "/etc/ferry/ferry.conf:1: key 'memory-budget': got 'lots', expected a size (integer with optional K, M or G suffix)");
    BOOST_TEST(error_of("\n\nprobe-deadline = soon").find(":3: key 'probe-deadline': got 'soon', expected a duration") !=
               std::string::npos);
    BOOST_TEST(error_of("colour = red").find(":1: unknown key 'colour'") != std::string::npos);
    BOOST_TEST(error_of("[machine a]\nstate-dir = /x").find(":2: key 'state-dir' is global only") != std::string::npos);
    BOOST_TEST(error_of("[host a]").find(":1: section 'host a': expected [machine NAME]") != std::string::npos);
    BOOST_TEST(error_of("[machine a").find(":1: expected ']'") != std::string::npos);
    BOOST_TEST(error_of("[machine ]").find("expected a machine name") != std::string::npos);
    BOOST_TEST(error_of("log-level = loud").find("one of error, warn") != std::string::npos);
    BOOST_TEST(error_of("overload-threshold = 2").find("from 0 to 1, or off") != std::string::npos);
    BOOST_TEST(error_of("state-dir = relative").find("absolute path") != std::string::npos);
    BOOST_TEST(error_of("compression-threads = -1").find("non-negative integer") != std::string::npos);
    BOOST_TEST(error_of("remote-flavour = hurd").find("got 'hurd', expected one of auto, guix, nix") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(format_detection) {
    BOOST_TEST((detect_format("/etc/guix/machines.scm", "") == file_format::guix));
    BOOST_TEST((detect_format("/tmp/m", ";; guix\n  (list)") == file_format::guix));
    BOOST_TEST((detect_format("/tmp/m", "# nix\nssh://h x86_64-linux") == file_format::nix));
    BOOST_TEST((detect_format("/tmp/m", "") == file_format::nix));
}

BOOST_AUTO_TEST_CASE(default_lookup) {
    environment env;
    std::set<std::string> present;
    env.exists = [&](const std::string& p) { return present.count(p) != 0; };
    BOOST_TEST(default_machines_file(env) == "/etc/guix/machines.scm");
    env.vars["GUIX_CONFIGURATION_DIRECTORY"] = "/gc";
    BOOST_TEST(default_machines_file(env) == "/gc/machines.scm");
    present.insert("/etc/nix/machines");
    BOOST_TEST(default_machines_file(env) == "/etc/nix/machines");
    env.vars["NIX_CONF_DIR"] = "/nc";
    BOOST_TEST(default_machines_file(env) == "/gc/machines.scm");
    BOOST_TEST(ferry_conf_path(env) == "/etc/ferry/ferry.conf");
    env.vars["FERRY_CONFIG"] = "/tmp/f.conf";
    BOOST_TEST(ferry_conf_path(env) == "/tmp/f.conf");
    auto c = load_ferry_conf(env, "/var/lib/ferry", files({}));
    BOOST_TEST(c.global().state_dir == "/var/lib/ferry");
    BOOST_TEST(c.path().empty());
    c = load_ferry_conf(env, "/var/lib/ferry", files({{"/tmp/f.conf", "codec = zstd"}}));
    BOOST_TEST(c.global().codec == "zstd");
    BOOST_TEST(c.path() == "/tmp/f.conf");
}

BOOST_AUTO_TEST_CASE(load_both_formats) {
    auto read = files({{"/m.scm", "(list (build-machine (name \"g\") (systems '(\"x\")) (user \"u\") (host-key \"k\")))"},
                       {"/m", "n"},
                       {"/paren", "; scm without suffix\n(list)"}});
    auto g = load_machines("/m.scm", "x86_64-linux", read);
    BOOST_REQUIRE_EQUAL(g.size(), 1u);
    BOOST_TEST((g[0].kind == flavour::guix));
    auto n = load_machines("/m", "x86_64-linux", read);
    BOOST_REQUIRE_EQUAL(n.size(), 1u);
    BOOST_TEST((n[0].kind == flavour::nix));
    BOOST_TEST(load_machines("/paren", "x", read).empty());
    BOOST_CHECK_THROW(load_machines("/absent", "x", read), ferry::failure);
}

BOOST_AUTO_TEST_CASE(real_files) {
    // read_file_if_exists on the real filesystem: present, absent.
    BOOST_TEST(read_file_if_exists(FERRY_SOURCE_DIR "/CMakeLists.txt").has_value());
    BOOST_TEST(!read_file_if_exists("/nonexistent/ferry/machines").has_value());
    auto env = environment::from_process();
    BOOST_TEST(env.exists(FERRY_SOURCE_DIR "/CMakeLists.txt"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ferry_conf_docs)

// docs/configuration.md documents every key of key_table() in its reference table.
BOOST_AUTO_TEST_CASE(every_key_documented) {
    auto doc = read_file_if_exists(FERRY_SOURCE_DIR "/docs/configuration.md");
    BOOST_REQUIRE(doc.has_value());
    for (const auto& k : key_table())
        BOOST_TEST(doc->find("| " + std::string(k.name) + " |") != std::string::npos, "key " << k.name);
}

BOOST_AUTO_TEST_SUITE_END()
