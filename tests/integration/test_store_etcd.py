# SPDX-License-Identifier: MIT
"""The etcd store layer against a real three-member etcd cluster.

Each test drives store-tool (tests/tools/store_tool.c: the store API, one
command per line) as one or more clients of the same prefix: key/value
operations, compare-and-swap, a watch that sees another client's change,
compaction while watching, lock exclusivity and fencing after a lease
expired, a member killed, and every member stopped.
"""

import base64
import os
import queue
import signal
import subprocess
import threading

import pytest

import certfs_harness as h


def store_tool_bin():
    b = os.environ.get("STORE_TOOL")
    if b:
        return b
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    for d in ("build", "build-test", "build-it", "builddir"):
        p = os.path.join(root, d, "tests", "tools", "store-tool")
        if os.access(p, os.X_OK):
            return p
    return None


def write_kek(path):
    with open(path, "w") as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(path, 0o600)
    return path


class Tool:
    """One store-tool process: cmd() sends a line and returns the answer;
    events are collected apart and waited for with wait_event()."""

    def __init__(self, url, kek, ttl=None, env=None):
        b = store_tool_bin()
        if not b:
            h.missing_prerequisite("no store-tool: set STORE_TOOL to the built test driver")
        argv = [b, url, kek] + ([str(ttl)] if ttl else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1,
                                     env=dict(os.environ, **(env or {})))
        self.answers = queue.Queue()
        self.events = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        first = self.answers.get(timeout=20)
        assert first == "ready", "store-tool did not start: %r %s" % (first, self.stderr())

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("event "):
                with self.lock:
                    self.events.append(line[6:])
            else:
                self.answers.put(line)
        self.answers.put(None)

    def stderr(self):
        if self.proc.poll() is None:
            return ""
        if not hasattr(self, "_stderr"):
            try:
                self._stderr = self.proc.stderr.read()
            except ValueError:
                self._stderr = ""
        return self._stderr

    def cmd(self, line, timeout=20):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        ans = self.answers.get(timeout=timeout)
        assert ans is not None, "store-tool died: %s" % self.stderr()
        return ans

    def ok(self, line):
        ans = self.cmd(line)
        assert ans == "ok" or ans.startswith("ok "), "%s -> %s" % (line, ans)
        return ans[3:]

    def wait_event(self, want, timeout=10.0):
        def seen():
            with self.lock:
                return want in self.events
        h.wait_for(seen, timeout=timeout, what="event %r (got %r)" % (want, self.events))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (BrokenPipeError, ValueError, OSError):
                pass
        return self.proc.returncode


@pytest.fixture
def tools(etcd, tmp_path):
    made = []
    kek = write_kek(str(tmp_path / "kek"))

    def make(ttl=None, prefix=None, key=None, members=None):
        url = etcd.store_url(prefix or etcd.prefix)
        if members is not None:
            url = "etcd://%s/%s" % (",".join(etcd.members[i].endpoint for i in members),
                                    prefix or etcd.prefix)
        t = Tool(url, key or kek, ttl=ttl)
        made.append(t)
        return t

    yield make
    problems = []
    for t in made:
        if t.proc.poll() is None:
            t.proc.send_signal(signal.SIGCONT)
        killed = t.proc.returncode == -signal.SIGKILL
        rc = t.close()
        # A clean exit, and no sanitizer report (LeakSanitizer exits non-zero).
        if not killed and rc != 0:
            problems.append("store-tool exited with %s: %s" % (rc, t.stderr()[-2000:]))
    assert not problems, problems


