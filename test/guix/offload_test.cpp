// A whole Guix offload: build/ferry driven as guix-daemon drives its hook, against
// a real sshd test host. Guix itself cannot be installed here, so both `guix`
// programs are clearly named TEST SHIMS on top of Nix 2.8's nix-store (same export
// bundle format; see docs/guix.md for what this does and does not prove):
//   - the remote one (ferry.conf `guix-program`) implements `guix archive
//     --missing/--import/--export` and `guix build -r ROOT --max-silent-time=N
//     --timeout=N DRV`;
//   - the local one (FERRY_GUIX) implements `guix archive --export`.
// The local store is a private Nix store bound over /nix in the hook's mount
// namespace, with Guix's variables pointing at it.
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include <fmt/core.h>

#include "ferry/hosts/test_host.hpp"
#include "guix/daemon_play.hpp"
#include "support/nix_build.hpp"

using namespace guix_test;
using namespace ferry::hosts;

namespace {

const char* remote_shim =
    "#!/bin/sh\n"
    "# TEST SHIM standing in for `guix` on a build machine, on top of Nix 2.8's nix-store.\n"
    "case \"$1 $2\" in\n"
    "'archive --missing')\n"
    "  while IFS= read -r p; do /usr/bin/nix-store --check-validity \"$p\" >/dev/null 2>&1 || echo \"$p\"; done\n"
    "  exit 0 ;;\n"
    "'archive --import') exec /usr/bin/nix-store --import >/dev/null ;;\n"
    "# guix-daemon signs what it exports: the signer shim adds what nix-store leaves out.\n"
    "'archive --export') shift 2; /usr/bin/nix-store --export \"$@\" | \"${0%/*}/guix-sign-export\"; exit $? ;;\n"
    "esac\n"
    "[ \"$1\" = build ] || { echo \"guix: TEST SHIM: unsupported: $*\" >&2; exit 2; }\n"
    "shift\n"
    "root= msl=0 to=0 drv=\n"
    "while [ $# -gt 0 ]; do\n"
    "  case \"$1\" in\n"
    "  -r) root=$2; shift 2 ;;\n"
    "  --max-silent-time=*) msl=${1#*=}; shift ;;\n"
    "  --timeout=*) to=${1#*=}; shift ;;\n"
    "  -*) echo \"guix build: error: TEST SHIM: unsupported option $1\" >&2; exit 2 ;;\n"
    "  *) drv=$1; shift ;;\n"
    "  esac\n"
    "done\n"
    "echo \"shim-argv: build -r $root --max-silent-time=$msl --timeout=$to $drv\" >> \"${0%/*}/calls\"\n"
    "/usr/bin/nix-store --realise \"$drv\" --add-root \"$root\" --max-silent-time \"$msl\" --timeout \"$to\" "
    ">/dev/null && exit 0\n"
    "echo \"guix build: error: build of \\`$drv' failed\" >&2\n"
    "exit 1\n";

const char* local_shim =
    "#!/bin/sh\n"
    "# TEST SHIM standing in for the local `guix` (ferry runs only `guix archive --export`).\n"
    "[ \"$1 $2\" = 'archive --export' ] || { echo \"guix: TEST SHIM: unexpected: $*\" >&2; exit 2; }\n"
    "shift 2\n"
    "exec /usr/bin/nix-store --export \"$@\"\n";

void write_exec(const std::filesystem::path& p, const std::string& text) {
    std::ofstream(p) << text;
    ::chmod(p.c_str(), 0755);
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < s.size()) {
        auto nl = s.find('\n', pos);
        if (nl == std::string::npos) nl = s.size();
        if (nl > pos) out.push_back(s.substr(pos, nl - pos));
        pos = nl + 1;
    }
    return out;
}

struct setup {
    test_host host = test_host::start(temporary_directory("ferry-guix-host"), "guixhost");
    local_store local = local_store::create(temporary_directory("ferry-guix-local"));
    temp_dir t;
    std::string nonce;

