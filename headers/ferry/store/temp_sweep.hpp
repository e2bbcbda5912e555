// Sweeping what a killed importer left in the store directory.
//
// An importer restores each path under a fresh random name
// (random_store_path(..., "ferry-import")) and lists that name in its temp-roots
// file (<state>/temproots/<pid>, gc_protect.hpp) before creating it. A process
// that is SIGKILLed mid-import (the daemon kills a hook it gives up on) leaves
// both behind: the half-restored tree, which no one will ever register, and the
// roots file. Nix's collector would remove them on its next run; an offload must
// not wait for one, so the next importer sweeps them first:
//
//   for each <state>/temproots/<pid> whose process is gone (no such pid) and whose
//   lock can be taken without waiting (the collector's own test, gc.cc):
//     delete each listed path named *-<marker> that is not valid, then the file.
//
// Only ferry's own temporaries are deleted (never a path that merely lacks
// registration: the daemon may be building it), and only those of dead processes.
#pragma once

#include <cstddef>
#include <string_view>

#include "ferry/store/database.hpp"

namespace ferry::store {

struct temp_sweep_report {
    std::size_t temporaries = 0;  // half-imported trees deleted
    std::size_t root_files = 0;   // dead processes' temp-roots files deleted
};

// Never throws: a sweep that cannot read or delete something leaves it.
temp_sweep_report sweep_dead_import_temporaries(store_database& db, std::string_view marker = "-ferry-import") noexcept;

}  // namespace ferry::store
