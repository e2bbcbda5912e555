#!/usr/bin/env python3
"""Makes the test vector of guix_signature_test.cpp with libgcrypt itself, the
library `guix authenticate` signs with: a fresh key as `guix archive
--generate-key` makes it, and a signature of a SHA-256 as guix/pki.scm's
`signature-sexp` asks for it. Run by hand (needs libgcrypt.so.20); the test
carries the printed values, so the test does not need libgcrypt.

    python3 test/store/make_guix_signature_vector.py
"""
import ctypes, hashlib

g = ctypes.CDLL("libgcrypt.so.20")
g.gcry_check_version.restype = ctypes.c_char_p
g.gcry_check_version(None)
g.gcry_sexp_find_token.restype = ctypes.c_void_p
g.gcry_sexp_find_token.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
g.gcry_sexp_sprint.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
g.gcry_sexp_sprint.restype = ctypes.c_size_t
g.gcry_pk_genkey.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
g.gcry_pk_sign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_void_p]
g.gcry_pk_verify.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
g.gcry_sexp_new.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]

ADVANCED = 3


def sexp(text):
    s = ctypes.c_void_p()
    assert g.gcry_sexp_new(ctypes.byref(s), text.encode(), 0, 1) == 0, text
    return s


def show(s):
    n = g.gcry_sexp_sprint(s, ADVANCED, None, 0)
    buf = ctypes.create_string_buffer(n)
    g.gcry_sexp_sprint(s, ADVANCED, buf, n)
    return buf.value.decode()


key = ctypes.c_void_p()
assert g.gcry_pk_genkey(ctypes.byref(key), sexp("(genkey (ecdsa (curve Ed25519) (flags rfc6979)))")) == 0
public = ctypes.c_void_p(g.gcry_sexp_find_token(key, b"public-key", 0))
secret = ctypes.c_void_p(g.gcry_sexp_find_token(key, b"private-key", 0))

# The item guix_signature_test.cpp builds: a one-file NAR and the trailer guix
# signs (nix/libstore/local-store.cc exportPath hashes the NAR, then the export
# magic, path, references and deriver, as Nix's wire strings).
def u64(n):
    return n.to_bytes(8, "little")


def wire(b):
    return u64(len(b)) + b + b"\0" * (-len(b) % 8)


PATH = b"/gnu/store/0123456789abcdfghijklmnpqrsvwxyz-ferry-vector"
REF = b"/gnu/store/zyxwvsrqpnmlkjihgfdcba9876543210-dep"
DRV = b"/gnu/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-ferry-vector.drv"
nar = b"".join(wire(x) for x in [b"nix-archive-1", b"(", b"type", b"regular", b"contents",
                                  b"hello from guix\n", b")"])
trailer = u64(0x4558494E) + wire(PATH) + u64(1) + wire(REF) + wire(DRV)
digest = hashlib.sha256(nar + trailer).hexdigest().upper()
data = sexp("(data (flags rfc6979) (hash sha256 #%s#))" % digest)
sig = ctypes.c_void_p()
assert g.gcry_pk_sign(ctypes.byref(sig), data, secret) == 0
assert g.gcry_pk_verify(sig, data, public) == 0
print("hash      ", digest)
print("public-key", show(public))
print("sig-val   ", show(sig))
# What exportPath writes after the item: the whole signature, as guix
# authenticate prints it (advanced form; see guix/pki.scm signature-sexp).
whole = sexp("(signature %s %s %s)" % (show(data), show(sig), show(public)))
print("signature ", " ".join(show(whole).split()))
