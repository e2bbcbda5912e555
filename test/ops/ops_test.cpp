// `ferry test` and `ferry status` against real sshd test hosts (ferry::hosts),
// run as the operator runs them: the built program, its stdout, stderr and exit
// status.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <asio.hpp>
#include <boost/test/unit_test.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "ferry/hosts/host_group.hpp"
#include "ferry/io/child_process.hpp"
#include "ferry/schedule/slot.hpp"
#include "ferry/schedule/state.hpp"

namespace fs = std::filesystem;
using namespace ferry;

namespace {

struct run_result {
    int status = -1;
    std::string out, err;
};

run_result ferry_cli(std::vector<std::string> args) {
    args.insert(args.begin(), FERRY_BINARY_DIR "/ferry");
    asio::io_context io(1);
    auto fut = asio::co_spawn(io, io::run_process(args), asio::use_future);
    io.run();
    auto r = fut.get();
    return {r.status, r.out, r.err};
}

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

// Two hosts for the whole suite, and a ferry.conf with a private state directory.
struct shared_hosts {
    fs::path dir = hosts::temporary_directory("ferry-ops-test");
    hosts::host_group group = hosts::host_group::start(dir / "hosts", 2);
    fs::path state = dir / "state";
    fs::path conf = dir / "ferry.conf";

    shared_hosts() {
        write(conf, fmt::format("# written by test_ops\nstate-dir = {}\n", state.string()));
        ::setenv("FERRY_CONFIG", conf.c_str(), 1);
    }
    ~shared_hosts() {
        group.stop();
        fs::remove_all(dir);
    }
    const hosts::test_host& host(int i) const { return group.hosts()[i]; }
    std::string name(int i) const { return fmt::format("ssh://root@127.0.0.1:{}", host(i).port()); }
    std::string machines() const { return group.machines_file().string(); }
};

shared_hosts& hosts_fixture() {
    static shared_hosts h;
    return h;
}

}  // namespace

BOOST_AUTO_TEST_CASE(test_passes_on_two_real_hosts) {
    auto& h = hosts_fixture();
    auto r = ferry_cli({"test", h.machines()});
    BOOST_TEST_MESSAGE("ferry test: " << r.out << r.err);
    BOOST_TEST(r.status == 0, r.out << r.err);
    BOOST_TEST(r.out == fmt::format("✔ {}\n✔ {}\n", h.name(0), h.name(1)));
    // The import check left nothing behind: the hosts' stores hold no ferry-test item.
    for (int i = 0; i < 2; ++i) {
        std::string listing;
        h.host(i).run("ls /nix/store", &listing);
        BOOST_TEST(listing.find("ferry-test-") == std::string::npos, listing);
    }
}

BOOST_AUTO_TEST_CASE(test_reports_a_wrong_pinned_host_key) {
    auto& h = hosts_fixture();
    // host1's line with host2's key in the 8th column.
    fs::path file = h.dir / "wrong-key.machines";
    std::string line = h.host(0).nix_machine_line();
    line = line.substr(0, line.rfind(' ') + 1) + h.host(1).host_key_base64();
    write(file, line + "\n");
    auto r = ferry_cli({"test", file.string()});
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.out.starts_with(fmt::format("✗ {}: host key: ", h.name(0))), r.out);
    BOOST_TEST(r.out.find("mismatch") != std::string::npos, r.out);
    BOOST_TEST(lines(r.out).size() == 1u);
}

BOOST_AUTO_TEST_CASE(test_and_status_report_a_stopped_host) {
    auto& h = hosts_fixture();
    auto gone = hosts::test_host::start(h.dir / "gone", "gone");
    std::string gone_line = gone.nix_machine_line();
    std::string gone_name = fmt::format("ssh://root@127.0.0.1:{}", gone.port());
    gone.stop();
    fs::path file = h.dir / "with-stopped.machines";
    write(file, h.host(0).nix_machine_line() + "\n" + gone_line + "\n");

    auto r = ferry_cli({"test", file.string(), "--timeout", "20"});
    BOOST_TEST(r.status == 1);
    auto out = lines(r.out);
    BOOST_TEST_REQUIRE(out.size() == 2u, r.out);
    BOOST_TEST(out[0] == "✔ " + h.name(0));
    BOOST_TEST(out[1].starts_with(fmt::format("✗ {}: connect: ", gone_name)), out[1]);

    auto s = ferry_cli({"status", file.string(), "--json", "--timeout", "5"});
    BOOST_TEST(s.status == 1, s.err);
    auto doc = nlohmann::json::parse(s.out);
    BOOST_TEST_REQUIRE(doc["machines"].size() == 2u);
    BOOST_TEST(doc["machines"][0]["answered"] == true);
    BOOST_TEST(doc["machines"][1]["answered"] == false);
    BOOST_TEST(doc["machines"][1]["error"].is_string());
    BOOST_TEST(doc["machines"][1]["cores"].is_null());
}

