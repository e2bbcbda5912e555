derivation {
  name = "ferry-capture";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ "-c" (builtins.toFile "ferry-capture-builder.sh" "echo hi > $out") ];
  requiredSystemFeatures = [ "big-parallel" "kvm" ];
}
