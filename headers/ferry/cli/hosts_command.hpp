// `ferry hosts up N DIR` / `ferry hosts down DIR`: local sshd build hosts with their
// own Nix stores, for demos, benchmarks and trying ferry by hand (ferry::hosts).
#pragma once

namespace ferry::cli {

// argv[0] is "hosts"; the rest are its arguments. Returns the exit status.
//   up N DIR   starts host1..hostN under DIR, writes and prints DIR/machines,
//              DIR/ssh_config and DIR/known_hosts, then stays in the foreground
//              until SIGTERM/SIGINT/SIGHUP, and stops and wipes the hosts.
//   down DIR   stops the hosts recorded under DIR, by pid, and removes DIR.
int hosts_command(int argc, char** argv);

}  // namespace ferry::cli
