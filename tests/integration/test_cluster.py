# SPDX-License-Identifier: MIT
"""Several certfs nodes on one etcd store (a real three-member cluster).

Each node is a real daemon with its own mountpoint and `--store
etcd://.../PREFIX`. A change made on one node must be served by the others
with the same bytes; one node issues each domain; a lock holder that dies
or is paused past its lease is taken over and fenced out; the nodes keep
serving while etcd is down and catch up when it is back, also after a
compaction took the history a watch needed.
"""

import base64
import errno
import os
import re
import signal

import pytest

import certfs_harness as h
from test_store_etcd import Tool
from test_upload import valid_upload

TTL = 3  # lease_ttl of the nodes: how long a dead node keeps its locks


@pytest.fixture
def kek(tmp_path):
    p = str(tmp_path / "kek")
    with open(p, "w") as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(p, 0o600)
    return p


@pytest.fixture
def nodes(certfs, etcd, kek):
    """nodes(n, members=None, extra="") -> [Certfs]: n daemons on the test's
    prefix; members limits the etcd endpoints a node is given."""

    def make(n=2, members=None, extra="", start=True):
        out = []
        for i in range(n):
            eps = etcd.endpoints if members is None else ",".join(
                etcd.members[m].endpoint for m in members[i])
            conf = ("[etcd]\nkey_encryption_key_file = %s\nlease_ttl = %d\n%s"
                    % (kek, TTL, extra))
            out.append(certfs(config=conf, store="etcd://%s/%s" % (eps, etcd.prefix),
                              name="node%d" % i, start=start))
        return out

    return make


def served(node, domain):
    return node.read(domain, "fullchain.pem"), node.read(domain, "privkey.pem")


def same_everywhere(nodes, domain, source=None, timeout=20):
    """Every node serves the same certificate and key for domain."""
    def check():
        seen = set()
        for n in nodes:
            st = n.status_json(domain)
            if source and st["source"] != source:
                return False
            seen.add(served(n, domain))
        return len(seen) == 1
    h.wait_for(check, timeout=timeout, what="%s served alike on every node" % domain)
    return served(nodes[0], domain)


def test_change_on_one_node_is_served_by_all(nodes):
    a, b, c = nodes(3)
    d = "shared.example.com"
    for n in (b, c):  # listings cached by the kernel must learn of it too
        assert d not in os.listdir(n.mount)
    a.mkdir(d)
    for n in (b, c):
        h.wait_for(lambda n=n: d in os.listdir(n.mount), timeout=20,
                   what="%s listed on %s" % (d, n.mount))
    cert, key = same_everywhere([a, b, c], d, source="local")
    assert h.key_matches_cert(h.load_key(key), h.pem_certs(cert)[0])
    gen = {n.status_json(d)["generation"] for n in (a, b, c)}
    assert len(gen) == 1
    # An upload on b is served by a and c.
    _, leaf, _, bundle = valid_upload((d,))
    with open(b.path(d, "bundle.pem"), "wb") as f:
        f.write(bundle)
    up_cert, _ = same_everywhere([a, b, c], d, source="uploaded")
    assert h.pem_certs(up_cert)[0] == leaf
    # rm of the upload on c: the managed certificate comes back everywhere.
    os.unlink(c.path(d, "fullchain.pem"))
    back, back_key = same_everywhere([a, b, c], d, source="local")
    assert back == cert and back_key == key
    # rmdir on b: gone from a and c.
    os.rmdir(b.path(d))
    # The listing and the kernel's cached entry both learn of it (the entry
    # through a notification sent after the listing changed).
    for n in (a, c):
        h.wait_for(lambda n=n: d not in os.listdir(n.mount) and
                   not os.path.exists(n.path(d, "fullchain.pem")), timeout=20,
                   what="%s gone from %s" % (d, n.mount))


def serials_in_logs(nodes, domain):
    """Every local serial any node served for domain (from the logs)."""
    rx = re.compile(r"engine: %s: serving generation \d+ \(local, serial ([0-9a-fA-F]+)\)"
                    % re.escape(domain))
    out = set()
    for n in nodes:
        out |= set(rx.findall(n.stderr()))
    return out


