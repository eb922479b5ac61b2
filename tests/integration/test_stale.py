# SPDX-License-Identifier: MIT
"""Renewed but not reloaded: certfs sees who opens each generation of a
domain's certificate and key, and after a rotation names the processes that
still run on an older one (status, status.json, the root's status,
metrics, the deploy hook's CERTFS_STALE_PIDS, a "stale" notify). A real
nginx is listed with its master's pid until `nginx -s reload`; a reader
that exited is never listed; readers through a serving mount are not seen.
The probe asks nginx itself which certificate it serves."""

import os
import subprocess
import sys

import pytest

import certfs_harness as h
from test_metrics import parse, promtool, value
from test_nginx import NGINX, Nginx

D = "stale.example.com"

# A reader that opens the file from a thread other than its main one (FUSE
# reports the thread) and stays alive until its stdin closes.
READER = r"""
import sys, threading
def read():
    with open(sys.argv[1], "rb") as f:
        f.read()
t = threading.Thread(target=read)
t.start()
t.join()
print("read", flush=True)
sys.stdin.read()
"""

RECORD = """#!/bin/sh
echo "$CERTFS_EVENT $CERTFS_DOMAIN pids=$CERTFS_STALE_PIDS" >> %s
"""


def start_reader(path):
    p = subprocess.Popen([sys.executable, "-c", READER, path], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "read"
    return p


def end_reader(p):
    p.stdin.close()
    p.wait(10)


def stale_of(m, domain=D):
    return m.status_json(domain)["stale_readers"]


def lines_of(path):
    try:
        return [ln for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        return []


def renew(m, st):
    m.renew(D)
    return m.wait_state(D, state="valid", min_generation=st["generation"] + 1)


@pytest.mark.timeout(180)
def test_nginx_stale_until_reload(certfs, tmp_path):
    if not os.access(NGINX, os.X_OK):
        h.missing_prerequisite("nginx is not installed (%s)" % NGINX)
    log = tmp_path / "hooks.log"
    hook = tmp_path / "record.sh"
    hook.write_text(RECORD % log)
    hook.chmod(0o755)
    m = certfs(start=False)
    ndir = tmp_path / "nginx"
    ndir.mkdir()
    n = Nginx(str(ndir), m.mount, D)
    m.write_config("[hooks]\ndeploy = %s\nnotify = %s\nstale_after = 2\n"
                   "[domain %s]\nprobe = 127.0.0.1:%d\n" % (hook, hook, D, n.port))
    m.start()
    st = m.mkdir(D)
    n.start()
    try:
        master = n.proc.pid
        # Nobody is stale before a rotation; `nginx -t` read and exited.
        assert stale_of(m) == []
        old = st["generation"]
        st = renew(m, st)

        def listed():
            return [r for r in stale_of(m) if r["pid"] == master]
        h.wait_for(listed, 10, "nginx's master to be listed as stale")
        r = listed()[0]
        assert r["command"] == "nginx" and r["exe"] == NGINX, r
        assert r["generation"] == old and r["since"].endswith("Z"), r
        assert [x["pid"] for x in stale_of(m)] == [master], stale_of(m)

        text = m.read(D, "status", mode="r")
        assert "stale_readers: %d nginx (generation %d, since " % (master, old) in text, text
        root = m.read("status", mode="r").splitlines()
        row = [ln.split() for ln in root if ln.startswith(D + " ")][0]
        assert row[5:] == ["stale=1"], root
        assert "# 1 domain with stale readers (see DOMAIN/status)" in root, root
        rj = m.status_json()
        assert rj["stale_domains"] == 1
        assert [d["stale_readers"] for d in rj["domains"] if d["domain"] == D] == [1]
        metrics = m.read("metrics", mode="r")
        assert value(parse(metrics), "certfs_stale_readers", domain=D) == 1
        r = subprocess.run([promtool(), "check", "metrics"], input=metrics,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr + metrics

        # The deploy hook is told whom to reload; stale_after later the
        # notify hook says nginx is still on the old certificate.
        h.wait_for(lambda: "deploy %s pids=%d" % (D, master) in lines_of(log), 20,
                   "the deploy hook with CERTFS_STALE_PIDS")
        h.wait_for(lambda: "stale %s pids=%d" % (D, master) in lines_of(log), 20,
                   "the stale notify")
        m.wait_log(r"%s: 1 process still on an older certificate than generation %d: "
                   r"nginx \(pid %d, generation %d\)" % (D, st["generation"], master, old))

        # The probe: nginx presents the old generation's certificate.
        h.wait_for(lambda: m.status_json(D).get("probe"), 20, "the probe's answer")
        probe = m.status_json(D)["probe"]
        assert probe["endpoint"] == "127.0.0.1:%d" % n.port, probe
        assert probe["generation"] == old and probe["current"] is False, probe
        assert probe["fingerprint_sha256"] != st["fingerprint_sha256"], probe
        assert "probe: endpoint=127.0.0.1:%d" % n.port in m.read(D, "status", mode="r")

        n.reload()
        h.wait_for(lambda: stale_of(m) == [], 20, "the reload to clear nginx")
        # ... and, asked again, the new one.
        h.wait_for(lambda: m.status_json(D)["probe"].get("current"), 20,
                   "the probe to see the reloaded certificate")
        probe = m.status_json(D)["probe"]
        assert probe["generation"] == st["generation"], probe
        assert probe["fingerprint_sha256"] == st["fingerprint_sha256"], probe
        assert "stale=" not in m.read("status", mode="r")
        assert m.status_json()["stale_domains"] == 0
        assert value(parse(m.read("metrics", mode="r")), "certfs_stale_readers",
                     domain=D) == 0
        assert "stale_readers: none" in m.read(D, "status", mode="r")
    finally:
        n.stop()


@pytest.mark.timeout(120)
def test_exited_readers_never_listed(certfs):
    m = certfs()
    st = m.mkdir(D)
    live = start_reader(m.path(D, "privkey.pem"))
    gone = start_reader(m.path(D, "fullchain.pem"))
    gone_pid = gone.pid
    end_reader(gone)
    try:
        # cat reads and exits before the rotation, too.
        subprocess.run(["cat", m.path(D, "cert.pem")], check=True, capture_output=True)
        st = renew(m, st)
        h.wait_for(lambda: [r["pid"] for r in stale_of(m)] == [live.pid], 10,
                   "the live reader (its process, not its thread) alone to be listed")
        assert gone_pid not in [r["pid"] for r in stale_of(m)]
        # A reader that exits after the rotation drops off the list.
        end_reader(live)
        h.wait_for(lambda: stale_of(m) == [], 10, "the exited reader to drop off")
        # A process that reads the current generation is not stale.
        again = start_reader(m.path(D, "fullchain.pem"))
        assert stale_of(m) == []
        end_reader(again)
    finally:
        for p in (live, gone):
            if p.poll() is None:
                p.kill()
                p.wait(10)


@pytest.mark.timeout(120)
def test_serving_mount_and_tracking_off_see_nobody(certfs, tmp_path):
    """Opens through the serving mount never reach certfs: its readers are
    invisible (README says so). track_readers = false notes nobody."""
    serve = str(tmp_path / "serve")
    os.mkdir(serve)
    m = certfs(args=("--serve", serve))
    h.wait_for(lambda: h.is_mounted(serve), 10, "the serving mount")
    st = m.mkdir(D)
    h.wait_for(lambda: os.path.exists(os.path.join(serve, D, "fullchain.pem")), 10,
               "the domain on the serving mount")
    hidden = start_reader(os.path.join(serve, D, "fullchain.pem"))
    seen = start_reader(m.path(D, "fullchain.pem"))
    try:
        renew(m, st)
        h.wait_for(lambda: [r["pid"] for r in stale_of(m)] == [seen.pid], 10,
                   "the main mount's reader alone to be listed")
    finally:
        end_reader(hidden)
        end_reader(seen)

    off = certfs(config="[certfs]\ntrack_readers = false\n")
    st = off.mkdir(D)
    reader = start_reader(off.path(D, "fullchain.pem"))
    try:
        renew(off, st)
        assert stale_of(off) == []
        assert value(parse(off.read("metrics", mode="r")), "certfs_stale_readers",
                     domain=D) == 0
    finally:
        end_reader(reader)


@pytest.mark.timeout(60)
def test_probe_of_nothing_says_why(certfs):
    port = h.free_port()
    m = certfs(config="[domain %s]\nprobe = 127.0.0.1:%d\n" % (D, port))
    st = m.mkdir(D)
    renew(m, st)
    h.wait_for(lambda: m.status_json(D).get("probe"), 20, "the probe's answer")
    probe = m.status_json(D)["probe"]
    assert probe["error"] == "connect to 127.0.0.1:%d: Connection refused" % port, probe
    assert probe["fingerprint_sha256"] is None and "current" not in probe, probe
    m.wait_log(r"%s: probe: connect to 127.0.0.1:%d: Connection refused" % (D, port))
