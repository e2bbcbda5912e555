// sweep_dead_import_temporaries (temp_sweep.hpp): what a SIGKILLed importer left
// goes, and nothing else: not a valid path, not another program's path, not the
// files of an owner that still holds its lock.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <boost/test/unit_test.hpp>

#include "ferry/store/database.hpp"
#include "ferry/store/gc_protect.hpp"
#include "ferry/store/temp_sweep.hpp"
#include "nix_fixture.hpp"

using namespace ferry;
namespace fs = std::filesystem;

namespace {

pid_t reaped_pid() {
    pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);
    return child;
}

// A roots file as Nix 2.8 writes it: NUL-terminated paths.
fs::path write_roots_file(const store::store_config& config, pid_t pid, const std::vector<std::string>& paths) {
    fs::create_directories(config.state_dir + "/temproots");
    fs::path file = config.state_dir + "/temproots/" + std::to_string(pid);
    std::ofstream out(file, std::ios::binary);
    for (const auto& p : paths) out << p << '\0';
    return file;
}

std::string half_tree(const store::store_config& config, const std::string& name) {
    auto p = store::random_store_path(config, name);
    fs::create_directories(p + "/sub");
    std::ofstream(p + "/sub/half") << "half a file";
    fs::permissions(p + "/sub", fs::perms::owner_read | fs::perms::owner_exec);  // as a restored NAR is
    return p;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(temp_sweep)

BOOST_AUTO_TEST_CASE(only_dead_importers_temporaries_go) {
    ferry_test::private_nix_store nix;
    auto config = store::store_config::make(store::store_flavour::nix, nix.store_dir, nix.state_dir);
    store::store_database db(config);

    // A dead importer's: its temporary (gone after), a valid path that happens to
    // carry the marker and another program's half path (both stay).
    const auto temporary = half_tree(config, "ferry-import");
    const auto other = half_tree(config, "something-else");
    const auto valid = store::random_store_path(config, "ferry-import");
    std::ofstream(valid) << "registered";
    store::path_info info{valid, "sha256:" + std::string(64, '1'), 10, "", {}, 0, true, {}, ""};
    db.register_valid_paths({info});
    const auto dead_file = write_roots_file(config, reaped_pid(), {temporary, valid, other, "/elsewhere/x-ferry-import"});

    // A dead pid whose file is still locked (an owner in another pid namespace):
    // not judged dead.
    const auto held_temporary = half_tree(config, "ferry-import");
    const auto held_file = write_roots_file(config, reaped_pid(), {held_temporary});
    int held = ::open(held_file.c_str(), O_RDWR | O_CLOEXEC);
    BOOST_TEST_REQUIRE(::flock(held, LOCK_SH) == 0);

    auto report = store::sweep_dead_import_temporaries(db);
    BOOST_TEST(report.temporaries == 1u);
    BOOST_TEST(report.root_files == 1u);
    BOOST_TEST(!fs::exists(temporary));
    BOOST_TEST(!fs::exists(dead_file));
    BOOST_TEST(fs::exists(valid));
    BOOST_TEST(db.is_valid(valid));
    BOOST_TEST(fs::exists(other));
    BOOST_TEST(fs::exists(held_temporary));
    BOOST_TEST(fs::exists(held_file));

    // Once the owner is gone for good, the next sweep takes it.
    ::close(held);
    report = store::sweep_dead_import_temporaries(db);
    BOOST_TEST(report.temporaries == 1u);
    BOOST_TEST(!fs::exists(held_temporary));

    // This process's own file is never swept.
    {
        store::temp_roots mine(config);
        const auto own = half_tree(config, "ferry-import");
        mine.add(own);
        report = store::sweep_dead_import_temporaries(db);
        BOOST_TEST(report.temporaries == 0u);
        BOOST_TEST(fs::exists(own));
        store::remove_tree(own);
    }
    store::remove_tree(other);
}

BOOST_AUTO_TEST_SUITE_END()
