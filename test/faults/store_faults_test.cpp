// Fault matrix rows 5, 6, 12 and 13 (issue 10): what a build machine's store does
// wrong, and what the local store's garbage collector does meanwhile. Each case is
// real nix-build -> ferry-build-hook -> a real sshd test host (the shared fixture,
// fixture.hpp), then the invariants. The machine's misbehaviour comes from TEST
// SHIMS named by `?remote-program=` (store_faults_support.hpp) or, for the full
// disk, from a second test host whose /nix/store is a small tmpfs.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <fmt/core.h>

#include "faults/fixture.hpp"
#include "faults/store_faults_support.hpp"
#include "ferry/hosts/test_host.hpp"
#include "support/nix_build.hpp"

namespace fs = std::filesystem;
using namespace ferry;
using namespace ferry::test_support;
using namespace ferry::test_support::faults;

namespace {

// The hook ended with exit status 1 (transient), as Nix reports it.
bool hook_exit_1(const std::string& err) {
    return err.find("exit code 1\n") != std::string::npos || err.find("exit code 1;") != std::string::npos ||
           err.find("exit code 1)") != std::string::npos;
}

// The output path of the single derivation in `expr` (without building it).
std::string output_of(fault_fixture& f, const fs::path& expr) {
    std::string out, err;
    int status = f.env.local.run(
        "/usr/bin/nix-store -q --outputs $(/usr/bin/nix-instantiate " + expr.string() + " 2>/dev/null)", &out, &err);
    BOOST_TEST_REQUIRE(status == 0, "nix-instantiate " << expr << ": " << err);
    auto lines = lines_of(out);
    BOOST_TEST_REQUIRE(lines.size() == 1u, out);
    return lines[0];
}

// A derivation whose output is a small file holding `payload`.
fs::path small_output_expr(fault_fixture& f, const std::string& name, const std::string& payload) {
    return f.write_expr(name, fmt::format(R"(
derivation {{ name = "{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo {1} > $out" ]; }}
)",
                                          name, payload));
}

// Nothing of `out` reached the local store: not valid, no entry, no temporaries.
void nothing_registered(fault_fixture& f, const std::string& out) {
    BOOST_TEST(!f.env.valid_locally(out), out << " was registered locally");
    BOOST_TEST(!fs::exists(f.env.local.store_root() / "store" / fs::path(out).filename()),
               out << " exists in the local store directory");
    auto temps = import_temporaries(f.env.local.store_root() / "store");
    BOOST_TEST(temps.empty(), "import temporaries left: " << temps.size());
}

