# SPDX-License-Identifier: MIT
"""Hostile-upload benchmark: what the worst uploads cost, and what readers
of other domains see meanwhile.

    /usr/bin/python3 tests/bench/bench_hostile.py [CERTFS_BINARY] [--rounds N]

Inputs (made as in tests/integration/test_hostile.py):
  costly    the costliest PFX the limits allow: MAC, certificates and key at
            600,000 iterations each (1.8 M of the 2 M budget), for a foreign
            name, so it is judged in full and then refused
  over-cap  a PFX asking for 8,388,607 MAC iterations (refused from its
            parameters)
  chain     1,000 tiny certificates with one subject

Timed: write to close(2) verdict of one upload (median of --rounds), and the
latency of `cat DOMAIN2/fullchain.pem` (fresh open, read, close) alone and
while 16 uploads of the costly PFX run at once into DOMAIN1. Prints figures
only; nothing here fails on a slow figure.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import certfs_harness as h  # noqa: E402
import test_hostile as th  # noqa: E402
import test_upload as up  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from pathlib import Path  # noqa: E402


def verdict_s(m, fname, data):
    t = time.monotonic()
    got = up.os_write(m.path(up.D, fname), data)
    return time.monotonic() - t, got


def cat_ms(m, domain):
    t = time.monotonic()
    with open(m.path(domain, "fullchain.pem"), "rb") as f:
        f.read()
    return (time.monotonic() - t) * 1000


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("certfs", nargs="?", default=os.path.join(ROOT, "build-test", "daemon",
                                                              "certfs"))
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="certfs-bench-hostile-"))
    m = h.Certfs(str(tmp), "m", a.certfs)
    m.start()
    try:
        m.mkdir(up.D)
        m.mkdir(th.OTHER)
        up.cp_ok(m, tmp, b"costly-pass\n", up.D, "passphrase")
        key, leaf = up.ca().leaf(["foreign.example.org"])
        costly = th.pfx(tmp, key, [leaf, up.ca().inter], "costly-pass", "-iter", "600000")
        key, leaf = up.ca().leaf([up.D])
        over = th.with_huge_iter(th.pfx(tmp, key, [leaf, up.ca().inter], "", "-keypbe", "NONE",
                                        "-certpbe", "NONE", "-iter", "32768"))
        k = ec.generate_private_key(ec.SECP256R1())
        chain = up.pem(th.cert("Same", k.public_key(), "Same", k)) * 1000
        for label, fname, data in (("costly PFX (1.8 M iterations)", "cert.pfx", costly),
                                   ("over-cap PFX (8.4 M MAC iterations)", "cert.pfx", over),
                                   ("1,000 certificates, one subject", "fullchain.pem",
                                    chain)):
            times = []
            for _ in range(a.rounds):
                s, got = verdict_s(m, fname, data)
                times.append(s)
            print("verdict  %-38s median %7.3f s  max %7.3f s  (errno %s)"
                  % (label, statistics.median(times), max(times), got))
        idle = [cat_ms(m, th.OTHER) for _ in range(200)]
        print("cat %s alone:              p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms"
              % (th.OTHER, pct(idle, 50), pct(idle, 99), max(idle)))
        lat = []
        done = threading.Event()

        def reader():
            while not done.is_set():
                lat.append(cat_ms(m, th.OTHER))

        t0 = time.monotonic()
        threads = [threading.Thread(target=up.os_write, args=(m.path(up.D, "cert.pfx"), costly))
                   for _ in range(16)]
        r = threading.Thread(target=reader)
        for t in threads:
            t.start()
        r.start()
        for t in threads:
            t.join()
        done.set()
        r.join()
        print("16 costly uploads at once: all verdicts in %.2f s" % (time.monotonic() - t0))
        print("cat %s meanwhile (%d reads): p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms"
              % (th.OTHER, len(lat), pct(lat, 50), pct(lat, 99), max(lat)))
    finally:
        m.cleanup()


if __name__ == "__main__":
    main()
