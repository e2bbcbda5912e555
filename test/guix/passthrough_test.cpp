// ferry installed as $GUIX: every command but the hook goes to the real guix
// untouched (argv, environment, descriptors, stdin), checked with a recorded fake
// real guix (TEST SHIM), and ferry's own commands keep working.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "ferry/cli/guix_command.hpp"
#include "guix/daemon_play.hpp"

using namespace guix_test;
using ferry::cli::classify_invocation;
using ferry::cli::guix_role;

namespace {

// TEST SHIM standing in for the real guix: records how it was run, writes to fd 4, exits 7.
const char* shim_text =
    "#!/bin/sh\n"
    "# TEST SHIM: a fake 'real guix' for ferry's passthrough tests.\n"
    "{\n"
    "  printf 'argv0=%s\\n' \"$0\"\n"
    "  for a in \"$@\"; do printf 'arg=[%s]\\n' \"$a\"; done\n"
    "  printf 'mark=%s\\n' \"$SHIM_MARK\"\n"
    "  if { : >&4; } 2>/dev/null; then echo fd4=open; else echo fd4=closed; fi\n"
    "  printf 'stdin=%s\\n' \"$(cat)\"\n"
    "  printf 'cwd=%s\\n' \"$(pwd)\"\n"
    "  printf 'sid=%s\\n' \"$(ps -o sid= -p $$ | tr -d ' ')\"\n"
    "} > \"$SHIM_RECORD\"\n"
    "echo 'shim says hi on fd 4' >&4\n"
    "echo 'shim stderr line' >&2\n"
    "exit 7\n";

std::filesystem::path make_shim(const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir);
    auto p = dir / "guix";
    std::ofstream(p) << shim_text;
    ::chmod(p.c_str(), 0755);
    return p;
}

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<std::string_view> words(std::initializer_list<std::string_view> w) { return w; }

}  // namespace

BOOST_AUTO_TEST_SUITE(guix_passthrough)

BOOST_AUTO_TEST_CASE(classification) {
    // Named ferry: ferry's own commands stay, the hook forms are ferry's, the rest passes.
    auto as_ferry = [](std::initializer_list<std::string_view> a) {
        auto w = words(a);
        return classify_invocation("/usr/bin/ferry", w);
    };
    BOOST_TEST((as_ferry({"version"}) == guix_role::ferry_command));
    BOOST_TEST((as_ferry({"test", "/etc/guix/machines.scm"}) == guix_role::ferry_command));
    BOOST_TEST((as_ferry({"status"}) == guix_role::ferry_command));
    BOOST_TEST((as_ferry({"bench", "--runs", "1"}) == guix_role::ferry_command));
    BOOST_TEST((as_ferry({"hosts", "up", "2", "/tmp/x"}) == guix_role::ferry_command));
    BOOST_TEST((as_ferry({}) == guix_role::ferry_command));
    BOOST_TEST((as_ferry({"offload", "x86_64-linux", "0", "1", "0"}) == guix_role::offload_hook));
    BOOST_TEST((as_ferry({"offload", "x86_64-linux", "0", "true", "3600"}) == guix_role::offload_hook));
    BOOST_TEST((as_ferry({"x86_64-linux", "3600", "false", "0"}) == guix_role::offload_hook));  // pre-2019
    BOOST_TEST((as_ferry({"offload", "test"}) == guix_role::passthrough));
    BOOST_TEST((as_ferry({"offload", "status", "/etc/guix/machines.scm", "x"}) == guix_role::passthrough));
    BOOST_TEST((as_ferry({"substitute", "--query"}) == guix_role::passthrough));
    BOOST_TEST((as_ferry({"authenticate"}) == guix_role::passthrough));
    BOOST_TEST((as_ferry({"gc", "--list-busy"}) == guix_role::passthrough));
    // Named guix: only the hook is ferry's.
    auto as_guix = [](std::initializer_list<std::string_view> a) {
        auto w = words(a);
        return classify_invocation("/usr/libexec/ferry/guix", w);
    };
    BOOST_TEST((as_guix({"version"}) == guix_role::passthrough));
    BOOST_TEST((as_guix({"help"}) == guix_role::passthrough));
    BOOST_TEST((as_guix({"--version"}) == guix_role::passthrough));
    BOOST_TEST((as_guix({}) == guix_role::passthrough));
    BOOST_TEST((as_guix({"offload", "i686-linux", "7", "1", "99"}) == guix_role::offload_hook));
    // Shapes that are not the pre-2019 hook.
    BOOST_TEST(!ferry::cli::looks_like_hook_operands(words({"build", "0", "1", "0"})));
    BOOST_TEST(!ferry::cli::looks_like_hook_operands(words({"x86_64-linux", "0", "yes", "0"})));
    BOOST_TEST(!ferry::cli::looks_like_hook_operands(words({"-linux", "0", "1", "0"})));
    BOOST_TEST(!ferry::cli::looks_like_hook_operands(words({"x86_64-linux", "0", "1"})));
}

