# SPDX-License-Identifier: MIT
"""No network call under a lock that readers of the tree need: while the CA
accepts and never answers (the proxy's freeze), with an ACME order and a
revoke_on_delete rmdir both waiting on it, lookups, `ls`, `cat
MOUNT/status` and reads of every domain's files keep answering, and the
rmdir itself returns at once (the revocation is recorded and made by a
worker, retried until the CA has it). Each read
runs with a generous deadline and the test counts those that made it (all
must); the latencies are printed for the record, not asserted."""

import concurrent.futures
import os
import time

import pytest

import certfs_harness as h

DEADLINE = 3.0   # per read; a blocked read waits for the CA (15 s without a byte)
ROUNDS = 3


def start_acme(certfs, env, px, config=""):
    a = ["--issuer", "acme", "--acme-directory", px.directory_url,
         "--acme-ca-bundle", px.ca_bundle, "--http01-listen", "127.0.0.1:%d" % env.http_port]
    return certfs(config=config, args=a, env={"CERTFS_CHALLTESTSRV": env.challtestsrv_url})


def reads(m, domains):
    """Every kind of read a web server or a monitor makes, as callables."""
    ops = [("cat status", lambda: m.read("status")),
           ("cat status.json", lambda: m.read("status.json")),
           ("ls", lambda: os.listdir(m.mount))]
    for d in domains:
        ops += [("lookup %s" % d, lambda d=d: os.stat(m.path(d))),
                ("ls %s" % d, lambda d=d: os.listdir(m.path(d)))]
        for f in ("fullchain.pem", "privkey.pem", "status", "status.json"):
            ops.append(("cat %s/%s" % (d, f), lambda d=d, f=f: m.read(d, f)))
    return ops


@pytest.mark.acme
@pytest.mark.timeout(180)
def test_reads_answer_while_the_ca_is_frozen(certfs, pebble, proxy):
    h.need_pebble()
    px = proxy(pebble)
    m = start_acme(certfs, pebble, px, config="[acme]\nrevoke_on_delete = true\n")
    pid = os.getpid()
    gone, kept, new = ("gone-%d.example.test" % pid, "kept-%d.example.test" % pid,
                       "new-%d.example.test" % pid)
    for d in (gone, kept):
        os.mkdir(m.path(d))
    for d in (gone, kept):
        h.wait_for(lambda d=d: m.status_json(d).get("source") == "acme", 60,
                   "an ACME certificate for %s" % d)

    px.freeze = True
    os.mkdir(m.path(new))   # its order waits on the frozen CA
    # rmdir returns at once: the revocation is recorded and made by a worker.
    t0 = time.monotonic()
    os.rmdir(m.path(gone))
    print("rmdir with revoke_on_delete took %.1f ms" % (1000 * (time.monotonic() - t0)))
    assert gone not in os.listdir(m.mount)
    pending = os.listdir(os.path.join(m.store, "revoke"))
    assert len(pending) == 1 and pending[0].startswith(gone + "@"), pending
    h.wait_for(lambda: px.frozen >= 2, 30, "the order and the revocation to reach the CA")

    ops = reads(m, [kept, new])
    done = total = 0
    slow = []
    lat = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    try:
        for _ in range(ROUNDS):
            for what, op in ops:
                total += 1
                t0 = time.monotonic()
                fut = pool.submit(op)
                try:
                    fut.result(DEADLINE)
                except concurrent.futures.TimeoutError:
                    slow.append(what)
                    continue
                lat.append(time.monotonic() - t0)
                done += 1
    finally:
        px.thaw()
        pool.shutdown(wait=False)
    lat.sort()
    print("frozen CA: %d of %d reads answered within %.0f s; median %.1f ms, p99 %.1f ms, "
          "max %.1f ms" % (done, total, DEADLINE, 1000 * lat[len(lat) // 2],
                           1000 * lat[int(len(lat) * 0.99)], 1000 * lat[-1]))
    assert done == total, "%d reads blocked while the CA was frozen: %r" % (total - done,
                                                                             slow[:10])
    # The CA hung up on the revocation: it stays recorded, to be tried again.
    assert os.listdir(os.path.join(m.store, "revoke")) == pending