    setup() {
        std::random_device rd;
        nonce = fmt::format("{:08x}{:08x}", rd(), rd());
        write_exec(host.directory() / "guix-shim", remote_shim);
        write_exec(t.path / "local-guix", local_shim);
        std::filesystem::create_directories(t.path / "etc");
        make_signing_key();
        std::ofstream(t.path / "etc/machines.scm") << fmt::format(
            "(list (build-machine\n"
            "       (name \"127.0.0.1\")\n"
            "       (port {})\n"
            "       (systems (list \"x86_64-linux\"))\n"
            "       (user \"root\")\n"
            "       (overload-threshold #f)  ; the test box is busy compiling\n"
            "       (private-key \"{}\")\n"
            "       (host-key \"{}\")))\n",
            host.port(), host.client_key().string(), host.host_key_line());
        std::ofstream(t.path / "ferry.conf") << fmt::format(
            "[machine 127.0.0.1]\nguix-program = {}\nremote-state-dir = /nix/var/nix\ncodec = zstd:1\n",
            (host.directory() / "guix-shim").string());
    }

    // The build machine's signing key (made by the signer shim with libgcrypt, as
    // `guix archive --generate-key`), and the local ACL that authorizes it, as
    // `guix archive --authorize` writes it.
    void make_signing_key() {
        const auto signer = std::filesystem::path(FERRY_BINARY_DIR) / "ferry-test-guix-sign";
        const auto keys = host.directory() / "guix-key";
        std::filesystem::create_directories(keys);
        BOOST_TEST_REQUIRE(std::system((signer.string() + " keygen " + keys.string()).c_str()) == 0);
        write_exec(host.directory() / "guix-sign-export",
                   fmt::format("#!/bin/sh\nexec {} export {} {}\n", signer.string(),
                               (keys / "signing-key.sec").string(), (keys / "signing-key.pub").string()));
        std::ifstream pub(keys / "signing-key.pub");
        std::string key((std::istreambuf_iterator<char>(pub)), std::istreambuf_iterator<char>());
        std::ofstream(t.path / "etc/acl") << "(acl (entry " << key << " (tag (guix import))))\n";
    }

    std::map<std::string, std::string> env() const {
        auto e = guix_env(t.path);
        e["NIX_STORE_DIR"] = "/nix/store";
        e["GUIX_STATE_DIRECTORY"] = "/nix/var/nix";  // inside the hook's namespace: the local store's
        e["FERRY_GUIX"] = (t.path / "local-guix").string();
        return e;
    }

    // Instantiates a derivation in the local store; returns drv, its inputs line, outputs line.
    // `extra_input`: a file or directory added to the store as the derivation's `big`.
    std::tuple<std::string, std::string, std::string> instantiate(const std::string& script,
                                                                  const std::string& extra_input = "") {
        auto expr = local.directory() / ("d-" + std::to_string(++count_) + ".nix");
        const std::string big = extra_input.empty() ? "" : fmt::format(
            "big = builtins.path {{ path = {}; name = \"ferry-guix-big-{}\"; }};", extra_input, nonce);
        std::ofstream(expr) << fmt::format(
            "let src = builtins.toFile \"ferry-guix-input-{0}\" \"input {0}\\n\"; in\n"
            "derivation {{ name = \"ferry-guix-{0}-{1}\"; system = \"x86_64-linux\"; builder = \"/bin/sh\";\n"
            "  args = [ \"-c\" \"{2}\" ]; inherit src; {3} }}\n",
            nonce, count_, script, big);
        std::string drv, err;
        BOOST_TEST_REQUIRE(local.run("/usr/bin/nix-instantiate " + expr.string(), &drv, &err) == 0, err);
        drv = trimmed(drv);
        std::string closure, outs;
        // build.cc: inputs = closure of the input paths + closure of the .drv.
        BOOST_TEST_REQUIRE(local.run("/usr/bin/nix-store -qR " + drv, &closure) == 0);
        BOOST_TEST_REQUIRE(local.run("/usr/bin/nix-store -q --outputs " + drv, &outs) == 0);
        std::string inputs_line, outputs_line;
        for (const auto& p : lines(closure)) inputs_line += p + " ";
        for (const auto& p : lines(outs)) outputs_line += p + " ";
        return {drv, inputs_line, outputs_line};
    }

private:
    int count_ = 0;
};

struct finished_offload {
    int status = -1;
    std::string client, log;
};

