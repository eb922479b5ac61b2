# SPDX-License-Identifier: MIT
"""Where the daemon's log lines go: stderr in the foreground and under
systemd, syslog when detached with a syslog daemon, and the stderr it was
started with when detached without one (never dropped). Start-up says
nothing it should not: no libfuse warning, no doubled prefix."""

import os
import re
import subprocess

import pytest

import certfs_harness as h

D = "logs.example"
LINE = re.compile(r"^<[0-7]>certfs: [a-z]")


def run_detached(m, env):
    """Start certfs without -f (stderr to a file), mkdir a domain, unmount,
    wait for the daemon to exit; returns what it wrote to its stderr."""
    os.makedirs(m.store, mode=0o700, exist_ok=True)
    log = os.path.join(m.dir, "detached.log")
    with open(log, "w") as f:
        r = subprocess.run(m.argv(foreground=False), stdin=subprocess.DEVNULL, stdout=f,
                           stderr=f, env=env, timeout=30)
    assert r.returncode == 0, open(log).read()
    pids = h.pids_of(m.binary, m.mount)
    m.daemon_pids = pids
    assert len(pids) == 1 and h.is_mounted(m.mount), (pids, open(log).read())
    m.mkdir(D)
    subprocess.run(["fusermount3", "-u", m.mount], check=True)
    h.wait_for(lambda: not h.pid_alive(pids[0]), 15, "detached certfs to exit")
    return open(log).read()


@pytest.mark.timeout(60)
def test_foreground_start_is_clean(certfs):
    m = certfs()
    m.mkdir(D)
    assert m.stop() == 0
    err = m.stderr()
    assert "Ignoring invalid max threads" not in err, err
    assert "certfs: certfs:" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert any("serving 0 domains on %s" % m.mount in ln for ln in lines), err
    assert any("unmounting %s" % m.mount in ln for ln in lines), err
    bad = [ln for ln in lines if not LINE.match(ln)]
    assert not bad, "lines without a priority and one certfs: prefix: %r" % bad


@pytest.mark.timeout(60)
def test_detached_without_syslog_logs_to_stderr(certfs):
    if h.syslog_listening():
        h.missing_prerequisite("a syslog daemon listens on /dev/log on this machine")
    m = certfs(start=False)
    env = m.env()
    env.pop("JOURNAL_STREAM", None)
    env.pop("INVOCATION_ID", None)
    out = run_detached(m, env)
    assert "no syslog daemon on /dev/log: logging to stderr" in out, out
    # Lines from after the detach: the domain's issuance and the unmount.
    assert re.search(r"certfs: .*%s" % re.escape(D), out), out
    assert "unmounting %s" % m.mount in out, out
    assert "Ignoring invalid max threads" not in out


@pytest.mark.timeout(60)
def test_detached_under_systemd_logs_to_stderr(certfs):
    """Under systemd stderr is the journal, whatever /dev/log says."""
    m = certfs(start=False)
    env = m.env()
    env["INVOCATION_ID"] = "0123456789abcdef0123456789abcdef"
    out = run_detached(m, env)
    assert "no syslog daemon" not in out, out
    assert re.search(r"certfs: .*%s" % re.escape(D), out), out
    assert "unmounting %s" % m.mount in out, out


@pytest.mark.timeout(60)
def test_detached_does_not_hold_a_pipe_open(certfs):
    """`out=$(certfs MOUNT 2>&1)` returns once the mount is up: a detached
    daemon never keeps a pipe of its caller open (its lines go to the
    console when there is no syslog daemon)."""
    m = certfs(start=False)
    os.makedirs(m.store, mode=0o700, exist_ok=True)
    env = m.env()
    env.pop("JOURNAL_STREAM", None)
    env.pop("INVOCATION_ID", None)
    r = subprocess.run(m.argv(foreground=False), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, env=env, timeout=30)
    m.daemon_pids = h.pids_of(m.binary, m.mount)
    assert r.returncode == 0, r.stderr
    assert h.is_mounted(m.mount)
    assert "Ignoring invalid" not in r.stderr