def test_put_get_list_move_delete(etcd, tools):
    t = tools()
    t.ok("put domains/a.example/state s1")
    t.ok("put domains/a.example/gen/1 g1")
    t.ok("put domains/b.example/state s2")
    assert t.ok("get domains/a.example/state") == "s1"
    assert sorted(t.ok("list domains").split()) == ["a.example", "b.example"]
    assert sorted(t.ok("list domains/a.example").split()) == ["gen", "state"]
    assert t.ok("list -").split() == ["domains"]
    assert t.cmd("get domains/none/state") == "err ENOENT"
    assert t.cmd("list nothing") == "err ENOENT"
    t.ok("move domains/a.example archive/a.example@1")
    assert t.cmd("get domains/a.example/state") == "err ENOENT"
    assert t.ok("get archive/a.example@1/gen/1") == "g1"
    assert t.cmd("move domains/b.example archive/a.example@1") == "err EEXIST"
    assert t.ok("get domains/b.example/state") == "s2"
    t.ok("del domains/b.example/state")
    assert t.cmd("del domains/b.example/state") == "err ENOENT"
    assert t.cmd("list domains") == "err ENOENT"
    # Bad keys never reach etcd.
    assert t.cmd("put ../x v") == "err EINVAL"
    assert t.cmd("put a//b v") == "err EINVAL"


def test_values_are_sealed_in_etcd(etcd, tools, tmp_path):
    t = tools()
    t.ok("put domains/k.example/gen/1 SECRETKEYBYTES")
    raw = etcd.get(etcd.prefix + "/domains/k.example/gen/1")
    assert raw is not None and b"SECRETKEYBYTES" not in raw
    assert raw.startswith(b"cfs1")
    # Another key does not open it; the client says so instead of serving junk.
    other = tools(key=write_kek(str(tmp_path / "other-kek")))
    assert other.cmd("get domains/k.example/gen/1") == "err EINVAL"
    # A sealed value copied by hand to another name does not open either.
    etcd.put(etcd.prefix + "/domains/x.example/gen/1", raw)
    assert t.cmd("get domains/x.example/gen/1") == "err EINVAL"


def test_compare_and_swap(etcd, tools):
    a, b = tools(), tools()
    a.ok("putif ca/root 0 first")
    assert b.cmd("putif ca/root 0 second") == "err EEXIST"
    rev, value = a.ok("getrev ca/root").split()
    assert value == "first"
    b.ok("putif ca/root %s changed-by-b" % rev)
    assert a.cmd("putif ca/root %s changed-by-a" % rev) == "err ESTALE"
    assert a.ok("get ca/root") == "changed-by-b"


def test_watch_sees_another_clients_change(etcd, tools):
    a, b = tools(), tools()
    a.ok("watch -")
    b.ok("put domains/w.example/state hello")
    a.wait_event("put domains/w.example/state hello")
    b.ok("del domains/w.example/state")
    a.wait_event("del domains/w.example/state")


def test_compaction_while_watching_resyncs(etcd, tools):
    a, b = tools(members=[0]), tools(members=[1, 2])
    a.ok("watch -")
    b.ok("put domains/c.example/state one")
    a.wait_event("put domains/c.example/state one")
    # Take a's only member away, write, compact, and let it come back: its
    # watch resumes from a compacted revision and must say "re-read".
    etcd.stop_member(0)
    a.wait_event("down", timeout=20)
    b.ok("put domains/c.example/state two")
    b.ok("put domains/c.example/state three")
    etcd.compact()
    etcd.start_member(etcd.members[0])
    a.wait_event("resync", timeout=30)
    assert a.ok("get domains/c.example/state") == "three"


def test_lock_exclusive_and_fenced_after_lease_expiry(etcd, tools):
    a, b = tools(ttl=2), tools(ttl=2)
    a.ok("lock domains/l.example")
    assert b.cmd("lock domains/l.example") == "err EBUSY"
    a.ok("fence domains/l.example")
    a.ok("put domains/l.example/state by-a")
    # a is paused past its lease: its lock goes, b takes it over.
    a.proc.send_signal(signal.SIGSTOP)
    try:
        h.wait_for(lambda: b.cmd("lock domains/l.example") == "ok", timeout=20,
                   interval=0.3, what="b to take the lock after a's lease expired")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    b.ok("fence domains/l.example")
    b.ok("put domains/l.example/state by-b")
    # a wakes up believing it holds the lock: its write is refused.
    assert a.cmd("put domains/l.example/state late-a") == "err ESTALE"
    assert a.cmd("del domains/l.example/state") == "err ESTALE"
    assert b.ok("get domains/l.example/state") == "by-b"
    # Released: another may take it at once.
    b.ok("unlock domains/l.example")
    a.ok("unfence")
    a.ok("lock domains/l.example")


