# SPDX-License-Identifier: MIT
"""Helpers for the certfs integration tests: start and stop a real mount,
wait for conditions with deadlines, read the tree, and check keys and
certificates with python3-cryptography and the openssl command line.

Nothing here sleeps for a fixed time: every wait polls a condition until a
deadline and fails with a message naming what it waited for.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

POLL = 0.02
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                     "WARNING: ThreadSanitizer")
FSTYPE = "fuse.certfs"
DOMAIN_FILES = ("fullchain.pem", "cert.pem", "chain.pem", "privkey.pem",
                "bundle.pem", "cert.pfx", "status", "status.json")
KEY_FILES = ("privkey.pem", "bundle.pem", "cert.pfx")
PUBLIC_FILES = ("fullchain.pem", "cert.pem", "chain.pem", "status", "status.json")
ROOT_FILES = ("status", "status.json", "metrics", "ca.pem", "crt-list")


class WaitTimeout(AssertionError):
    pass


def wait_for(cond, timeout=10.0, what="condition", interval=POLL):
    """Poll cond() until it returns a true value (returned) or the deadline
    passes (AssertionError naming `what`, with the last exception if any)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last_exc = None
        except Exception as e:  # noqa: BLE001 - keep polling, report at the end
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise WaitTimeout(msg)
        time.sleep(interval)


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


def sanitized(binary):
    """Is binary built with AddressSanitizer?"""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def missing_prerequisite(reason):
    """Skip the test, except under CI=true where nothing may be skipped."""
    import pytest
    if in_ci():
        pytest.fail("CI=true and a prerequisite is missing: " + reason, pytrace=False)
    pytest.skip(reason)


def need_pebble():
    import pebble_env
    for b in (pebble_env.PEBBLE, pebble_env.CHALLTESTSRV):
        if not pebble_env.which(b):
            missing_prerequisite("%s is missing (apt install pebble)" % b)


def certfs_bin():
    b = os.environ.get("CERTFS_BIN")
    if b:
        return os.path.abspath(b)
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    for d in ("build", "build-it", "builddir"):
        p = os.path.join(root, d, "daemon", "certfs")
        if os.access(p, os.X_OK):
            return p
    return None


# ---------------------------------------------------------------- mountinfo

