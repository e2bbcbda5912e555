derivation {
  name = "ferry-serve-capture";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ (builtins.toFile "ferry-serve-builder.sh" "echo built > $out") ];
}
