// Guix's machines.scm, read as DATA (never evaluated by a Scheme interpreter).
// Accepted top-level forms (the value of the last one is the machine list, like `load`;
// `(use-modules ...)` forms before it are ignored):
//   (list (build-machine (field value) ...) ...)     '() / (list)  → no machines
//   ((@ (srfi srfi-1) append-map)                     the form Guix System writes
//    (lambda (entry) (if (build-machine? entry) (list entry) entry))
//    (list <build-machine or list of them> ...))
// Field values: strings, numbers, #t/#f, (list ...), '(...). build-machine fields (guix
// scripts offload): name, port (22), systems, system (deprecated, one string), user,
// private-key (default identities), host-key, compression ("zlib@openssh.com,zlib"),
// compression-level (3), daemon-socket, overload-threshold (0.8; #f disables),
// parallel-builds (1), speed (1.0), features ('()), location (accepted, ignored).
// Required: name, systems (or system), user, host-key.
// Everything else (define, let, map, unknown procedures or fields, wrong value types)
// throws ferry::failure(errc::bad_input) "file:line:col: <what was seen>; <what is supported>".
#pragma once

#include <ferry/machines/machine.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace ferry::machines {

std::vector<machine> parse_guix_machines(std::string_view text, const std::string& file);

}  // namespace ferry::machines
