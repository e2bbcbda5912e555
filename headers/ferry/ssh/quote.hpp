// Quoting for remote commands. The remote side runs a command line through the
// user's login shell (`sh -c`), so every argument ferry builds into one must be
// quoted: POSIX single quotes, with each ' written as '\''.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace ferry::ssh {

// One shell word that means exactly `word` to a POSIX shell ('' for the empty string).
// Words made only of safe characters [A-Za-z0-9_@%+:,./-] (no `=`: a first word a=b would be an assignment) are returned as they are.
std::string shell_quote(std::string_view word);

// argv joined into one command line, each word quoted.
std::string shell_command(std::span<const std::string> argv);

}  // namespace ferry::ssh