def test_contention_each_domain_issued_once(nodes):
    ns = nodes(3)
    domains = ["c%02d.example.com" % i for i in range(20)]
    errors = []
    import threading

    def mk(n):
        for d in domains:
            try:
                os.mkdir(n.path(d))
            except FileExistsError:
                pass
            except OSError as e:  # noqa: PERF203
                errors.append((n.mount, d, e))

    ts = [threading.Thread(target=mk, args=(n,)) for n in ns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for d in domains:
        same_everywhere(ns, d, source="local")
    for d in domains:
        serials = serials_in_logs(ns, d)
        assert len(serials) == 1, (d, serials)
        assert all(n.status_json(d)["generation"] == ns[0].status_json(d)["generation"]
                   for n in ns)


def test_local_ca_created_once(nodes):
    a, b = nodes(2)
    h.wait_for(lambda: os.path.exists(a.path("ca.pem")) and os.path.exists(b.path("ca.pem")),
               timeout=10, what="ca.pem on both nodes")
    assert a.read("ca.pem") == b.read("ca.pem")


def lock_holder(etcd, lock, nodes):
    """The node whose process holds the lock (the lock's value is "HOST PID")."""
    v = etcd.get(lock)
    if not v:
        return None
    pid = int(v.split()[-1])
    for n in nodes:
        if n.proc.pid == pid:
            return n
    return None


def test_dead_lock_holder_is_taken_over(nodes, etcd, kek):
    d = "takeover.example.com"
    # A holder that dies with the domain's lock: a store client of the same
    # cluster takes it, then is killed.
    holder = Tool(etcd.store_url(etcd.prefix), kek, ttl=TTL)
    try:
        holder.ok("lock issue/%s" % d)
        a, b = nodes(2)
        os.mkdir(a.path(d))
        a.wait_log(r"%s: created" % re.escape(d))
        assert a.status_json(d)["source"] == "selfsigned"
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(timeout=10)
    finally:
        holder.close()
    # Within one lease TTL (plus the retry), a node issues it.
    same_everywhere([a, b], d, source="local")
    assert len(serials_in_logs([a, b], d)) == 1


def test_paused_holder_is_fenced_out(nodes, etcd, kek):
    d = "fenced.example.com"
    holder = Tool(etcd.store_url(etcd.prefix), kek, ttl=TTL)
    try:
        holder.ok("lock issue/%s" % d)
        holder.ok("fence issue/%s" % d)
        a, b = nodes(2)
        os.mkdir(a.path(d))
        # Paused past its lease: the nodes take over and issue.
        holder.proc.send_signal(signal.SIGSTOP)
        try:
            same_everywhere([a, b], d, source="local")
        finally:
            holder.proc.send_signal(signal.SIGCONT)
        before = served(a, d)
        gen = a.status_json(d)["generation"]
        # Awake and still believing it holds the lock: refused.
        assert holder.cmd("put domains/%s/state {}" % d) == "err ESTALE"
        assert holder.cmd("del domains/%s/state" % d) == "err ESTALE"
    finally:
        holder.close()
    assert served(a, d) == before and served(b, d) == before
    assert a.status_json(d)["generation"] == gen


def caught_issuing(nodes, etcd, d):
    """Two nodes, d made on the first with an RSA-4096 key (generated under
    the domain's issuance lock, which takes half a second or more here):
    returns (the node seen holding the lock, the other). Never seeing the
    lock fails the test rather than skipping it, so the fencing below is
    always exercised."""
    a, b = nodes(2, extra="[domain %s]\nkey_type = rsa4096\n" % d)
    lock = "%s/locks/issue/%s" % (etcd.prefix, d)
    os.mkdir(a.path(d))
    holder = h.wait_for(lambda: lock_holder(etcd, lock, (a, b)), timeout=10,
                        interval=0.005, what="a node to take %s's lock" % d)
    return holder, (b if holder is a else a)


def test_sigkill_node_mid_issuance_is_taken_over(nodes, etcd):
    """A real node killed while it holds a domain's lock (RSA-4096 keys are
    slow enough to catch it holding one); the other node finishes."""
    d = "slow.example.com"
    holder, other = caught_issuing(nodes, etcd, d)
    holder.kill9()
    other_st = same_everywhere([other], d, source="local", timeout=120)
    assert other_st
    assert h.load_key(other.read(d, "privkey.pem")).key_size == 4096
    h.lazy_unmount(holder.mount)


def test_sigstop_node_past_lease_its_late_writes_refused(nodes, etcd):
    """A real node paused (SIGSTOP) while it holds a domain's lock, for
    longer than its lease: the other node issues; the paused one, resumed,
    has its late writes refused and changes nothing."""
    d = "paused.example.com"
    holder, other = caught_issuing(nodes, etcd, d)
    holder.signal(signal.SIGSTOP)
    try:
        # (RSA-4096 keys take tens of seconds on a loaded machine.)
        same_everywhere([other], d, source="local", timeout=120)
    finally:
        holder.signal(signal.SIGCONT)
    winner = served(other, d)
    gen = other.status_json(d)["generation"]
    # The holder goes on where it stopped: its commit is fenced out (or,
    # paused before it read the state again, it sees the other's work).
    holder.wait_log(r"%s: (lock lost while issuing|already issued by another node)"
                    % re.escape(d), timeout=120)
    # Nothing the holder did on waking changed what either node serves.
    h.wait_for(lambda: served(holder, d) == winner, timeout=60,
               what="the paused node to serve the new holder's certificate (%r / %r)"
               % (holder.status_json(d), other.status_json(d)))
    assert served(other, d) == winner
    assert other.status_json(d)["generation"] == gen
    assert len(serials_in_logs([holder, other], d)) == 1


def test_etcd_member_down_nothing_stops(nodes, etcd):
    a, b = nodes(2)
    etcd.kill_member(0)
    a.mkdir("member-down.example.com")
    same_everywhere([a, b], "member-down.example.com", source="local")
    etcd.start_member(etcd.members[0])
    etcd.wait_healthy()


def test_all_members_down_serve_refuse_catch_up(nodes, etcd):
    a, b = nodes(2)
    d = "before.example.com"
    a.mkdir(d)
    cert, key = same_everywhere([a, b], d, source="local")
    etcd.stop_all()
    # Serving goes on; changes are refused with a clear error.
    assert served(a, d) == (cert, key)
    with pytest.raises(OSError) as ei:
        os.mkdir(a.path("during.example.com"))
    assert ei.value.errno in (errno.EHOSTUNREACH, errno.EIO)
    h.wait_for(lambda: a.status_json()["store"] == "unreachable", timeout=20,
               what="status to say the store is unreachable")
    assert "unreachable" in a.read("status", mode="r")
    assert served(b, d) == (cert, key)
    etcd.start_all()
    h.wait_for(lambda: a.status_json()["store"] == "reachable", timeout=30,
               what="status to say the store is back")
    # Caught up without a restart: a change on b reaches a.
    b.mkdir("after.example.com")
    same_everywhere([a, b], "after.example.com", source="local")
    assert "during.example.com" not in os.listdir(a.mount)


def test_compaction_while_a_watch_is_down(nodes, etcd):
    a, b = nodes(2, members=[[0], [1, 2]])
    keep, gone = "keep.example.com", "gone.example.com"
    b.mkdir(keep)
    b.mkdir(gone)
    same_everywhere([a, b], gone, source="local")
    etcd.stop_member(0)  # a's only endpoint
    b.mkdir("new.example.com")
    os.rmdir(b.path(gone))
    etcd.compact()
    etcd.start_member(etcd.members[0])
    a.wait_log(r"re-read \d+ domains from the store", timeout=30)
    same_everywhere([a, b], "new.example.com", source="local")
    h.wait_for(lambda: gone not in os.listdir(a.mount), timeout=20, what="gone on a")
    assert keep in os.listdir(a.mount)


def test_restarted_node_rebuilds_from_etcd(nodes):
    a, b = nodes(2)
    for d in ("r1.example.com", "r2.example.com"):
        a.mkdir(d)
        same_everywhere([a, b], d, source="local")
    before = {d: served(b, d) for d in ("r1.example.com", "r2.example.com")}
    assert b.stop() == 0
    b.start()
    for d, pair in before.items():
        assert served(b, d) == pair


def test_start_refused_without_key_file(certfs, etcd):
    n = certfs(store=etcd.store_url(etcd.prefix), start=False)
    with pytest.raises(h.DaemonDied) as ei:
        n.start()
    assert "key_encryption_key_file is required" in str(ei.value)


def test_node_over_tls_with_password(certfs, etcd_tls, kek, tmp_path):
    pw = str(tmp_path / "pw")
    with open(pw, "w") as f:
        f.write("s3cret-pw\n")
    os.chmod(pw, 0o600)
    conf = ("[etcd]\nkey_encryption_key_file = %s\nca_bundle = %s\nuser = root\n"
            "password_file = %s\n" % (kek, etcd_tls.ca, pw))
    n = certfs(config=conf, store=etcd_tls.store_url("node-tls"))
    n.mkdir("tls.example.com")
    assert etcd_tls.keys("node-tls/domains/tls.example.com/")
    # A password file others can read is refused at start.
    os.chmod(pw, 0o644)
    m = certfs(config=conf, store=etcd_tls.store_url("node-tls"), start=False)
    with pytest.raises(h.DaemonDied) as ei:
        m.start()
    assert "readable by others" in str(ei.value)


def test_http01_tokens_in_the_store_answered_by_every_node(nodes, etcd, kek):
    a, b = nodes(2)
    token = "tok-123_ABCdef"
    t = Tool(etcd.store_url(etcd.prefix), kek)
    try:
        # What an issuing node does for a pending http-01 challenge.
        t.ok("put challenges/%s %s.thumbprint" % (token, token))
        for n in (a, b):
            with open(n.path(".well-known", "acme-challenge", token)) as f:
                assert f.read() == token + ".thumbprint"
        assert not os.path.exists(a.path(".well-known", "acme-challenge", "other-token"))
    finally:
        assert t.close() == 0
