// Pieces for the store-side rows of the fault matrix (test/faults/store_faults_test.cpp):
// TEST SHIMS that stand in for a build machine's `nix-store` and damage what its
// `--export` emits, a disk-full test host, and looks into the local store.
//
// A shim is named by the machine line's `?remote-program=` (Nix's store-URI
// parameter, which ferry honours for every remote nix-store command): it runs the
// real /usr/bin/nix-store for everything but `--export`, whose output goes through
// a filter. Shims live in the test host's directory (the host's namespace rebinds
// only /nix and /etc/nix, so the host sees them at the same path).
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "ferry/hosts/test_host.hpp"
#include "support/nix_build.hpp"

namespace ferry::test_support::faults {

namespace fs = std::filesystem;

// Writes DIR/shims/NAME: a TEST SHIM nix-store whose `--export` output is piped
// through `filter` (a shell command reading stdin, writing stdout). Returns its path.
inline fs::path write_export_shim(const fs::path& dir, const std::string& name, const std::string& filter) {
    fs::create_directories(dir / "shims");
    auto path = dir / "shims" / name;
    std::ofstream(path) << "#!/bin/sh\n"
                           "# TEST SHIM (ferry fault matrix, test/faults/store_faults_test.cpp): the build\n"
                           "# machine's nix-store, except that what `--export` emits is damaged.\n"
                           "if [ \"$1\" = --export ]; then\n"
                           "  /usr/bin/nix-store \"$@\" | { "
                        << filter
                        << "; }\n"
                           "  exit $?\n"
                           "fi\n"
                           "exec /usr/bin/nix-store \"$@\"\n";
    fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    return path;
}

// Writes DIR/shims/NAME holding `text` (a helper the shims call), mode 0644.
inline fs::path write_shim_file(const fs::path& dir, const std::string& name, const std::string& text) {
    fs::create_directories(dir / "shims");
    auto path = dir / "shims" / name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

// Perl (in /usr/bin on every Debian box) that adds the item's deriver to its
// reference list in the export trailer: a path valid on the local side but outside
// the output's closure. The trailer: u64 0x4558494e ("NIXE"), path, references
// (u64 count + strings), deriver, u64 0 (no signature), then the bundle's final 0.
inline const char* add_deriver_reference_perl = R"(binmode STDIN; binmode STDOUT; local $/;
my $s = <STDIN>;
my $m = rindex($s, "NIXE\0\0\0\0"); die "shim: no export trailer\n" if $m < 0;
my $p = $m + 8;
my $len = unpack("Q<", substr($s, $p, 8)); $p += 8 + (($len + 7) & ~7);
die "shim: the item already has references\n" if unpack("Q<", substr($s, $p, 8)) != 0;
my $dlen = unpack("Q<", substr($s, $p + 8, 8)); die "shim: no deriver\n" if $dlen == 0;
my $drv = substr($s, $p + 16, $dlen);
substr($s, $p, 8) = pack("Q<", 1) . pack("Q<", $dlen) . $drv . ("\0" x ((8 - $dlen % 8) % 8));
print $s;
)";

// "ssh://root@127.0.0.1:PORT?remote-program=SHIM SYSTEMS KEY ..." for `host`.
inline std::string machine_line_with_program(const hosts::test_host& host, const fs::path& program) {
    auto line = host.nix_machine_line();
    auto space = line.find(' ');
    return line.substr(0, space) + "?remote-program=" + program.string() + line.substr(space);
}

// Entries of a store directory seen from outside its namespace (names only).
inline std::vector<std::string> store_entries(const fs::path& store_dir) {
    std::vector<std::string> v;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(store_dir, ec)) v.push_back(e.path().filename().string());
    return v;
}

// ferry's in-flight import temporaries (store::random_store_path(..., "ferry-import")).
inline std::vector<std::string> import_temporaries(const fs::path& store_dir) {
    std::vector<std::string> v;
    for (auto& n : store_entries(store_dir))
        if (n.find("-ferry-import") != std::string::npos) v.push_back(n);
    return v;
}

// Waits up to `limit` for `ready()`; returns its last answer.
template <class F>
bool wait_until(F ready, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!ready()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

// A 32-character name part in Nix's base-32 alphabet, so the entry parses as a store path.
inline std::string fake_store_hash(const std::string& seed) {
    static const char alphabet[] = "0123456789abcdfghijklmnpqrsvwxyz";
    std::string h;
    std::size_t x = std::hash<std::string>{}(seed);
    for (int i = 0; i < 32; ++i) {
        h += alphabet[x % 32];
        x = x / 32 + 0x9e3779b97f4a7c15ull * (i + 1);
    }
    return h;
}

}  // namespace ferry::test_support::faults