def test_one_member_killed_still_works(etcd, tools):
    t = tools()
    t.ok("put domains/m.example/state before")
    etcd.kill_member(0)
    t.ok("put domains/m.example/state after")
    assert t.ok("get domains/m.example/state") == "after"
    assert t.ok("reachable") == "1"
    etcd.start_member(etcd.members[0])
    etcd.wait_healthy()


def test_all_members_stopped_clear_error(etcd, tools):
    t = tools()
    t.ok("put domains/d.example/state before")
    etcd.stop_all()
    assert t.cmd("put domains/d.example/state during") == "err EHOSTUNREACH"
    assert t.cmd("get domains/d.example/state") == "err EHOSTUNREACH"
    assert t.ok("reachable") == "0"
    etcd.start_all()
    assert t.ok("get domains/d.example/state") == "before"
    assert t.ok("reachable") == "1"


def test_open_refuses_bad_specs_and_keys(etcd, tmp_path):
    b = store_tool_bin()
    if not b:
        h.missing_prerequisite("no store-tool")
    kek = write_kek(str(tmp_path / "kek"))
    loose = str(tmp_path / "loose")
    with open(loose, "w") as f:
        f.write(base64.b64encode(os.urandom(32)).decode())
    os.chmod(loose, 0o644)
    short = str(tmp_path / "short")
    with open(short, "w") as f:
        f.write("abc")
    os.chmod(short, 0o600)
    cases = [
        ([etcd.store_url("p"), loose], "readable by others"),
        ([etcd.store_url("p"), short], "not 32 bytes"),
        ([etcd.store_url("p")], "key_encryption_key_file is required"),
        (["etcd://127.0.0.1/p", kek], "is not HOST:PORT"),
        (["etcd://%s/" % etcd.endpoints, kek], "expected etcd://HOST:PORT"),
        (["etcd://%s/../x" % etcd.endpoints, kek], "expected etcd://HOST:PORT"),
        (["etcd://127.0.0.1:1/p", kek], "no endpoint answers"),
    ]
    for argv, want in cases:
        r = subprocess.run([b] + argv, input="", capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, (argv, r.stdout, r.stderr)
        assert want in r.stderr, (argv, r.stderr)
        assert r.stderr.count("\n") == 1, r.stderr


def test_tls_with_ca_and_password_auth(etcd_tls, tmp_path):
    kek = write_kek(str(tmp_path / "kek"))
    pw = str(tmp_path / "pw")
    with open(pw, "w") as f:
        f.write("s3cret-pw\n")
    os.chmod(pw, 0o600)
    url = etcd_tls.store_url("tls")
    env = {"STORE_TOOL_CA": etcd_tls.ca, "STORE_TOOL_USER": "root",
           "STORE_TOOL_PASSWORD_FILE": pw}
    t = Tool(url, kek, env=env)
    try:
        t.ok("put domains/t.example/state over-tls")
        assert t.ok("get domains/t.example/state") == "over-tls"
        t.ok("lock issue/t.example")
    finally:
        assert t.close() == 0, t.stderr()
    assert etcd_tls.get("tls/domains/t.example/state").startswith(b"cfs1")

    b = store_tool_bin()
    bad_pw = str(tmp_path / "bad")
    with open(bad_pw, "w") as f:
        f.write("wrong\n")
    os.chmod(bad_pw, 0o600)
    cases = [
        (dict(env, STORE_TOOL_PASSWORD_FILE=bad_pw), "authentication refused"),
        ({k: v for k, v in env.items() if k != "STORE_TOOL_USER"}, "access refused"),
        # Without the CA the server's certificate is not trusted.
        ({"STORE_TOOL_CA": "/etc/ssl/certs/ca-certificates.crt", "STORE_TOOL_USER": "root",
          "STORE_TOOL_PASSWORD_FILE": pw}, "no endpoint answers"),
    ]
    for e, want in cases:
        r = subprocess.run([b, url, kek], input="", capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, **e))
        assert r.returncode == 1 and want in r.stderr, (e, r.stderr)
