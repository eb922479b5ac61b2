# SPDX-License-Identifier: MIT
"""certfs on an etcd store: figures for several nodes. Starts a real
three-member etcd on loopback (tests/integration/etcd_env.py) and real
certfs daemons, then prints:

  1. change propagation, node A -> node B: an upload written on A until B
     serves the same bytes (p50, p99 over --rounds uploads);
  2. start-up with 10,000 domains in etcd: exec until the mount lists them
     all, and the daemon's RSS then;
  3. issuance of 50 domains (local CA, --key-type keys) by 1 node, and by
     3 nodes each making a third of them, until every node serves all.

Benchmarks, not tests: nothing fails on a slow figure. Run as root with
Debian's python3:  /usr/bin/python3 tests/bench/bench_cluster.py --certfs BUILD/daemon/certfs
"""

import argparse
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import etcd_env  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from bench import lazy_unmount, log, rss_kib, wait_for  # noqa: E402
from test_upload import valid_upload  # noqa: E402


class Node:
    def __init__(self, binary, base, name, url, kek):
        self.dir = os.path.join(base, name)
        self.mount = os.path.join(self.dir, "mnt")
        os.makedirs(self.mount)
        self.conf = os.path.join(self.dir, "certfs.conf")
        with open(self.conf, "w") as f:
            f.write("[etcd]\nkey_encryption_key_file = %s\n" % kek)
        self.argv = [binary, "-f", "-c", self.conf, "--store", url, self.mount]
        self.proc = None

    def start(self, timeout=120):
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr.log"), "a"))
        wait_for(lambda: os.path.ismount(self.mount) or self.proc.poll() is not None,
                 timeout, "mount of " + self.mount)
        if self.proc.poll() is not None:
            raise RuntimeError("certfs died; see %s/stderr.log" % self.dir)
        return time.monotonic() - t0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        lazy_unmount(self.mount)


def status(mount, dom):
    with open(os.path.join(mount, dom, "status.json"), "rb") as f:
        return json.loads(f.read())


def seal(key, name, data):
    nonce = os.urandom(12)
    return b"cfs1" + nonce + AESGCM(key).encrypt(nonce, data, name.encode())


def fill(cluster, prefix, key, n):
    """n domains written straight into etcd (sealed state records), in txns
    of 100 puts: what a store filled by certfs over time looks like."""
    now = int(time.time())
    batch = []
    for i in range(n):
        dom = "d%05d.example.com" % i
        rel = "domains/%s/state" % dom
        val = json.dumps({"names": [dom], "created": now, "generation": 0}).encode()
        batch.append({"request_put": {"key": etcd_env.b64("%s/%s" % (prefix, rel)),
                                      "value": base64.b64encode(seal(key, rel, val)).decode()}})
        if len(batch) == 100 or i == n - 1:
            cluster.call("/v3/kv/txn", {"success": batch}, timeout=30)
            batch = []


def upload_pair(i):
    """A fresh key and leaf for prop.example.com from the upload tests' CA."""
    return valid_upload(("prop.example.com",))[3]


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def bench_propagation(a, b, rounds):
    dom = "prop.example.com"
    os.mkdir(os.path.join(a.mount, dom))
    wait_for(lambda: os.path.exists(os.path.join(b.mount, dom, "fullchain.pem")), 30,
             "domain on B")
    lat = []
    for i in range(rounds):
        bundle = upload_pair(i)
        t0 = time.monotonic()
        with open(os.path.join(a.mount, dom, "bundle.pem"), "wb") as f:
            f.write(bundle)
        want = open(os.path.join(a.mount, dom, "fullchain.pem"), "rb").read()
        wait_for(lambda: open(os.path.join(b.mount, dom, "fullchain.pem"), "rb").read()
                 == want, 30, "B to serve upload %d" % i, interval=0.001)
        lat.append(time.monotonic() - t0)
    return lat


def bench_issue(nodes, names, timeout=600):
    t0 = time.monotonic()
    share = [names[i::len(nodes)] for i in range(len(nodes))]

    def mk(n, part):
        for d in part:
            os.mkdir(os.path.join(n.mount, d))

    ts = [threading.Thread(target=mk, args=(n, p)) for n, p in zip(nodes, share)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()

    def done():
        return all(status(n.mount, d)["source"] == "local" for n in nodes for d in names)
    wait_for(done, timeout, "all issued", interval=0.05)
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--certfs", required=True)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--domains", type=int, default=10000)
    ap.add_argument("--issue", type=int, default=50)
    ap.add_argument("--key-type", default="rsa2048")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="certfs-bench-cluster-")
    kek = os.path.join(base, "kek")
    key = os.urandom(32)
    with open(kek, "w") as f:
        f.write(base64.b64encode(key).decode())
    os.chmod(kek, 0o600)
    cluster = etcd_env.EtcdCluster(base=os.path.join(base, "etcd"))
    os.makedirs(cluster.base, exist_ok=True)
    nodes = []
    res = {}
    try:
        cluster.start(timeout=90)
        log("etcd up")
        # 1. propagation
        a = Node(args.certfs, base, "a", cluster.store_url("prop"), kek)
        b = Node(args.certfs, base, "b", cluster.store_url("prop"), kek)
        nodes += [a, b]
        a.start()
        b.start()
        lat = bench_propagation(a, b, args.rounds)
        res["propagation p50"] = "%.1f ms" % (pct(lat, 50) * 1000)
        res["propagation p99"] = "%.1f ms" % (pct(lat, 99) * 1000)
        a.stop()
        b.stop()
        # 2. start-up
        log("filling etcd with %d domains" % args.domains)
        fill(cluster, "big", key, args.domains)
        s = Node(args.certfs, base, "s", cluster.store_url("big"), kek)
        nodes.append(s)
        t0 = time.monotonic()
        s.start()
        wait_for(lambda: len(os.listdir(s.mount)) >= args.domains, 120, "listing")
        res["start-up, %d domains" % args.domains] = "%.2f s" % (time.monotonic() - t0)
        res["RSS after start-up"] = "%.1f MiB" % (rss_kib(s.proc.pid) / 1024.0)
        s.stop()
        # 3. issuance, 1 node vs 3
        for label, count in (("1 node", 1), ("3 nodes", 3)):
            conf_extra = "[certfs]\nkey_type = %s\n" % args.key_type
            ns = []
            for i in range(count):
                n = Node(args.certfs, base, "i%d-%d" % (count, i),
                         cluster.store_url("issue%d" % count), kek)
                with open(n.conf, "a") as f:
                    f.write(conf_extra)
                ns.append(n)
            nodes += ns
            for n in ns:
                n.start()
            names = ["i%03d.example.com" % i for i in range(args.issue)]
            res["issue %d (%s), %s" % (args.issue, args.key_type, label)] = \
                "%.2f s" % bench_issue(ns, names)
            for n in ns:
                n.stop()
    finally:
        for n in nodes:
            n.stop()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    width = max(len(k) for k in res)
    print("\ncertfs on etcd (3 members, loopback)")
    for k, v in res.items():
        print("  %-*s  %s" % (width, k, v))


if __name__ == "__main__":
    main()