// One build through a TEST SHIM exporter (`filter` damages `--export`'s output)
// that must fail on receipt: hook exit 1, a message naming the host and the
// receive step, nothing of the output registered locally.
struct shim_build {
    std::string out;  // the derivation's output path
    build_run build;
};
shim_build build_through_export_shim(fault_fixture& f, const std::string& label, const std::string& filter) {
    auto n = nonce();
    auto shim = write_export_shim(f.host.directory(), "nix-store-" + label + "-" + n, filter);
    auto expr = small_output_expr(f, "ferry-" + label + "-" + n, "ferry-payload-" + n);
    shim_build r{output_of(f, expr), {}};
    r.build = f.nix_build(expr, "", machine_line_with_program(f.host, shim));
    const auto& err = r.build.err;
    BOOST_TEST_MESSAGE(err);
    BOOST_TEST(r.build.status != 0);
    BOOST_TEST(hook_exit_1(err), err);
    BOOST_TEST(err.find("ssh://root@127.0.0.1:" + std::to_string(f.host.port())) != std::string::npos, err);
    BOOST_TEST(err.find("receiving outputs: receive from 127.0.0.1") != std::string::npos, err);
    nothing_registered(f, r.out);
    return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(store_faults)

// Row 5: the machine's exporter flips a byte inside a file's contents. The NAR
// still parses; only the machine's own NAR hash (QueryPathInfos) tells: rejected,
// nothing registered, exit 1, the message names the host and the receive step.
BOOST_AUTO_TEST_CASE(row5_corrupt_export_rejected) {
    auto& f = fault_fixture::get();
    auto r = build_through_export_shim(f, "flip", "/usr/bin/perl -0777 -pe 's/ferry-payload-/ferry+payload-/'");
    BOOST_TEST(r.build.err.find("is not what the sender's store records") != std::string::npos, r.build.err);
    BOOST_TEST(valid_on_host(f.host, r.out), "the build ran on the host");
    check_invariants(f, "row 5");
}

// Row 12a: the exported item claims a reference outside its closure (its own
// deriver: valid locally, not a reference on the machine) -> rejected.
BOOST_AUTO_TEST_CASE(row12_forged_reference_rejected) {
    auto& f = fault_fixture::get();
    auto perl = write_shim_file(f.host.directory(), "add-deriver-reference.pl", add_deriver_reference_perl);
    auto r = build_through_export_shim(f, "forge", "/usr/bin/perl " + perl.string());
    BOOST_TEST(r.build.err.find("the bundle gives the references [/nix/store/") != std::string::npos, r.build.err);
    BOOST_TEST(r.build.err.find("the sender's store records []") != std::string::npos, r.build.err);
    check_invariants(f, "row 12, forged reference");
}

// Row 12b: the machine's exporter leaves the output out (an empty bundle) -> a
// clear error naming the missing output, nothing registered.
BOOST_AUTO_TEST_CASE(row12_missing_output_rejected) {
    auto& f = fault_fixture::get();
    const std::string empty_bundle = "printf '\\000\\000\\000\\000\\000\\000\\000\\000'";  // u64 0
    auto r = build_through_export_shim(f, "gone", "/bin/cat >/dev/null; " + empty_bundle);
    const std::string missing = "'" + r.out + "' was asked for but is not valid locally afterwards";
    BOOST_TEST(r.build.err.find(missing) != std::string::npos, r.build.err);
    check_invariants(f, "row 12, missing output");
}

// Row 6: the machine's store is a tmpfs just above min-free-space and the input
// closure is larger than it -> exit 1 saying the disk is full, naming the host;
// the next decision skips the machine (probed afresh: low on disk space) and the
// daemon builds locally.
BOOST_AUTO_TEST_CASE(row6_full_disk_then_skipped) {
    auto& f = fault_fixture::get();
    auto n = nonce();
    hosts::test_host_options o;
    o.name = "fulldisk";
    o.directory = hosts::temporary_directory("ferry-faults-full");
    o.store_tmpfs_bytes = 8 << 20;
    auto full = hosts::test_host::start(o);
    struct restore_conf {  // the shared ferry.conf as it was, whatever happens here
        fs::path file;
        std::string text;
        ~restore_conf() { std::ofstream(file) << text; }
    } restore{f.env.conf, [&] {
                  std::ifstream in(f.env.conf);
                  return std::string(std::istreambuf_iterator<char>(in), {});
              }()};
    std::ofstream(f.env.conf, std::ios::app) << "min-free-space = 4M\n";  // 8 MiB free on the empty tmpfs: usable

    auto big = f.env.local.directory() / ("big-" + n);
    {
        std::ifstream rnd("/dev/urandom", std::ios::binary);
        std::string bytes(12 << 20, '\0');
        rnd.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        std::ofstream(big, std::ios::binary) << bytes;
    }
    auto expr = f.write_expr("ferry-full-" + n, fmt::format(R"(
derivation {{ name = "ferry-full-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  big = builtins.path {{ path = {1}; name = "ferry-big-{0}"; }};
  args = [ "-c" "/usr/bin/wc -c < $big > $out" ]; }}
)",
                                                            n, big.string()));
    const std::string uri = "ssh://root@127.0.0.1:" + std::to_string(full.port());
    auto r = f.nix_build(expr, "", full.nix_machine_line());
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST(r.status != 0);
    BOOST_TEST(hook_exit_1(r.err), r.err);
    BOOST_TEST(r.err.find("disk full on the remote machine") != std::string::npos, r.err);
    BOOST_TEST(r.err.find(uri) != std::string::npos, r.err);
    BOOST_TEST(r.err.find("sending inputs") != std::string::npos, r.err);

    // The next decision: the daemon may build locally; ferry must not pick the full machine.
    auto small = small_output_expr(f, "ferry-after-full-" + n, "after-" + n);
    auto next = f.env.nix_build(small, full.nix_machine_line(), "--max-jobs 1 -vvvv");
    BOOST_TEST_REQUIRE(next.status == 0, next.err);
    BOOST_TEST(next.err.find(uri + ": low on disk space") != std::string::npos, next.err);
    BOOST_TEST(next.err.find("hook reply is 'decline'") != std::string::npos, next.err);
    auto out = next.paths();
    BOOST_TEST_REQUIRE(out.size() == 1u);
    BOOST_TEST(!valid_on_host(full, out[0]), "built on the full machine");

    schedule::machine m;
    m.name = "127.0.0.1";
    m.port = full.port();
    m.max_jobs = 1;
    check_host_invariants(full, f.env.state_dir(), m, "row 6, full machine");
    check_invariants(f, "row 6");
    fs::remove(big);
}

