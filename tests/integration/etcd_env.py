# SPDX-License-Identifier: MIT
"""A real three-member etcd cluster on loopback, for the etcd store tests.

Plain helpers, no pytest fixtures (conftest.py wraps EtcdCluster in a
session fixture): EtcdCluster starts Debian's etcd 3.4 (`etcd-server`) as
three members on free loopback ports with a temporary data directory each,
waits for every member's /health with a deadline, and always stops what it
started. Single members can be killed (SIGKILL), stopped (SIGTERM) and
started again with their data; the whole cluster can be stopped and
restarted; compact() forces a compaction at the current revision.

The client side talks to etcd's JSON gateway with urllib, the same API the
daemon uses, so the tests need no etcd client library.
"""

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ETCD = "/usr/bin/etcd"
POLL = 0.05


from pebble_env import free_port, which  # noqa: F401 - which is used by conftest


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def unb64(s):
    return base64.b64decode(s or "")


def prefix_end(prefix):
    """etcd's range_end for "every key starting with prefix"."""
    b = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    b[-1] += 1
    return bytes(b)


class Member:
    def __init__(self, name, base, client_port, peer_port, scheme="http"):
        self.name = name
        self.data = os.path.join(base, name + ".etcd")
        self.log_path = os.path.join(base, name + ".log")
        self.client_port = client_port
        self.peer_port = peer_port
        self.proc = None
        self.log = None
        self.scheme = scheme

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def url(self):
        return "%s://%s" % (self.scheme, self.endpoint)

    def running(self):
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    """Three etcd members on 127.0.0.1; start(), stop(), and the helpers
    below. `endpoints` is "HOST:PORT,HOST:PORT,HOST:PORT" for a store URL.
    tls=(ca, cert, key) serves clients over https with that certificate;
    auth_token (after enable_auth) is sent with the test's own requests."""

    def __init__(self, size=3, base=None, tls=None):
        self.base = base or tempfile.mkdtemp(prefix="certfs-etcd-")
        self.own_base = base is None
        self.tls = tls
        self.members = []
        for i in range(size):
            self.members.append(Member("m%d" % i, self.base, free_port(), free_port(),
                                       "https" if tls else "http"))
        self.token = "certfs-test-%d-%d" % (os.getpid(), id(self))
        self.auth_token = None
        self.auth = None
        self.ctx = ssl.create_default_context(cafile=tls[0]) if tls else None

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members)

    def store_url(self, prefix):
        return "etcd://%s/%s" % (self.endpoints, prefix)

    def _initial_cluster(self):
        return ",".join("%s=http://127.0.0.1:%d" % (m.name, m.peer_port) for m in self.members)

    def _argv(self, m):
        return [which(ETCD), "--name", m.name, "--data-dir", m.data,
                "--listen-client-urls", m.url, "--advertise-client-urls", m.url,
                "--listen-peer-urls", "http://127.0.0.1:%d" % m.peer_port,
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % m.peer_port,
                "--initial-cluster", self._initial_cluster(),
                "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new",
                # Small timings: elections within a second on a loaded machine.
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--logger", "zap", "--log-outputs", m.log_path,
                "--auto-compaction-retention", "0",
                "--quota-backend-bytes", str(1 << 30)] + (
                    ["--cert-file", self.tls[1], "--key-file", self.tls[2]] if self.tls else [])

    def start_member(self, m):
        if m.running():
            return
        m.proc = subprocess.Popen(self._argv(m), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)

    def start(self, timeout=60.0):
        for m in self.members:
            self.start_member(m)
        self.wait_healthy(timeout=timeout)
        return self

    def healthy(self, m):
        if not m.running():
            return False
        try:
            with urllib.request.urlopen(m.url + "/health", timeout=2, context=self.ctx) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def wait_healthy(self, members=None, timeout=60.0):
        members = members or [m for m in self.members if m.running()]
        deadline = time.monotonic() + timeout
        while True:
            dead = [m.name for m in members if m.proc is not None and m.proc.poll() is not None]
            if dead:
                raise RuntimeError("etcd member(s) %s exited; see %s" % (dead, self.base))
            if all(self.healthy(m) for m in members):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError("etcd cluster not healthy after %.0fs; logs in %s"
                                   % (timeout, self.base))
            time.sleep(POLL)

    def kill_member(self, i):
        """SIGKILL member i (its data stays for restart_member)."""
        m = self.members[i]
        if m.running():
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait(timeout=30)

    def stop_member(self, i):
        m = self.members[i]
        if m.running():
            m.proc.send_signal(signal.SIGTERM)
            try:
                m.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(timeout=30)

    def restart_member(self, i, timeout=60.0):
        m = self.members[i]
        self.stop_member(i)
        self.start_member(m)
        self.wait_healthy([m], timeout=timeout)

    def stop_all(self):
        for i in range(len(self.members)):
            self.stop_member(i)

    def start_all(self, timeout=60.0):
        for m in self.members:
            self.start_member(m)
        self.wait_healthy(timeout=timeout)

    def stop(self):
        self.stop_all()
        if self.own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    # ---- the JSON gateway, for checks made by the tests themselves -------

    def call(self, path, body, timeout=5.0):
        last = None
        for m in self.members:
            if not m.running():
                continue
            hdrs = {"Content-Type": "application/json"}
            if self.auth_token:
                hdrs["Authorization"] = self.auth_token
            req = urllib.request.Request(m.url + path, data=json.dumps(body).encode(),
                                         headers=hdrs)
            try:
                with urllib.request.urlopen(req, timeout=timeout, context=self.ctx) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                # etcd's simple tokens expire after 5 idle minutes.
                if e.code == 401 and self.auth and path != "/v3/auth/authenticate":
                    self.auth_token = None
                    self.auth_token = self.call("/v3/auth/authenticate", {
                        "name": self.auth[0], "password": self.auth[1]})["token"]
                    return self.call(path, body, timeout)
                last = e
            except (OSError, ValueError) as e:
                last = e
        raise RuntimeError("etcd %s: no member answered (%r)" % (path, last))

    def revision(self):
        return int(self.call("/v3/kv/range", {"key": b64("\0")})["header"]["revision"])

    def get(self, key):
        r = self.call("/v3/kv/range", {"key": b64(key)})
        kvs = r.get("kvs") or []
        return unb64(kvs[0].get("value")) if kvs else None

    def keys(self, prefix):
        r = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                       "keys_only": True})
        return sorted(unb64(kv["key"]).decode() for kv in r.get("kvs") or [])

    def put(self, key, value):
        return self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def delete_prefix(self, prefix):
        return self.call("/v3/kv/deleterange",
                         {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})

    def compact(self):
        """Compact all history up to the current revision (physically)."""
        rev = self.revision()
        self.call("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    def enable_auth(self, user, password):
        """Create user (with the root role) and turn etcd's auth on; the
        test's own requests then authenticate as that user."""
        self.call("/v3/auth/user/add", {"name": user, "password": password})
        self.call("/v3/auth/user/grant", {"user": user, "role": "root"})
        self.call("/v3/auth/enable", {})
        self.auth = (user, password)
        self.auth_token = self.call("/v3/auth/authenticate",
                                    {"name": user, "password": password})["token"]
