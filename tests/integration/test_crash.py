# SPDX-License-Identifier: MIT
"""Crash consistency: a seeded random stream of operations (mkdir, uploads,
rm of an upload, rmdir, renew) while the daemon is killed with SIGKILL at
random moments and restarted. After every restart: each operation whose
syscall returned success is still there (a domain made is listed, a
domain removed is not, an upload is served, an upload removed is not),
the store loads without an unreadable domain, and every domain serves a
key that matches its certificate. An operation cut by the kill may have
happened or not; the next check learns which.

CERTFS_CRASH_SEED picks another seed (the default is fixed, so a failure
is reproducible); the summary line gives the operations and the losses."""

import errno
import os
import random
import signal
import subprocess
import threading
import time

import pytest

import certfs_harness as h
from test_upload import valid_upload

OPS = 220
NAMES = ["c%02d.example.com" % i for i in range(10)]
KILL_EVERY = 12          # a kill is armed after this many operations on average
KILL_DELAY_MAX = 0.4     # seconds after arming, while operations go on


class Killed(Exception):
    pass


def served_pair_ok(m, d):
    certs = h.pem_certs(m.read(d, "fullchain.pem"))
    key = h.load_key(m.read(d, "privkey.pem"))
    return h.key_matches_cert(key, certs[0]), certs[0]


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_loses_nothing_acknowledged(certfs):
    seed = int(os.environ.get("CERTFS_CRASH_SEED", "20261207"))
    rng = random.Random(seed)
    m = certfs(config="[certfs]\nworkers = 2\n")
    # What must hold: True/False known, None unknown (cut by a kill).
    exists = {n: False for n in NAMES}
    uploaded = {n: None for n in NAMES}   # fingerprint served as an upload, None: managed
    bundles = {}                          # a valid bundle of each domain, for uploads
    stats = {"ops": 0, "acked": 0, "cut": 0, "kills": 0, "losses": []}
    killer = {"t": None}

    def arm_kill():
        delay = rng.uniform(0, KILL_DELAY_MAX)
        proc = m.proc

        def fire():
            time.sleep(delay)  # the random moment; the operations go on meanwhile
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        t = threading.Thread(target=fire)
        t.start()
        killer["t"] = t

    def restart():
        if killer["t"]:
            killer["t"].join()
            killer["t"] = None
        if m.proc.poll() is None:
            m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(15)
        stats["kills"] += 1
        subprocess.run(["fusermount3", "-u", "-z", m.mount], capture_output=True)
        h.wait_for(lambda: not h.is_any_mounted(m.mount), 10, "the dead mount to go")
        since = len(m.stderr())
        m.start()
        check(since)

    def check(since):
        log = m.stderr()[since:]
        assert "unreadable" not in log and "skipped" not in log, log
        listed = set(os.listdir(m.mount))
        for n in NAMES:
            if exists[n] is None:
                exists[n] = n in listed
            elif exists[n] != (n in listed):
                stats["losses"].append("%s: %s" % (n, "mkdir lost" if exists[n]
                                                   else "rmdir undone"))
                exists[n] = n in listed
            if not exists[n]:
                uploaded[n] = None
                continue
            st = m.wait_state(n, state=None, timeout=10)
            ok, leaf = served_pair_ok(m, n)
            if not ok:
                stats["losses"].append("%s: key and certificate do not match" % n)
            is_up = st["source"] == "uploaded"
            if uploaded[n] == "?":
                uploaded[n] = h.fingerprint(leaf).hex() if is_up else None
            elif uploaded[n] is not None and (not is_up or
                                               h.fingerprint(leaf).hex() != uploaded[n]):
                stats["losses"].append("%s: upload lost" % n)
                uploaded[n] = h.fingerprint(leaf).hex() if is_up else None
            elif uploaded[n] is None and is_up:
                stats["losses"].append("%s: removed upload came back" % n)
                uploaded[n] = h.fingerprint(leaf).hex()

    def do(op, n):
        """One operation; True when its syscall returned success."""
        if op == "mkdir":
            os.mkdir(m.path(n))
            exists[n] = True
            uploaded[n] = None
        elif op == "rmdir":
            os.rmdir(m.path(n))
            exists[n] = False
            uploaded[n] = None
        elif op == "upload":
            b = bundles[n]
            with open(m.path(n, "bundle.pem"), "wb") as f:
                f.write(b)
            uploaded[n] = h.fingerprint(h.pem_certs(_certs_only(b))[0]).hex()
        elif op == "rm":
            os.unlink(m.path(n, "fullchain.pem"))
            uploaded[n] = None
        elif op == "renew":
            m.renew(n)
        return True

    def mark_unknown(op, n):
        if op in ("mkdir", "rmdir"):
            exists[n] = None
            uploaded[n] = "?"
        elif op in ("upload", "rm"):
            uploaded[n] = "?"

    while stats["ops"] < OPS:
        if m.proc.poll() is not None:
            restart()
        if killer["t"] is None and rng.randrange(KILL_EVERY) == 0:
            arm_kill()
        n = rng.choice(NAMES)
        if exists[n] is None or uploaded[n] == "?":
            continue
        if not exists[n]:
            op = "mkdir"
        else:
            op = rng.choice(["upload", "upload", "rm", "rmdir", "renew"])
            if op == "upload" and n not in bundles:
                # Another certificate of the domain: writing back what is
                # served is a no-op that uploads nothing.
                bundles[n] = valid_upload(names=(n,))[3]
            if op == "rm" and uploaded[n] is None:
                op = "renew"
        stats["ops"] += 1
        try:
            do(op, n)
            stats["acked"] += 1
        except OSError as e:
            if m.proc.poll() is None and e.errno not in (errno.ENOTCONN, errno.ECONNABORTED):
                raise AssertionError("%s %s failed with the daemon alive: %r; log:\n%s"
                                     % (op, n, e, m.stderr()[-3000:]))
            stats["cut"] += 1
            mark_unknown(op, n)
            m.proc.wait(15)  # the connection broke: the daemon is dying
    restart()
    print("crash test (seed %d): %d operations, %d acknowledged, %d cut by %d kills, "
          "%d losses" % (seed, stats["ops"], stats["acked"], stats["cut"], stats["kills"],
                         len(stats["losses"])))
    assert stats["ops"] >= 200
    assert stats["losses"] == [], stats["losses"]


def _certs_only(bundle):
    """The CERTIFICATE blocks of a bundle (key + chain), for the fingerprint."""
    return b"".join(b for label, b in h.pem_blocks(bundle) if label == "CERTIFICATE")