def _unescape(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mounts():
    """List of (mountpoint, fstype, source) from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf = left.split()
            rf = right.split()
            if len(lf) < 5 or len(rf) < 2:
                continue
            out.append((_unescape(lf[4]), rf[0], _unescape(rf[1])))
    return out


def mount_entries(path):
    real = os.path.realpath(path)
    return [m for m in mounts() if m[0] == real]


def is_mounted(path, fstype=FSTYPE):
    return any(m[1] == fstype for m in mount_entries(path))


def serving_mount(certfs, tmp_path):
    """A daemon from the certfs fixture with a serving mount (--serve) at
    tmp_path/serve beside its main mount: (daemon, serving mount path)."""
    serve = str(tmp_path / "serve")
    os.mkdir(serve)
    m = certfs(args=("--serve", serve))
    m.extra_mounts.append(serve)  # a daemon that died leaves it behind
    wait_for(lambda: is_mounted(serve), 10, "the serving mount")
    return m, serve


def is_any_mounted(path):
    return bool(mount_entries(path))


def lazy_unmount(path):
    """Best-effort detach of every mount stacked on path."""
    for _ in range(8):
        if not is_any_mounted(path):
            return
        r = subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


def pids_of(binary, mountpoint):
    """Pids of processes running `binary` with `mountpoint` on the command
    line (used to find a daemon that detached from the shell)."""
    real_bin = os.path.realpath(binary)
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
            exe = os.path.realpath("/proc/%s/exe" % d)
        except OSError:
            continue
        if exe != real_bin:
            continue
        if any(os.fsdecode(a).rstrip("/") == mountpoint.rstrip("/") for a in argv):
            found.append(int(d))
    return found


def syslog_listening():
    """Does a syslog daemon accept messages on /dev/log?"""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_UNIX, kind)
        try:
            s.connect("/dev/log")
            return True
        except OSError:
            pass
        finally:
            s.close()
    return False


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------- the daemon

class Certfs:
    """One certfs daemon and its mount."""

    def __init__(self, tmp, name, binary, config=None, args=(), options=None,
                 clock=None, store=None, mount=None, env=None):
        self.binary = binary
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.store = store or os.path.join(self.dir, "store")
        self.mount = mount or os.path.join(self.dir, "mnt")
        self.extra_mounts = []  # e.g. a --serve mount: unmounted at cleanup too
        if mount is None:
            os.makedirs(self.mount, exist_ok=True)
        # Always a config file of our own: never the host's /etc/certfs one.
        self.config = os.path.join(self.dir, "certfs.conf")
        self.write_config(config or "")
        self.args = list(args)
        self.options = options
        self.clock_file = None
        self.clock = None  # the offset last written to the clock file
        if clock is not None:
            self.clock_file = os.path.join(self.dir, "clock")
            self.set_clock(clock)
        self.extra_env = dict(env or {})
        self.proc = None
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.stderr_offset = 0
        self.runs = []  # (argv, returncode) of every start, for messages
        self.daemon_pids = []

    # -- configuration and clock
    def write_config(self, text):
        if self.config is None:
            self.config = os.path.join(self.dir, "certfs.conf")
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config)

    def set_clock(self, seconds):
        if self.clock_file is None:
            raise AssertionError("this mount was started without a clock file")
        tmp = self.clock_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % int(seconds))
        os.rename(tmp, self.clock_file)
        self.clock = int(seconds)

    def env(self):
        e = dict(os.environ)
        e.pop("CERTFS_CLOCK_FILE", None)
        if self.clock_file:
            e["CERTFS_CLOCK_FILE"] = self.clock_file
        e.update(self.extra_env)
        return e

    def argv(self, foreground=True, with_store=True):
        a = [self.binary]
        if foreground:
            a.append("-f")
        if self.config:
            a += ["-c", self.config]
        if with_store:
            a += ["--store", self.store]
        a += self.args
        if self.options:
            a += ["-o", self.options]
        a.append(self.mount)
        return a

    # -- logs
    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def new_stderr(self):
        """Stderr written since the last call (or since the start)."""
        s = self.stderr()
        out = s[self.stderr_offset:]
        self.stderr_offset = len(s)
        return out

    def wait_log(self, pattern, timeout=10.0, since=0):
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.stderr()[since:]), timeout,
                        "daemon log line matching %r" % pattern)

    # -- start and stop
    def start(self, timeout=15.0):
        """Start `certfs -f` and wait until the mount is up."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        argv = self.argv()
        err = open(self.stderr_path, "a")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err, env=self.env())
        finally:
            err.close()
        self.runs.append(argv)

        def up():
            if is_mounted(self.mount):
                return True
            if self.proc.poll() is not None:
                raise DaemonDied(
                    "certfs exited with %s before mounting; argv %r; stderr:\n%s"
                    % (self.proc.returncode, argv, self.stderr()))
            return False

        deadline = time.monotonic() + timeout
        while True:
            if up():
                return self
            if time.monotonic() >= deadline:
                raise AssertionError("certfs did not mount %s within %.0fs; stderr:\n%s"
                                     % (self.mount, timeout, self.stderr()))
            time.sleep(POLL)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        assert self.running(), "certfs is not running; stderr:\n" + self.stderr()
        self.proc.send_signal(sig)

    def stop(self, timeout=15.0):
        """SIGTERM, wait for the exit and the unmount; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError("certfs did not exit within %.0fs of SIGTERM; stderr:\n%s"
                                     % (timeout, self.stderr()))
        wait_for(lambda: not is_mounted(self.mount), timeout, "unmount of " + self.mount)
        return self.proc.returncode

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(15)

    def cleanup(self, unmount=True):
        """Leave no daemon and no mount behind, whatever state we are in.
        Returns a list of problems found (unclean exit, leftovers).
        unmount=False leaves a mount alone (when it belongs to another
        instance sharing the mountpoint)."""
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(15)
                if rc != 0:
                    problems.append("certfs exited with %s after SIGTERM" % rc)
            except subprocess.TimeoutExpired:
                problems.append("certfs did not exit within 15s of SIGTERM")
        if unmount and is_any_mounted(self.mount):
            lazy_unmount(self.mount)
        for extra in self.extra_mounts:
            if is_any_mounted(extra):
                lazy_unmount(extra)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                problems.append("certfs pid %d survived SIGKILL" % self.proc.pid)
        # Daemons that detached (started without -f) or were started by mount(8).
        pids = set(self.daemon_pids)
        if unmount:
            pids |= set(pids_of(self.binary, self.mount))
        if self.proc is not None:
            pids.discard(self.proc.pid)
        for pid in pids:
            if not pid_alive(pid):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                wait_for(lambda: not pid_alive(pid), 10, "detached certfs %d to exit" % pid)
            except AssertionError:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if unmount and is_any_mounted(self.mount):
            lazy_unmount(self.mount)
        return problems

    # -- the tree
    def path(self, *parts):
        return os.path.join(self.mount, *parts)

    def read(self, *parts, mode="rb"):
        with open(self.path(*parts), mode) as f:
            return f.read()

    def status_json(self, domain=None):
        return status_json(self.mount, domain)

    def wait_state(self, domain, state="valid", source=None, timeout=10.0, **kw):
        return wait_state(self.mount, domain, state=state, source=source,
                          timeout=timeout, **kw)

    def mkdir(self, domain, wait=True, timeout=10.0):
        os.mkdir(self.path(domain))
        if wait:
            return self.wait_state(domain, state="valid", source="local", timeout=timeout)
        return None

    def renew(self, domain):
        with open(self.path(domain, "status"), "w") as f:
            f.write("renew\n")

    def sanitizer_reports(self):
        s = self.stderr()
        return [m for m in SANITIZER_MARKERS if m in s]


class DaemonDied(AssertionError):
    pass


def status_json(mount, domain=None):
    p = os.path.join(mount, domain, "status.json") if domain else os.path.join(mount, "status.json")
    with open(p, "rb") as f:
        return json.loads(f.read())


def wait_state(mount, domain, state="valid", source=None, timeout=10.0,
               min_generation=None):
    """Poll DOMAIN/status.json until state (and source, and generation at
    least min_generation) match; returns the status object."""
    last = {}

    def ok():
        st = status_json(mount, domain)
        last["st"] = st
        if state is not None and st.get("state") != state:
            return None
        if source is not None and st.get("source") != source:
            return None
        if min_generation is not None and st.get("generation", -1) < min_generation:
            return None
        return st

    try:
        return wait_for(ok, timeout, "%s to reach state=%s source=%s generation>=%s"
                        % (domain, state, source, min_generation))
    except WaitTimeout as e:
        raise WaitTimeout("%s; last status.json: %r" % (e, last.get("st")))


# ---------------------------------------------------------------- PEM and keys

PEM_RX = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----\r?\n?", re.S)


def pem_blocks(data):
    """[(label, whole block bytes)] in file order."""
    return [(m.group(1).decode(), m.group(0)) for m in PEM_RX.finditer(data)]


def pem_certs(data):
    """All certificates in a PEM file, in order (strict: every block parses
    and nothing but whitespace lies outside the blocks)."""
    blocks = pem_blocks(data)
    rest = PEM_RX.sub(b"", data)
    if rest.strip():
        raise ValueError("junk outside PEM blocks: %r" % rest[:80])
    certs = []
    for label, b in blocks:
        if label != "CERTIFICATE":
            raise ValueError("unexpected PEM block %s" % label)
        certs.append(x509.load_pem_x509_certificate(b))
    return certs


def load_key(data, password=None):
    return serialization.load_pem_private_key(data, password=password)


def spki(obj):
    """SubjectPublicKeyInfo DER of a certificate, private key or public key."""
    if isinstance(obj, x509.Certificate):
        pub = obj.public_key()
    elif hasattr(obj, "public_key"):
        pub = obj.public_key()
    else:
        pub = obj
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches_cert(key, cert):
    return spki(key) == spki(cert)


def check_signed_by(child, parent):
    """Raise unless parent's key made child's signature."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
    pub = parent.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        pub.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(),
                   child.signature_hash_algorithm)
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(child.signature, child.tbs_certificate_bytes,
                   ec.ECDSA(child.signature_hash_algorithm))
    elif isinstance(pub, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        pub.verify(child.signature, child.tbs_certificate_bytes)
    else:
        raise AssertionError("unexpected issuer key type %r" % (pub,))


def fingerprint(cert):
    return cert.fingerprint(hashes.SHA256())


def cert_not_after(cert):
    try:
        return cert.not_valid_after_utc
    except AttributeError:  # older python3-cryptography
        import datetime
        return cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def cert_not_before(cert):
    try:
        return cert.not_valid_before_utc
    except AttributeError:
        import datetime
        return cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)


def openssl(*args, input=None, check=True):
    r = subprocess.run(["openssl"] + list(args), input=input, capture_output=True)
    if check and r.returncode != 0:
        raise AssertionError("openssl %s failed (%d): %s %s"
                             % (" ".join(args), r.returncode,
                                r.stdout.decode(errors="replace"),
                                r.stderr.decode(errors="replace")))
    return r


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def which(name, extra=("/usr/sbin", "/sbin")):
    p = shutil.which(name)
    if p:
        return p
    for d in extra:
        q = os.path.join(d, name)
        if os.access(q, os.X_OK):
            return q
    return None