// Row 13: `nix-store --gc` on the local store while an output is half received.
// The machine's export stalls after 256 KiB (shim) until the collector is done;
// the collector deletes an unprotected invalid entry (so it did sweep) but not
// ferry's temp-rooted temporary; the build then succeeds and the output verifies.
BOOST_AUTO_TEST_CASE(row13_gc_during_retrieval) {
    auto& f = fault_fixture::get();
    auto n = nonce();
    const fs::path gate = f.host.directory() / ("gc-gate-" + n);
    auto shim = write_export_shim(
        f.host.directory(), "nix-store-stall-" + n,
        fmt::format("/bin/dd bs=65536 count=4 iflag=fullblock 2>/dev/null; : > {0}.stalled; i=0; "
                    "while [ ! -e {0}.go ] && [ $i -lt 300 ]; do /bin/sleep 0.1; i=$((i+1)); done; /bin/cat",
                    gate.string()));
    auto expr = f.write_expr("ferry-gc-" + n, fmt::format(R"(
derivation {{ name = "ferry-gc-{0}"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out; /usr/bin/head -c 1048576 /dev/urandom > $out/blob; echo {0} > $out/id" ]; }}
)",
                                                          n));
    const fs::path store = f.env.local.store_root() / "store";
    auto run = std::async(std::launch::async,
                          [&] { return f.nix_build(expr, "", machine_line_with_program(f.host, shim)); });
    bool stalled = wait_until([&] { return fs::exists(gate.string() + ".stalled"); });
    bool restoring = stalled && wait_until([&] { return !import_temporaries(store).empty(); });
    std::vector<std::string> before_gc = import_temporaries(store);
    // An invalid entry nobody protects: the collector must delete it.
    const fs::path canary = store / (fake_store_hash(n) + "-ferry-gc-canary");
    fs::create_directories(canary);
    std::ofstream(canary / "file") << n;
    std::string gc_out, gc_err;
    int gc_status = f.env.local.run("/usr/bin/nix-store --gc", &gc_out, &gc_err);
    auto after_gc = import_temporaries(store);
    std::ofstream(gate.string() + ".go") << "go\n";
    auto r = run.get();
    BOOST_TEST_MESSAGE(r.err);
    BOOST_TEST_REQUIRE(stalled, "the export never reached the stall: " << r.err);
    BOOST_TEST(restoring, "no import temporary appeared during the stall");
    BOOST_TEST(gc_status == 0, gc_err);
    BOOST_TEST(!fs::exists(canary), "the collector did not sweep invalid entries: " << gc_err);
    BOOST_TEST(after_gc == before_gc, "the collector deleted ferry's in-flight temporary: " << gc_err);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    auto out = r.paths();
    BOOST_TEST_REQUIRE(out.size() == 1u);
    std::string verify_err;
    BOOST_TEST(f.env.local.run("/usr/bin/nix-store --verify-path " + out[0], nullptr, &verify_err) == 0, verify_err);
    std::string id;
    f.env.local.run("/bin/cat " + out[0] + "/id", &id);
    BOOST_TEST(id == n + "\n");
    BOOST_TEST(import_temporaries(store).empty());
    fs::remove(gate.string() + ".stalled");
    fs::remove(gate.string() + ".go");
    check_invariants(f, "row 13");
}

BOOST_AUTO_TEST_SUITE_END()
