# SPDX-License-Identifier: MIT
"""certfs as a service: the sd_notify protocol systemd's Type=notify
listens to (READY=1 once the mount serves, STATUS=, STOPPING=1 on
shutdown), and the fstab line of the manual mounted with `mount -a -T`."""

import os
import socket
import subprocess
import threading
import time

import pytest

import certfs_harness as h

D = "service.example"


class NotifyListener:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def recv_until(self, word, timeout=20.0):
        """Messages received until one holds the line `word` (all of them)."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s from certfs within %.0fs; got %r"
                                     % (word, timeout, got))
            self.sock.settimeout(left)
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            got.append(msg)
            if word in msg.split("\n"):
                return got

    def close(self):
        self.sock.close()


@pytest.mark.timeout(90)
def test_sd_notify_ready_then_stopping(certfs, tmp_path):
    lst = NotifyListener(tmp_path / "notify.sock")
    try:
        m = certfs(start=False, env={"NOTIFY_SOCKET": lst.path})
        os.makedirs(m.store, mode=0o700, exist_ok=True)
        starter = threading.Thread(target=m.start)
        starter.start()
        msgs = lst.recv_until("READY=1")
        # READY=1 means the mount serves: it is there and answers now.
        assert h.is_mounted(m.mount), "READY=1 before the mount exists"
        assert "status" in os.listdir(m.mount)
        starter.join(30)
        ready = msgs[-1].split("\n")
        status = [x for x in ready if x.startswith("STATUS=")]
        assert status and "serving 0 domains on %s" % m.mount in status[0], msgs
        assert not any("STOPPING=1" in x for x in msgs)
        m.mkdir(D)
        assert m.stop() == 0
        msgs = lst.recv_until("STOPPING=1")
        assert any(x.startswith("STATUS=unmounting") for x in msgs[-1].split("\n")), msgs
    finally:
        lst.close()


@pytest.mark.timeout(90)
def test_sd_notify_ready_once_both_mounts_serve(certfs, tmp_path):
    """With --serve, READY=1 says both mounts serve; STOPPING=1 names both
    and both are gone once certfs exits."""
    serve = str(tmp_path / "serve")
    os.mkdir(serve)
    lst = NotifyListener(tmp_path / "notify.sock")
    try:
        m = certfs(start=False, args=("--serve", serve), env={"NOTIFY_SOCKET": lst.path})
        os.makedirs(m.store, mode=0o700, exist_ok=True)
        starter = threading.Thread(target=m.start)
        starter.start()
        msgs = lst.recv_until("READY=1")
        assert h.is_mounted(m.mount) and h.is_mounted(serve), "READY=1 before both mounts"
        assert "status" in os.listdir(serve)
        starter.join(30)
        status = [x for x in msgs[-1].split("\n") if x.startswith("STATUS=")]
        assert status and "on %s and read-only on %s" % (m.mount, serve) in status[0], msgs
        assert m.stop() == 0
        msgs = lst.recv_until("STOPPING=1")
        status = [x for x in msgs[-1].split("\n") if x.startswith("STATUS=")]
        assert status == ["STATUS=unmounting %s and %s" % (m.mount, serve)], msgs
        assert not h.is_any_mounted(m.mount) and not h.is_any_mounted(serve)
    finally:
        lst.close()
        if h.is_any_mounted(serve):
            h.lazy_unmount(serve)


@pytest.mark.timeout(60)
def test_sighup_reload_notifies_reloading_and_ready(certfs, tmp_path):
    lst = NotifyListener(tmp_path / "notify.sock")
    try:
        m = certfs(env={"NOTIFY_SOCKET": lst.path})
        lst.recv_until("READY=1")
        m.signal(__import__("signal").SIGHUP)
        msgs = lst.recv_until("READY=1")
        assert any("RELOADING=1" in x.split("\n") for x in msgs), msgs
    finally:
        lst.close()


@pytest.mark.timeout(60)
def test_fstab_line_mount_a(certfs, tmp_path):
    """The path form of the fstab line in certfs(8) and the README
    (`/usr/sbin/certfs#STORE MOUNT fuse ...`), through `mount -a -T`.
    mount(8) gives its helper no PATH of ours, so the fuse.certfs form
    needs certfs installed in sbin: contrib/check-deb.sh mounts that one
    from the installed package."""
    if not os.access("/sbin/mount.fuse3", os.X_OK):
        h.missing_prerequisite("/sbin/mount.fuse3 is not installed")
    m = certfs(start=False)
    os.makedirs(m.store, mode=0o700, exist_ok=True)
    fstab = tmp_path / "fstab"
    fstab.write_text("# certfs\n%s#%s  %s  fuse  allow_other,config=%s  0 0\n"
                     % (m.binary, m.store, m.mount, m.config))
    r = subprocess.run(["mount", "-a", "-T", str(fstab)], capture_output=True, text=True,
                       env=m.env(), timeout=30, stdin=subprocess.DEVNULL)
    m.daemon_pids = h.pids_of(m.binary, m.mount)
    assert r.returncode == 0, r.stderr
    assert h.is_mounted(m.mount)
    assert any(e[2] == m.store for e in h.mount_entries(m.mount)), h.mount_entries(m.mount)
    m.mkdir(D)
    assert D in open(m.path("status")).read()
    pids = m.daemon_pids
    assert pids
    subprocess.run(["umount", m.mount], check=True)
    for pid in pids:
        h.wait_for(lambda: not h.pid_alive(pid), 15, "certfs %d to exit" % pid)
    assert not h.is_any_mounted(m.mount)
