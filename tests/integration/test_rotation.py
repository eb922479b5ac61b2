# SPDX-License-Identifier: MIT
"""Rotation under load: readers that read fullchain.pem then privkey.pem,
each with its own open/read/close, while the domain is re-issued again and
again. Every pair must match and no file may be torn."""

import json
import os
import subprocess
import sys

import pytest

import certfs_harness as h

D = "rotate.example.com"
RENEWALS = 30
READERS = 3

# Runs in its own process (so the daemon sees separate readers), until the
# stop file appears; prints one JSON summary line.
READER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[3])
import certfs_harness as h

d, stop = sys.argv[1], sys.argv[2]
res = {"pairs": 0, "mismatch": 0, "torn": 0, "gens": [], "errors": [],
       "key_older": 0, "key_newer": 0}
seen = set()
cert_of_key = {}

def read(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        parts = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            parts.append(b)
        return size, b"".join(parts)
    finally:
        os.close(fd)

while not os.path.exists(stop) or res["pairs"] == 0:
    try:
        csize, cdata = read(os.path.join(d, "fullchain.pem"))
        ksize, kdata = read(os.path.join(d, "privkey.pem"))
    except OSError as e:
        res["errors"].append(repr(e))
        if len(res["errors"]) > 20:
            break
        continue
    res["pairs"] += 1
    try:
        if csize != len(cdata) or ksize != len(kdata):
            raise ValueError("size %d/%d vs read %d/%d" % (csize, ksize, len(cdata), len(kdata)))
        certs = h.pem_certs(cdata)
        if not certs:
            raise ValueError("no certificate")
        key = h.load_key(kdata)
    except Exception as e:
        res["torn"] += 1
        if len(res["errors"]) < 20:
            res["errors"].append("torn: %r" % (e,))
        continue
    seen.add(h.fingerprint(certs[0]).hex())
    cert_of_key.setdefault(h.spki(certs[0]), True)
    if not h.key_matches_cert(key, certs[0]):
        res["mismatch"] += 1
        # Which side was stale: a key whose certificate we saw before is older.
        res["key_older" if h.spki(key) in cert_of_key else "key_newer"] += 1
res["gens"] = sorted(seen)
print(json.dumps(res))
"""


@pytest.mark.timeout(180)
def test_pairs_never_torn_during_rotation(certfs, tmp_path):
    m = certfs()
    st = m.mkdir(D)
    gen = st["generation"]
    stop = str(tmp_path / "stop")
    here = os.path.dirname(os.path.abspath(__file__))
    readers = [subprocess.Popen([sys.executable, "-c", READER, m.path(D), stop, here],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(READERS)]
    try:
        fingerprints = {st["fingerprint_sha256"]}
        for _ in range(RENEWALS):
            m.renew(D)
            st = m.wait_state(D, state="valid", min_generation=gen + 1, timeout=15)
            gen = st["generation"]
            fingerprints.add(st["fingerprint_sha256"])
            for r in readers:
                assert r.poll() is None, "a reader died: %s" % (r.communicate(),)
        assert len(fingerprints) == RENEWALS + 1, "every renewal makes a new certificate"
    finally:
        with open(stop, "w"):
            pass
        outs = [r.communicate(timeout=60) for r in readers]
    results = []
    for r, (out, err) in zip(readers, outs):
        assert r.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    total = sum(x["pairs"] for x in results)
    mismatched = sum(x["mismatch"] for x in results)
    torn = sum(x["torn"] for x in results)
    errors = [e for x in results for e in x["errors"]]
    gens = set().union(*(set(x["gens"]) for x in results))
    assert total > 0
    assert errors == [], errors[:5]
    assert torn == 0, "%d of %d reads torn" % (torn, total)
    assert mismatched == 0, "%d of %d pairs mismatched (key older than cert: %d, newer: %d)" % (
        mismatched, total, sum(x["key_older"] for x in results),
        sum(x["key_newer"] for x in results))
    assert len(gens) > 1, "readers saw only one generation in %d pairs" % total
    # After the storm: the served pair matches and status agrees.
    leaf = h.pem_certs(m.read(D, "fullchain.pem"))[0]
    assert h.key_matches_cert(h.load_key(m.read(D, "privkey.pem")), leaf)
    assert h.fingerprint(leaf).hex() == m.status_json(D)["fingerprint_sha256"].replace(
        ":", "").lower()


@pytest.mark.timeout(120)
def test_rotation_across_files_consistent(certfs):
    """bundle.pem, cert.pfx and status.json of one generation agree after
    each renewal."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    m = certfs()
    st = m.mkdir(D)
    for _ in range(5):
        m.renew(D)
        st = m.wait_state(D, state="valid", min_generation=st["generation"] + 1)
        leaf = h.pem_certs(m.read(D, "cert.pem"))[0]
        assert h.fingerprint(leaf).hex() == st["fingerprint_sha256"].replace(":", "").lower()
        blocks = h.pem_blocks(m.read(D, "bundle.pem"))
        assert h.key_matches_cert(h.load_key(blocks[0][1]), leaf)
        key, cert, _ = pkcs12.load_key_and_certificates(m.read(D, "cert.pfx"), None)
        assert cert == leaf and h.key_matches_cert(key, leaf)
