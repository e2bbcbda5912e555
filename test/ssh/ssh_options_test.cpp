// NIX_SSHOPTS parser (pure): what is honoured, what is named as ignored, bad
// input, and the precedence when applied to a machine's session options.
#include <boost/test/unit_test.hpp>

#include <string>

#include "ferry/ssh/ssh_options.hpp"

using namespace std::chrono_literals;
using namespace ferry::ssh;

namespace {

bool mentions(const ssh_command_options& o, const std::string& text) {
    for (const auto& l : o.ignored)
        if (l.find(text) != std::string::npos) return true;
    return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ssh_options)

BOOST_AUTO_TEST_CASE(honoured_options_in_every_spelling) {
    auto o = parse_ssh_command_options(
        "  -xa -p 2222\t-i /root/.ssh/id_build -l builder -F /etc/ferry/ssh_config "
        "-oUserKnownHostsFile=/etc/ferry/known_hosts -o ConnectTimeout=7 -o serveraliveinterval=20 "
        "-o ServerAliveCountMax=3 -o StrictHostKeyChecking=yes -T -q\n");
    BOOST_TEST(o.ignored.empty(), o.ignored.front());
    BOOST_TEST(o.port.value() == 2222);
    BOOST_TEST(o.identity.value() == "/root/.ssh/id_build");
    BOOST_TEST(o.user.value() == "builder");
    BOOST_TEST(o.config_file.value() == "/etc/ferry/ssh_config");
    BOOST_TEST(o.known_hosts.value() == "/etc/ferry/known_hosts");
    BOOST_TEST(o.connect_timeout.value().count() == 7000);
    BOOST_TEST(o.keepalive_interval.value().count() == 20000);
    BOOST_TEST(o.keepalive_count_max.value() == 3);

    // getopt forms: the argument glued to the letter, and after flags in one word.
    auto g = parse_ssh_command_options("-p2200 -xai/k -oPort=1 -o IdentityFile=/other -o User=u");
    BOOST_TEST(g.port.value() == 2200);
    BOOST_TEST(g.identity.value() == "/k");
    BOOST_TEST(g.user.value() == "u");
    // The first value wins (as ssh does); the later ones are named.
    BOOST_TEST(mentions(g, "-o Port=1: given before"));
    BOOST_TEST(mentions(g, "-o IdentityFile=/other: given before"));

    BOOST_TEST(!parse_ssh_command_options("").honours_anything());
    BOOST_TEST(parse_ssh_command_options("").ignored.empty());
}

BOOST_AUTO_TEST_CASE(never_weakens_host_key_checking) {
    for (const char* v : {"no", "accept-new", "off", "ask", "NO"}) {
        auto o = parse_ssh_command_options(std::string("-o StrictHostKeyChecking=") + v);
        BOOST_TEST(o.ignored.size() == 1u);
        BOOST_TEST(mentions(o, "ferry always checks host keys"), v);
        BOOST_TEST(!o.honours_anything());
    }
    // Applying it leaves a pinned key and an empty known_hosts as they were.
    session_options s;
    s.host_key = "ssh-ed25519 AAAA";
    apply_ssh_command_options(parse_ssh_command_options("-o StrictHostKeyChecking=no"), s);
    BOOST_TEST(s.host_key == "ssh-ed25519 AAAA");
    BOOST_TEST(s.known_hosts.empty());
}

BOOST_AUTO_TEST_CASE(unsupported_and_malformed_words_are_named) {
    auto o = parse_ssh_command_options(
        "-C -J jump.example.org -c aes128-ctr -4 -v -o ProxyCommand=nc -o Compression=yes -o Ciphers=x "
        "-p abc -p 0 -p 65536 -o Port -o =x -o Port= -o ConnectTimeout=-1 -o ServerAliveCountMax=0 "
        "build1 -- -");
    for (const char* w : {"-C:", "-J jump.example.org:", "-c aes128-ctr:", "-4:", "-v:", "-o ProxyCommand=nc:",
                          "-o Compression=yes:", "-o Ciphers=x:", "-p abc: expected a port", "-p 0:", "-p 65536:",
                          "-o Port: expected -o Key=Value", "-o =x:", "-o Port=: empty value",
                          "-o ConnectTimeout=-1: expected whole seconds", "-o ServerAliveCountMax=0:",
                          "build1: not an option", "--: not an option", "-: not an option"})
        BOOST_TEST(mentions(o, w), w);
    BOOST_TEST(!o.honours_anything());

    // An option letter at the very end without its argument.
    auto e = parse_ssh_command_options("-p 22 -i");
    BOOST_TEST(e.port.value() == 22);
    BOOST_TEST(mentions(e, "-i: missing its argument"));
    BOOST_TEST(!e.identity);

    // Oversized input: ignored whole, without splitting it (bounded work).
    std::string huge(max_ssh_command_options_size + 1, ' ');
    huge.replace(0, 7, "-p 2222");
    auto h = parse_ssh_command_options(huge);
    BOOST_TEST(!h.port);
    BOOST_TEST(h.ignored.size() == 1u);
    BOOST_TEST(mentions(h, "ignored whole"));

    // Every prefix of a valid text parses without throwing.
    const std::string text = "-xap 2222 -oConnectTimeout=5 -i /k -o StrictHostKeyChecking=no";
    for (std::size_t n = 0; n <= text.size(); ++n) BOOST_CHECK_NO_THROW(parse_ssh_command_options(text.substr(0, n)));
}

BOOST_AUTO_TEST_CASE(machine_line_values_win) {
    auto o = parse_ssh_command_options("-p 2222 -i /opts/key -l optuser -o ConnectTimeout=3 "
                                       "-o UserKnownHostsFile=/opts/known -o ServerAliveInterval=9");
    session_options from_line;
    from_line.port = 22022;
    from_line.user = "lineuser";
    from_line.identity = "/line/key";
    from_line.connect_timeout = 10s;
    apply_ssh_command_options(o, from_line);
    BOOST_TEST(from_line.port.value() == 22022);
    BOOST_TEST(from_line.user == "lineuser");
    BOOST_TEST(from_line.identity == "/line/key");
    BOOST_TEST(from_line.connect_timeout.count() == 3000);  // the smaller one
    BOOST_TEST(from_line.known_hosts == "/opts/known");
    BOOST_TEST(from_line.keepalive_interval.count() == 9000);

    session_options bare;  // a machine line with defaults everywhere
    bare.connect_timeout = 2s;
    apply_ssh_command_options(o, bare);
    BOOST_TEST(bare.port.value() == 2222);
    BOOST_TEST(bare.user == "optuser");
    BOOST_TEST(bare.identity == "/opts/key");
    BOOST_TEST(bare.connect_timeout.count() == 2000);
}

BOOST_AUTO_TEST_SUITE_END()
