# SPDX-License-Identifier: MIT
"""Hostile uploads through a real mount: inputs built to cost a lot of CPU
(iteration counts, chains of one name), content no TLS client accepts,
CSR names that would break status, and what is left of secrets in a core
dump. Every refusal is seen three ways: the errno of cp/close, the sentence
in status, and nothing served or stored changed. While a costly upload is
judged, another domain stays readable (counted reads, no timing asserts).

Hostile files are made here with python3-cryptography and the openssl
command, with their iteration counts edited in the DER so that making them
costs nothing."""

import errno
import os
import re
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import certfs_harness as h
import test_upload as up

D = up.D


def needles_of_key(key, pem_text):
    """Byte strings that must not be in a dump: lines of the PEM body, the
    PKCS#8 DER, the private scalar in both byte orders (OpenSSL keeps
    bignums as little-endian words)."""
    out = {}
    body = [ln for ln in pem_text.splitlines() if ln and not ln.startswith(b"-----")]
    for i, ln in enumerate(body[:3]):
        out["PEM line %d" % (i + 1)] = ln
    out["PKCS#8 DER"] = key.private_bytes(serialization.Encoding.DER,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
    d = key.private_numbers().private_value.to_bytes(32, "big")
    out["private scalar"] = d
    out["private scalar (little-endian)"] = d[::-1]
    return out


@pytest.fixture(scope="module")
def gcore():
    g = h.which("gcore")
    if not g:
        h.missing_prerequisite("gcore (gdb) is missing")
    return g


def test_core_dump_holds_no_key(certfs, tmp_path, gcore):
    """A key uploaded, a key generated, a passphrase written, the key files
    and the PFX read: a gcore dump of the daemon then holds none of them."""
    m = certfs()
    os.mkdir(m.path(D))
    m.wait_state(D, "valid")
    secret = b"hostile-passphrase-%d" % os.getpid()
    up.cp_ok(m, tmp_path, secret + b"\n", D, "passphrase")
    key, leaf, kp, bundle = up.valid_upload()
    up.cp_ok(m, tmp_path, bundle, D, "bundle.pem")
    up.wait_served(m, leaf)
    for f in ("privkey.pem", "bundle.pem", "cert.pfx"):
        m.read(D, f)
    other = "gen.example.com"
    m.mkdir(other)
    gen_pem = m.read(other, "privkey.pem")
    m.read(other, "cert.pfx")
    gen_key = serialization.load_pem_private_key(gen_pem, None)
    assert isinstance(gen_key, ec.EllipticCurvePrivateKey)

    needles = {"passphrase": secret}
    for tag, k, p in (("uploaded", key, kp), ("generated", gen_key, gen_pem)):
        for what, b in needles_of_key(k, p).items():
            needles["%s key: %s" % (tag, what)] = b

    prefix = str(tmp_path / "core")
    r = subprocess.run([gcore, "-o", prefix, str(m.proc.pid)], capture_output=True,
                       text=True, timeout=120)
    core = "%s.%d" % (prefix, m.proc.pid)
    assert r.returncode == 0 and os.path.exists(core), r.stderr + r.stdout
    try:
        with open(core, "rb") as f:
            dump = f.read()
        # The dump is real: it holds what is public (the served certificate).
        assert up.pem(leaf).splitlines()[2] in dump
        found = [what for what, b in needles.items() if b in dump]

        assert not found, "the core dump holds: %s" % ", ".join(found)
    finally:
        os.unlink(core)