// Plays guix-daemon for one accepted derivation (build.cc: request, "# accept",
// inputs line, outputs line, close) and waits for the hook to exit.
finished_offload offload_accepted(setup& s, const std::string& drv, const std::string& inputs,
                                  const std::string& outputs, const std::string& max_silent_time,
                                  const std::string& trace) {
    daemon_side d(ferry_binary(), {"offload", "x86_64-linux", max_silent_time, trace, "0"}, s.env(),
                  s.local.store_root());
    d.write_line("0 x86_64-linux " + drv + " ");
    auto reply = d.read_reply();
    BOOST_TEST_REQUIRE(reply.value_or("<eof>") == "accept", d.client);
    d.write_line(inputs);
    d.write_line(outputs);
    d.close_in();
    finished_offload f;
    f.status = d.wait(std::chrono::seconds(60));
    f.client = d.drain();
    f.log = d.read_log();
    return f;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(guix_offload)

BOOST_AUTO_TEST_CASE(full_offload_through_guix_shims_on_a_test_host) {
    setup s;
    auto [drv, inputs, outputs] = s.instantiate("echo building-$src; /bin/cat $src > $out");
    auto [status, client, log] = offload_accepted(s, drv, inputs, outputs, "20", "1");
    BOOST_TEST_MESSAGE("client saw:\n" << client << "log:\n" << log);
    BOOST_TEST_REQUIRE(status == 0, client);

    const std::string out = trimmed(outputs);
    BOOST_TEST(client.find("@ build-remote " + drv + " 127.0.0.1\n") != std::string::npos, client);
    BOOST_TEST(client.find("ferry: sent ") != std::string::npos, client);  // progress for max-silent-time
    BOOST_TEST(log.find("building-") != std::string::npos, log);          // the build log came on fd 4
    // The output is valid in the local store (registered by ferry) with its content.
    std::string content;
    BOOST_TEST(s.local.run("/usr/bin/nix-store --check-validity " + out) == 0);
    BOOST_TEST(s.local.run("/bin/cat " + out, &content) == 0);
    BOOST_TEST(content == "input " + s.nonce + "\n");
    // The remote ran guix build with the daemon's limits, its root under gcroots/ferry-*.
    std::ifstream calls(s.host.directory() / "calls");
    std::string call((std::istreambuf_iterator<char>(calls)), std::istreambuf_iterator<char>());
    BOOST_TEST(call.find("--max-silent-time=20 --timeout=0 " + drv) != std::string::npos, call);
    BOOST_TEST(call.find(" -r /nix/var/nix/gcroots/") != std::string::npos, call);
    BOOST_TEST(call.find("/ferry-") != std::string::npos, call);
    // ... and the roots are gone afterwards.
    std::string roots;
    s.host.run("find /nix/var/nix/gcroots", &roots);
    BOOST_TEST(roots.find("ferry-") == std::string::npos, roots);
}

// The uploads' signed exports come from the local daemon over its socket
// (worker protocol export-path with sign, as offload.scm's send-files asks
// guix-daemon). No guix-daemon can run here: the local daemon is a real Nix 2.8
// nix-daemon on the local store (Nix dialect; it ignores the sign flag, and the
// remote TEST SHIM's import does not check signatures). No local guix is
// configured, so the upload cannot have come from `guix archive --export`.
BOOST_AUTO_TEST_CASE(uploads_come_from_the_local_daemon_over_its_socket) {
    setup s;
    std::ofstream(s.t.path / "ferry.conf") << fmt::format(
        "log-level = debug\n[machine 127.0.0.1]\nguix-program = {}\nremote-state-dir = /nix/var/nix\ncodec = zstd:1\n",
        (s.host.directory() / "guix-shim").string());
    const auto pid_file = s.t.path / "daemon.pid";
    BOOST_TEST_REQUIRE(s.local.run(fmt::format("/usr/bin/setsid /usr/bin/nix-daemon </dev/null >{0}/daemon.log 2>&1 & "
                                               "echo $! > {1}",
                                               s.t.path.string(), pid_file.string())) == 0);
    pid_t daemon = 0;
    std::ifstream(pid_file) >> daemon;
    BOOST_TEST_REQUIRE(daemon > 0);
    ferry::test_support::stopped_at_exit stop{daemon};
    for (int i = 0; i < 100 && s.local.run("/usr/bin/test -S /nix/var/nix/daemon-socket/socket") != 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));

    auto [drv, inputs, outputs] = s.instantiate("echo building-$src; /bin/cat $src > $out");
    auto env = s.env();
    env.erase("FERRY_GUIX");
    env["GUIX_DAEMON_SOCKET"] = "/nix/var/nix/daemon-socket/socket";
    daemon_side d(ferry_binary(), {"offload", "x86_64-linux", "20", "0", "0"}, env, s.local.store_root());
    d.write_line("0 x86_64-linux " + drv + " ");
    BOOST_TEST_REQUIRE(d.read_reply().value_or("<eof>") == "accept", d.client);
    d.write_line(inputs);
    d.write_line(outputs);
    d.close_in();
    const int status = d.wait(std::chrono::seconds(60));
    const std::string client = d.drain();
    BOOST_TEST_MESSAGE("client saw:\n" << client);
    BOOST_TEST_REQUIRE(status == 0, client);
    BOOST_TEST(client.find("exports signed by the local Nix daemon at /nix/var/nix/daemon-socket/socket") !=
                   std::string::npos,
               client);
    BOOST_TEST(client.find("ferry: sent 2/2 items") != std::string::npos, client);  // the input and the .drv
    const std::string out = trimmed(outputs);
    BOOST_TEST(s.local.run("/usr/bin/nix-store --check-validity " + out) == 0);
    BOOST_TEST(s.host.run("/usr/bin/nix-store --check-validity " + drv) == 0);  // imported there
}

