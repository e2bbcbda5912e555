# Drives a local `nix-store --serve --write` with a scripted request and records
# the reply (capture tool for ferry's serve-protocol tests).
import struct, subprocess, sys
def u(v): return struct.pack('<Q', v)
def s(b):
    b = b.encode() if isinstance(b, str) else b
    return u(len(b)) + b + b'\0' * ((8 - len(b) % 8) % 8)
def ss(xs): return u(len(xs)) + b''.join(s(x) for x in xs)
out = '/nix/store/zp4l4k2k0kggdfjq3nk5697s4gi1isi3-ferry-serve-capture'
src = '/nix/store/n459321dw3a4anpv54kdpzx9bixfxk0s-ferry-serve-builder.sh'
bogus = '/nix/store/00000000000000000000000000000000-missing'
req = u(0x390c9deb) + u(0x207)
req += u(1) + u(0) + u(0) + ss([out, bogus, src])
req += u(7) + u(0) + ss([out])
req += u(2) + ss([bogus, src])
req += u(5) + u(0) + ss([src])
open(sys.argv[1], 'wb').write(req)
rep = subprocess.run(['nix-store', '--serve', '--write'], input=req, capture_output=True, check=True).stdout
open(sys.argv[2], 'wb').write(rep)
