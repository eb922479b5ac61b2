# SPDX-License-Identifier: MIT
"""Shutdown whatever the daemon is doing: SIGTERM, SIGINT and
`fusermount3 -u` end the process within the 5 s a service manager waits,
while an ACME order waits on a CA that accepted and never answers (the
proxy's freeze), or while a slow hook runs. After the signal the daemon
sends the CA nothing more, and the order it saved is resumed at the next
start (no second newOrder)."""

import os
import signal
import subprocess
import time

import pytest

import certfs_harness as h

# What a service manager gives a stopping daemon before SIGKILL (systemd's
# default is 90 s; 5 s is the contract's bound).
EXIT_DEADLINE = 5.0
ISSUE_TIMEOUT = 30.0


def start_acme(certfs, env, px, **kw):
    a = ["--issuer", "acme", "--acme-directory", px.directory_url,
         "--acme-ca-bundle", px.ca_bundle, "--http01-listen", "127.0.0.1:%d" % env.http_port]
    return certfs(args=a, env={"CERTFS_CHALLTESTSRV": env.challtestsrv_url}, **kw)


def end(m, how):
    """Stop m the way named; returns the seconds until the process ended."""
    t0 = time.monotonic()
    if how == "fusermount":
        subprocess.run(["fusermount3", "-u", m.mount], check=True)
    else:
        m.signal(getattr(signal, how))
    try:
        rc = m.proc.wait(EXIT_DEADLINE)
    except subprocess.TimeoutExpired:
        raise AssertionError("certfs still running %.0f s after %s; stderr:\n%s"
                             % (EXIT_DEADLINE, how, m.stderr()))
    took = time.monotonic() - t0
    assert rc == 0, "exit code %s after %s; stderr:\n%s" % (rc, how, m.stderr())
    h.wait_for(lambda: not h.is_any_mounted(m.mount), 10, "the unmount")
    print("shutdown by %s took %.3f s" % (how, took))
    return took


@pytest.mark.acme
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "fusermount"])
def test_shutdown_mid_order_with_a_frozen_ca(certfs, pebble, proxy, how):
    h.need_pebble()
    px = proxy(pebble)
    px.freeze_after_new_order = True
    m = start_acme(certfs, pebble, px)
    name = "frozen-%s-%d.example.test" % (how.lower(), os.getpid())
    os.mkdir(m.path(name))
    h.wait_for(lambda: px.frozen >= 1, ISSUE_TIMEOUT, "a request held by the frozen CA")
    order = os.path.join(m.store, "domains", name, "order")
    assert os.path.exists(order), "the order is not saved while it is in flight"
    with px.lock:
        before = len(px.requests)
    end(m, how)
    with px.lock:
        after = px.requests[before:]
    assert after == [], "requests sent to the CA after %s: %r" % (how, after)
    assert os.path.exists(order), "the saved order went away at shutdown"
    with open(os.path.join(m.store, "domains", name, "state")) as f:
        state = f.read()
    assert '"failures":0' in state.replace(" ", ""), \
        "a shutdown was counted as a failed issuance: %s" % state

    # The CA answers again: the next start finishes the same order.
    px.thaw()
    with px.lock:
        orders = len(px.new_orders)
    since = len(m.stderr())
    m.start()
    h.wait_for(lambda: m.status_json(name).get("source") == "acme", ISSUE_TIMEOUT,
               "the resumed order's certificate")
    assert "resuming order" in m.stderr()[since:], m.stderr()[since:]
    with px.lock:
        assert len(px.new_orders) == orders, "a new order was made instead of resuming"
    assert not os.path.exists(order)


@pytest.mark.acme
@pytest.mark.timeout(60)
def test_sigterm_while_the_ca_never_answers_at_all(certfs, pebble, proxy):
    """Frozen from the first request (the directory): the client is stuck in
    its very first transfer, not in a poll wait."""
    h.need_pebble()
    px = proxy(pebble)
    px.freeze = True
    m = start_acme(certfs, pebble, px)
    os.mkdir(m.path("never-%d.example.test" % os.getpid()))
    h.wait_for(lambda: px.frozen >= 1, ISSUE_TIMEOUT, "a request held by the frozen CA")
    with px.lock:
        before = len(px.requests)
    end(m, "SIGTERM")
    with px.lock:
        assert px.requests[before:] == []


@pytest.mark.timeout(60)
def test_sigterm_while_a_slow_deploy_hook_runs(certfs, tmp_path):
    """A deploy hook that would run for a minute (and a child it started)
    is killed at shutdown; the daemon does not wait for it."""
    pids = tmp_path / "hook.pids"
    hook = tmp_path / "deploy"
    hook.write_text("#!/bin/sh\necho $$ >> %s\nsleep 60 &\necho $! >> %s\nwait\n"
                    % (pids, pids))
    hook.chmod(0o755)
    m = certfs(config="[hooks]\ndeploy = %s\n" % hook)
    m.mkdir("hook.example.com")
    h.wait_for(lambda: pids.exists() and len(pids.read_text().split()) >= 2, 20,
               "the deploy hook and its child to start")
    end(m, "SIGTERM")
    for pid in map(int, pids.read_text().split()):
        h.wait_for(lambda: not h.pid_alive(pid), 5, "hook process %d to be gone" % pid)