// Codec auto on a Guix machine: an upload of >= 64 MiB measures the link and
// weighs the codecs on a sample (as for Nix machines) instead of a fixed zstd:3.
BOOST_AUTO_TEST_CASE(auto_codec_measures_the_link_for_a_large_upload) {
    setup s;
    std::ofstream(s.t.path / "ferry.conf") << fmt::format(
        "log-level = debug\n[machine 127.0.0.1]\nguix-program = {}\nremote-state-dir = /nix/var/nix\ncodec = auto\n",
        (s.host.directory() / "guix-shim").string());
    {
        std::mt19937_64 rng(7);
        std::ofstream big(s.t.path / "big", std::ios::binary);
        std::vector<std::uint64_t> block(1 << 17);  // 1 MiB
        for (int i = 0; i < 70; ++i) {
            for (auto& w : block) w = rng();
            big.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(block.size() * 8));
        }
    }
    auto [drv, inputs, outputs] = s.instantiate("/bin/cat $big > /dev/null; /bin/cat $src > $out",
                                                (s.t.path / "big").string());
    auto [status, client, log] = offload_accepted(s, drv, inputs, outputs, "0", "0");
    BOOST_TEST_MESSAGE("client saw:\n" << client);
    BOOST_TEST_REQUIRE(status == 0, client);
    BOOST_TEST(client.find("ferry: auto: link ") != std::string::npos, client);
    BOOST_TEST(client.find("predicted") != std::string::npos, client);
    BOOST_TEST(s.local.run("/usr/bin/nix-store --check-validity " + trimmed(outputs)) == 0);
}

// The local `guix archive --export` may say a lot on stderr (warnings, a
// backtrace) while it exports: read beside its stdout, it never blocks.
BOOST_AUTO_TEST_CASE(a_chatty_local_exporter_does_not_stall_the_upload) {
    setup s;
    write_exec(s.t.path / "local-guix",
               "#!/bin/sh\n"
               "# TEST SHIM: the local `guix`, 256 KiB of warnings on stderr before the export.\n"
               "[ \"$1 $2\" = 'archive --export' ] || exit 2\n"
               "shift 2\n"
               "/usr/bin/head -c 262144 /dev/zero | /usr/bin/tr '\\0' w >&2\n"
               "exec /usr/bin/nix-store --export \"$@\"\n");
    auto [drv, inputs, outputs] = s.instantiate("/bin/cat $src > $out");
    auto [status, client, log] = offload_accepted(s, drv, inputs, outputs, "0", "0");
    BOOST_TEST(status == 0, client);
    BOOST_TEST(s.local.run("/usr/bin/nix-store --check-validity " + trimmed(outputs)) == 0);
}

// `guix archive --missing` on the machine may name only paths it was asked about:
// anything else would be exported and signed with the local key on its say-so.
BOOST_AUTO_TEST_CASE(a_machine_naming_paths_it_was_not_asked_about_gets_nothing) {
    setup s;
    const std::string stranger = "/nix/store/0000000000000000000000000000000a-not-asked";
    auto shim = std::string(remote_shim);
    const std::string loop = "  while IFS= read -r p; do /usr/bin/nix-store --check-validity \"$p\" >/dev/null 2>&1 || echo \"$p\"; done\n";
    BOOST_TEST_REQUIRE(shim.find(loop) != std::string::npos);
    shim.replace(shim.find(loop), loop.size(), loop + "  echo " + stranger + "\n");
    write_exec(s.host.directory() / "guix-shim", shim);
    auto [drv, inputs, outputs] = s.instantiate("/bin/cat $src > $out");
    auto [status, client, log] = offload_accepted(s, drv, inputs, outputs, "0", "0");
    BOOST_TEST(status == 1, client);
    BOOST_TEST(client.find(stranger + ", which was not asked about") != std::string::npos, client);
}

