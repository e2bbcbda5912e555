// What the scheduler needs to know about one build machine.
//
// A deliberately small record of the scheduler's own: the machines layer (Nix
// machines file, machines.scm) owns parsing and system/feature matching; it
// hands the scheduler the candidates that match a request, converted to this.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ferry::schedule {

struct machine {
    std::string name;          // host name as configured (Guix: build-machine-name)
    std::uint16_t port = 22;   // part of the slot directory name, as in guix offload
    unsigned max_jobs = 1;     // Nix max-jobs / Guix parallel-builds: number of slot files
    double speed = 1.0;        // relative speed factor; > 0
    // Normalized load (1-minute load / cores, capped at 1.0) at or above which
    // the machine is skipped. Guix's default is 0.8; nullopt disables the check.
    std::optional<double> overload_threshold = 0.8;
};

// "<name>:<port>", with '/' replaced by '_' so it is one path component.
// Same spelling as guix offload's slot directory (guix/scripts/offload.scm).
std::string machine_key(const machine& m);

}  // namespace ferry::schedule