BOOST_AUTO_TEST_CASE(passes_argv_environment_stdin_and_fd4_untouched) {
    temp_dir t;
    auto shim = make_shim(t.path / "real");
    auto env = guix_env(t.path);
    env["FERRY_GUIX"] = shim.string();
    env["SHIM_RECORD"] = (t.path / "record").string();
    env["SHIM_MARK"] = "m a r k";
    // As the daemon runs its substituter: argv[1] is the command.
    daemon_side d(ferry_binary(), {"substitute", "--query", "two words", ""}, env);
    d.write_line("have /gnu/store/abc-x");
    d.close_in();
    BOOST_TEST(d.wait() == 7);  // the real guix's status, unchanged
    auto rec = slurp(t.path / "record");
    BOOST_TEST(rec.find("argv0=" + shim.string() + "\n") != std::string::npos, rec);
    BOOST_TEST(rec.find("arg=[substitute]\narg=[--query]\narg=[two words]\narg=[]\n") != std::string::npos, rec);
    BOOST_TEST(rec.find("mark=m a r k\n") != std::string::npos, rec);
    BOOST_TEST(rec.find("fd4=open\n") != std::string::npos, rec);
    BOOST_TEST(rec.find("stdin=have /gnu/store/abc-x\n") != std::string::npos, rec);
    BOOST_TEST(rec.find("cwd=/\n") != std::string::npos, rec);
    BOOST_TEST(d.read_log() == "shim says hi on fd 4\n");
    BOOST_TEST(d.drain() == "shim stderr line\n");  // nothing of ferry's own
    // ferry touched nothing: no state directory, no ferry files.
    BOOST_TEST(!std::filesystem::exists(t.path / "var"));
}

BOOST_AUTO_TEST_CASE(named_guix_finds_the_real_guix_on_path_skipping_itself) {
    temp_dir t;
    make_shim(t.path / "real");
    std::filesystem::create_directories(t.path / "bin");
    std::filesystem::create_symlink(ferry_binary(), t.path / "bin/guix");
    auto env = guix_env(t.path);
    env["PATH"] = (t.path / "bin").string() + ":" + (t.path / "real").string() + ":/usr/bin:/bin";
    env["SHIM_RECORD"] = (t.path / "record").string();
    {
        daemon_side d((t.path / "bin/guix").string(), {"help"}, env);  // guix help: guix's, not ferry's
        d.close_in();
        BOOST_TEST(d.wait() == 7);
        auto rec = slurp(t.path / "record");
        BOOST_TEST(rec.find("argv0=" + (t.path / "real/guix").string()) != std::string::npos, rec);
        BOOST_TEST(rec.find("arg=[help]") != std::string::npos, rec);
    }
    {
        // `guix offload test` is the real guix's tool.
        daemon_side d((t.path / "bin/guix").string(), {"offload", "test", "/etc/guix/machines.scm"}, env);
        d.close_in();
        BOOST_TEST(d.wait() == 7);
        auto rec = slurp(t.path / "record");
        BOOST_TEST(rec.find("arg=[offload]\narg=[test]\narg=[/etc/guix/machines.scm]\n") != std::string::npos, rec);
    }
}

BOOST_AUTO_TEST_CASE(ferry_commands_stay_ferrys) {
    temp_dir t;
    auto shim = make_shim(t.path / "real");
    auto env = guix_env(t.path);
    env["FERRY_GUIX"] = shim.string();
    env["SHIM_RECORD"] = (t.path / "record").string();
    daemon_side d(ferry_binary(), {"version"}, env);
    d.close_in();
    BOOST_TEST(d.wait() == 0);
    BOOST_TEST(d.drain().rfind("ferry ", 0) == 0, d.client);
    BOOST_TEST(!std::filesystem::exists(t.path / "record"));
}

BOOST_AUTO_TEST_CASE(no_real_guix) {
    temp_dir t;
    auto env = guix_env(t.path);
    env["PATH"] = (t.path / "nothing").string();
    {
        // Named ferry: an unknown command stays a usage error.
        daemon_side d(ferry_binary(), {"frobnicate"}, env);
        d.close_in();
        BOOST_TEST(d.wait() == 2);
        BOOST_TEST(d.drain().find("unknown command 'frobnicate'") != std::string::npos, d.client);
    }
    {
        // FERRY_GUIX naming ferry itself must not loop.
        env["FERRY_GUIX"] = ferry_binary();
        daemon_side d(ferry_binary(), {"substitute", "--query"}, env);
        d.close_in();
        BOOST_TEST(d.wait() == 2);
        BOOST_TEST(d.drain().find("is ferry itself") != std::string::npos, d.client);
    }
}

BOOST_AUTO_TEST_CASE(find_real_guix_order) {
    temp_dir t;
    auto a = make_shim(t.path / "a");
    auto b = make_shim(t.path / "b");
    ferry::cli::real_guix_inputs in;
    in.self = ferry_binary();
    in.path = (t.path / "a").string() + ":" + (t.path / "b").string();
    BOOST_TEST(ferry::cli::find_real_guix(in).value_or("") == a.string());
    in.recorded = b.string();
    BOOST_TEST(ferry::cli::find_real_guix(in).value_or("") == b.string());  // recorded beats PATH
    in.ferry_guix = a.string();
    BOOST_TEST(ferry::cli::find_real_guix(in).value_or("") == a.string());  // FERRY_GUIX beats both
    in.ferry_guix = (t.path / "missing").string();
    std::string why;
    BOOST_TEST(!ferry::cli::find_real_guix(in, &why).has_value());
    BOOST_TEST(why.find("not an executable") != std::string::npos, why);
}

BOOST_AUTO_TEST_SUITE_END()
