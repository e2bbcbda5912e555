(list (build-machine
        (name "eightysix.example.org")
        (systems (list "x86_64-linux" "i686-linux"))
        (host-key "ssh-ed25519 AAAAC3Nza...")
        (user "bob")
        (speed 2.))     ;incredibly fast!
      (build-machine
        (name "armeight.example.org")
        (systems (list "aarch64-linux"))
        (host-key "ssh-rsa AAAAB3Nza...")
        (user "alice")
        (private-key "/root/.ssh/identity-for-guix")))