BOOST_AUTO_TEST_CASE(regex_selects_machines_by_name) {
    auto& h = hosts_fixture();
    auto r = ferry_cli({"test", h.machines(), fmt::format(":{}$", h.host(1).port())});
    BOOST_TEST(r.status == 0, r.err);
    BOOST_TEST(r.out == fmt::format("✔ {}\n", h.name(1)));

    auto none = ferry_cli({"status", h.machines(), "no-such-machine"});
    BOOST_TEST(none.status == 2);
    BOOST_TEST(none.err.find("no machine") != std::string::npos, none.err);

    auto bad = ferry_cli({"test", h.machines(), "("});
    BOOST_TEST(bad.status == 2);
    BOOST_TEST(bad.err.find("REGEX") != std::string::npos, bad.err);
}

BOOST_AUTO_TEST_CASE(status_json_has_sane_values_slots_and_backoff) {
    auto& h = hosts_fixture();
    // One of host1's slots taken as a hook would take it; host2 in backoff.
    schedule::machine m1{"127.0.0.1", h.host(0).port(), 1, 1.0, 0.8};
    schedule::machine m2{"127.0.0.1", h.host(1).port(), 1, 1.0, 0.8};
    auto held = schedule::try_acquire_slot(h.state, m1);
    BOOST_TEST_REQUIRE(held.has_value());
    schedule::backoff_store(h.state).record_failure(m2, "test: unreachable");

    auto r = ferry_cli({"status", h.machines(), "--json"});
    held->release();
    schedule::backoff_store(h.state).record_success(m2);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    auto doc = nlohmann::json::parse(r.out);
    BOOST_TEST(doc["file"] == h.machines());
    auto& ms = doc["machines"];
    BOOST_TEST_REQUIRE(ms.size() == 2u);
    for (int i = 0; i < 2; ++i) {
        auto& m = ms[i];
        BOOST_TEST(m["name"] == h.name(i));
        BOOST_TEST(m["answered"] == true);
        BOOST_TEST(m["error"].is_null());
        BOOST_TEST(m["cores"].get<int>() >= 1);
        BOOST_TEST(m["free_bytes"].get<std::uint64_t>() > 0u);
        BOOST_TEST(m["load_per_core"].get<double>() >= 0.0);
        BOOST_TEST(std::abs(m["clock_offset_seconds"].get<double>()) < 5.0);  // same box
        BOOST_TEST(!m["host_name"].get<std::string>().empty());
        BOOST_TEST(m["kernel"].get<std::string>().starts_with("Linux"));
        BOOST_TEST(!m["arch"].get<std::string>().empty());
        BOOST_TEST((std::find(m["tools"].begin(), m["tools"].end(), "nix-store") != m["tools"].end()));
        BOOST_TEST(m["slots"]["max"] == 1);
    }
    BOOST_TEST(ms[0]["slots"]["in_use"] == 1);
    BOOST_TEST(ms[1]["slots"]["in_use"] == 0);
    BOOST_TEST(ms[0]["backoff"].is_null());
    BOOST_TEST_REQUIRE(ms[1]["backoff"].is_object());
    BOOST_TEST(ms[1]["backoff"]["failures"] == 1);
    BOOST_TEST(ms[1]["backoff"]["last_error"] == "test: unreachable");

    // The table: a header and one row per machine, the held slot shown.
    auto t = ferry_cli({"status", h.machines()});
    BOOST_TEST(t.status == 0, t.err);
    auto rows = lines(t.out);
    BOOST_TEST_REQUIRE(rows.size() == 3u, t.out);
    BOOST_TEST(rows[0].starts_with("NAME"));
    BOOST_TEST(rows[1].find(h.name(0)) == 0u);
}

BOOST_AUTO_TEST_CASE(machines_scm_input) {
    auto& h = hosts_fixture();
    fs::path scm = h.dir / "machines.scm";
    std::string text = ";; written by test_ops for the test hosts\n(list\n";
    for (int i = 0; i < 2; ++i)
        text += fmt::format(
            " (build-machine\n  (name \"127.0.0.1\")\n  (port {})\n  (systems (list \"x86_64-linux\"))\n"
            "  (user \"root\")\n  (private-key \"{}\")\n  (host-key \"{}\"))\n",
            h.host(i).port(), h.host(i).client_key().string(), h.host(i).host_key_line());
    write(scm, text + ")\n");

    auto s = ferry_cli({"status", scm.string(), "--json"});
    BOOST_TEST_REQUIRE(s.status == 0, s.err);
    auto doc = nlohmann::json::parse(s.out);
    BOOST_TEST_REQUIRE(doc["machines"].size() == 2u);
    for (auto& m : doc["machines"]) {
        BOOST_TEST(m["name"] == "127.0.0.1");
        BOOST_TEST(m["answered"] == true);
        BOOST_TEST(m["cores"].get<int>() >= 1);
    }
    // The test hosts run Nix, not Guix: connect, host key and auth pass; as the hook
    // would, ferry test drives them through nix-store --serve (remote-flavour auto),
    // and the store step says why that cannot work here: the local Guix store is
    // /gnu/store (no NIX_STORE_DIR), the machines' is /nix/store.
    auto t = ferry_cli({"test", scm.string()});
    BOOST_TEST(t.status == 1);
    for (const auto& l : lines(t.out)) {
        BOOST_TEST(l.starts_with("✗ 127.0.0.1: store: "), l);
        BOOST_TEST(l.find("/gnu/store/") != std::string::npos, l);
        BOOST_TEST(l.find("is not in the Nix store") != std::string::npos, l);
    }
}