// guix-daemon in front, a build machine with Nix and no Guix behind: the probe
// finds nix-store and no guix, so ferry drives the machine with nix-store --serve
// (as Nix's build-remote) while speaking Guix's hook protocol to the daemon and
// writing into the store Guix's variables name. No guix shim takes part.
BOOST_AUTO_TEST_CASE(machine_with_nix_and_no_guix_gets_the_nix_flavour) {
    setup s;
    std::ofstream(s.t.path / "ferry.conf") << "log-level = debug\n[machine 127.0.0.1]\ncodec = zstd:1\n";
    auto [drv, inputs, outputs] = s.instantiate("echo building-$src; /bin/cat $src > $out");
    auto [status, client, log] = offload_accepted(s, drv, inputs, outputs, "20", "1");
    BOOST_TEST_MESSAGE("client saw:\n" << client << "log:\n" << log);
    BOOST_TEST_REQUIRE(status == 0, client);
    BOOST_TEST(client.find("has Nix and no Guix") != std::string::npos, client);
    BOOST_TEST(client.find("@ build-remote " + drv + " 127.0.0.1\n") != std::string::npos, client);
    BOOST_TEST(log.find("building-") != std::string::npos, log);  // the build log came on fd 4
    const std::string out = trimmed(outputs);
    std::string content;
    BOOST_TEST(s.local.run("/usr/bin/nix-store --check-validity " + out) == 0);
    BOOST_TEST(s.local.run("/bin/cat " + out, &content) == 0);
    BOOST_TEST(content == "input " + s.nonce + "\n");
    // Built by the machine's Nix, not by a guix shim; its GC roots are gone.
    BOOST_TEST(s.host.run("/usr/bin/nix-store --check-validity " + out) == 0);
    BOOST_TEST(!std::filesystem::exists(s.host.directory() / "calls"));
    std::string roots;
    s.host.run("find /nix/var/nix/gcroots", &roots);
    BOOST_TEST(roots.find("ferry-") == std::string::npos, roots);
}

BOOST_AUTO_TEST_CASE(outputs_signed_by_an_unauthorized_key_are_not_imported) {
    setup s;
    // The machine's key is no longer in the local ACL: guix-daemon would refuse
    // its exports, so ferry must too, before registering anything.
    std::ofstream(s.t.path / "etc/acl") << "(acl)\n";
    auto [drv, inputs, outputs] = s.instantiate("echo building-$src; /bin/cat $src > $out");
    auto [status, client, log] = offload_accepted(s, drv, inputs, outputs, "0", "0");
    BOOST_TEST(status == 1, client);
    BOOST_TEST(client.find("unauthorized public key") != std::string::npos, client);
    BOOST_TEST(client.find(trimmed(outputs)) != std::string::npos, client);  // names the item
    BOOST_TEST(s.local.run("/usr/bin/nix-store --check-validity " + trimmed(outputs) + " 2>/dev/null") != 0);
    std::string left;
    s.local.run("/bin/ls " + trimmed(outputs) + " 2>&1", &left);
    BOOST_TEST(left.find("No such file") != std::string::npos, left);  // no half-restored output either
}

BOOST_AUTO_TEST_CASE(remote_build_failure_is_permanent_100) {
    setup s;
    auto [drv, inputs, outputs] = s.instantiate("echo about-to-fail; exit 1");
    auto [status, client, log] = offload_accepted(s, drv, inputs, outputs, "0", "0");
    BOOST_TEST(status == 100, client);
    BOOST_TEST(client.find("@ build-remote") == std::string::npos, client);  // trace off
    BOOST_TEST(client.find("failed") != std::string::npos, client);
    BOOST_TEST(s.local.run("/usr/bin/nix-store --check-validity " + trimmed(outputs) + " 2>/dev/null") != 0);
}

BOOST_AUTO_TEST_SUITE_END()