BOOST_AUTO_TEST_CASE(bad_machines_files_name_file_and_line) {
    auto& h = hosts_fixture();
    fs::path nix = h.dir / "bad.machines";
    write(nix, "# comment\nssh://root@127.0.0.1 x86_64-linux - notanumber\n");
    auto r = ferry_cli({"test", nix.string()});
    BOOST_TEST(r.status == 2);
    BOOST_TEST(r.out.empty());
    BOOST_TEST(r.err.find(nix.string() + ":2:") != std::string::npos, r.err);

    fs::path scm = h.dir / "bad.scm";
    write(scm, "(list\n (build-machine (name \"x\")))\n");
    auto s = ferry_cli({"status", scm.string()});
    BOOST_TEST(s.status == 2);
    BOOST_TEST(s.err.find(scm.string() + ":2:") != std::string::npos, s.err);

    auto missing = ferry_cli({"status", (h.dir / "absent").string()});
    BOOST_TEST(missing.status == 2);
    BOOST_TEST(missing.err.find("does not exist") != std::string::npos, missing.err);

    auto usage = ferry_cli({"test", "--no-such-option"});
    BOOST_TEST(usage.status == 2);
}

BOOST_AUTO_TEST_CASE(decompressors_missing_zstd_warns_or_fails_by_codec) {
    auto& h = hosts_fixture();
    auto host = hosts::test_host::start(h.dir / "nozstd", "nozstd");
    // Take zstd away inside the host's mount namespace (test-hosts.md): exec fails with 126.
    BOOST_TEST_REQUIRE(host.run("mount --bind /dev/null /usr/bin/zstd") == 0);
    fs::path file = h.dir / "nozstd.machines";
    write(file, host.nix_machine_line() + "\n");
    std::string name = fmt::format("ssh://root@127.0.0.1:{}", host.port());

    // codec auto: usable without zstd (xz is used for the transfers), with a warning.
    auto r = ferry_cli({"test", file.string()});
    BOOST_TEST(r.status == 0, r.out << r.err);
    BOOST_TEST(r.out == "✔ " + name + "\n");
    BOOST_TEST(r.err.find("zstd is not installed") != std::string::npos, r.err);

    // ferry.conf asks for zstd on this machine: then it is a failure of that step.
    fs::path conf = h.dir / "zstd.conf";
    write(conf, fmt::format("state-dir = {}\n[machine 127.0.0.1]\ncodec = zstd:1\n", h.state.string()));
    ::setenv("FERRY_CONFIG", conf.c_str(), 1);
    auto z = ferry_cli({"test", file.string()});
    ::setenv("FERRY_CONFIG", h.conf.c_str(), 1);
    BOOST_TEST(z.status == 1);
    BOOST_TEST(z.out.starts_with("✗ " + name + ": decompressors: "), z.out);
    BOOST_TEST(z.out.find("zstd") != std::string::npos, z.out);
}

// NIX_SSHOPTS reaches the operators' commands as it reaches the hook: the machine
// line has no identity ('-'), the key comes from `-i`; without it the login fails
// (the host accepts only that key). Ignored words are named once on stderr.
BOOST_AUTO_TEST_CASE(status_honours_nix_sshopts) {
    auto& h = hosts_fixture();
    auto file = h.dir / "no-identity.machines";
    write(file, fmt::format("ssh://root@127.0.0.1:{} x86_64-linux - 1 1 - - {}\n", h.host(0).port(),
                            h.host(0).host_key_base64()));
    ::setenv("NIX_SSHOPTS", ("-x -i " + h.host(0).client_key().string() + " -o StrictHostKeyChecking=no").c_str(), 1);
    auto with = ferry_cli({"status", file.string()});
    ::unsetenv("NIX_SSHOPTS");
    auto without = ferry_cli({"status", file.string()});
    BOOST_TEST_MESSAGE("with: " << with.out << with.err << "\nwithout: " << without.out << without.err);
    BOOST_TEST(with.status == 0, with.out << with.err);
    BOOST_TEST(with.err.find("ferry status: warning: NIX_SSHOPTS: ignored: -o StrictHostKeyChecking=no: ferry always "
                             "checks host keys") != std::string::npos,
               with.err);
    BOOST_TEST(without.status == 1, without.out << without.err);
    BOOST_TEST(without.err.find("NIX_SSHOPTS") == std::string::npos, without.err);
}
