# SPDX-License-Identifier: MIT
"""Fixtures of the certfs integration suite.

Every test mounts a real certfs through the `certfs` factory: a tmp store
and mountpoint, `certfs -f` with its stderr in a file, a deadline on the
mount, and a teardown that unmounts, requires exit code 0, and fails the
test on sanitizer reports. Leftover mounts and daemons are removed even
when the test failed.

Without root or /dev/fuse the suite is skipped, except under CI=true where
a missing prerequisite is a failure.
"""

import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import certfs_harness as h  # noqa: E402
import etcd_env  # noqa: E402


in_ci = h.in_ci
missing_prerequisite = h.missing_prerequisite


def prerequisite_problem():
    if os.geteuid() != 0:
        return "the integration tests mount FUSE filesystems and need root"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if not h.which("fusermount3"):
        return "fusermount3 is missing"
    b = h.certfs_bin()
    if not b or not os.access(b, os.X_OK):
        return "no certfs binary: set CERTFS_BIN to the built daemon"
    return None


@pytest.fixture(scope="session", autouse=True)
def fuse_available():
    """Root, /dev/fuse and the daemon, checked once per session."""
    why = prerequisite_problem()
    if why:
        missing_prerequisite(why)
    return h.certfs_bin()


@pytest.fixture(scope="session")
def pebble(tmp_path_factory):
    """The session's Pebble (default settings), started on first use."""
    import pebble_env
    h.need_pebble()
    env = pebble_env.PebbleEnv(str(tmp_path_factory.mktemp("pebble")))
    with env:
        env.root_file = env.write_root(0)
        yield env


@pytest.fixture
def proxy(tmp_path):
    """Factory: proxy(pebble, **kw) -> a started acme_proxy.AcmeProxy."""
    import acme_proxy
    made = []

    def start(env, **kw):
        d = tmp_path / ("proxy%d" % len(made))
        d.mkdir()
        p = acme_proxy.AcmeProxy(str(d), env, **kw)
        made.append(p)
        return p.start()

    try:
        yield start
    finally:
        for p in made:
            p.stop()


@pytest.fixture
def certfs_bin(fuse_available):
    return fuse_available


@pytest.fixture
def certfs(tmp_path, certfs_bin, request):
    """Factory: certfs(config=None, args=(), options=None, clock=None,
    store=None, mount=None, env=None, start=True) -> Certfs.

    `config` is the INI text (written to a file passed with -c); `options`
    the -o string; `clock` an offset in seconds written to a file named by
    CERTFS_CLOCK_FILE. Several calls give several daemons (each in its own
    tmp dir unless store/mount are shared on purpose)."""
    made = []
    public_dirs = []

    def make(config=None, args=(), options=None, clock=None, store=None, mount=None,
             env=None, start=True, name=None, public=False):
        base = str(tmp_path)
        if public:
            # A path other users can traverse (pytest's tmp dirs are 0700),
            # for tests that read the mount as another user.
            base = tempfile.mkdtemp(prefix="certfs-it-", dir="/tmp")
            os.chmod(base, 0o755)
            public_dirs.append(base)
        inst = h.Certfs(base, name or "certfs%d" % len(made), certfs_bin,
                        config=config, args=args, options=options, clock=clock,
                        store=store, mount=mount, env=env)
        if public:
            os.chmod(inst.dir, 0o755)
            os.chmod(inst.mount, 0o755)
        inst.shared = any(os.path.realpath(i.mount) == os.path.realpath(inst.mount)
                          for i in made)
        made.append(inst)
        if start:
            inst.start()
        return inst

    yield make

    problems = []
    for inst in reversed(made):
        try:
            problems += ["%s: %s" % (inst.mount, p)
                         for p in inst.cleanup(unmount=not inst.shared)]
        except Exception as e:  # noqa: BLE001 - clean up the others first
            problems.append("%s: cleanup failed: %r" % (inst.mount, e))
    for inst in made:
        if h.is_any_mounted(inst.mount):
            problems.append("%s: still mounted after the daemon stopped" % inst.mount)
            h.lazy_unmount(inst.mount)
    for inst in made:
        reports = inst.sanitizer_reports()
        if reports:
            problems.append("%s: sanitizer report (%s) in the daemon's stderr"
                            % (inst.mount, ", ".join(reports)))
        log = inst.stderr()
        if log and (problems or getattr(request.node, "rep_call_failed", False)):
            sys.stdout.write("\n--- certfs stderr (%s) ---\n%s" % (inst.mount, log))
    for d in public_dirs:
        if not any(h.is_any_mounted(i.mount) for i in made):
            shutil.rmtree(d, ignore_errors=True)
    if problems:
        pytest.fail("certfs teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def mounted(certfs):
    """A default mount: local issuer, no config file."""
    return certfs()


@pytest.fixture(scope="session")
def etcd_session():
    """A three-member etcd cluster on loopback, started once per session
    (only when a test asks for it) and always stopped."""
    if not etcd_env.which(etcd_env.ETCD):
        missing_prerequisite("etcd is missing (Debian package etcd-server)")
    cluster = etcd_env.EtcdCluster(size=3)
    try:
        cluster.start(timeout=90)
    except Exception:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def etcd_tls(tmp_path_factory):
    """One etcd member serving https with a certificate made by the test,
    with auth enabled (user root); stopped at the end of the session."""
    import pebble_env

    if not etcd_env.which(etcd_env.ETCD):
        h.missing_prerequisite("etcd is missing (Debian package etcd-server)")
    d = tmp_path_factory.mktemp("etcd-tls")
    ca, cert, key = pebble_env.make_tls_ca(str(d))
    cluster = etcd_env.EtcdCluster(size=1, tls=(ca, cert, key))
    try:
        cluster.start(timeout=90)
        cluster.enable_auth("root", "s3cret-pw")
    except Exception:
        cluster.stop()
        raise
    cluster.ca = ca
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd(etcd_session, request):
    """The session's cluster with every member up, and a fresh key prefix
    for this test (etcd.prefix) so tests never see each other's keys."""
    etcd_session.start_all(timeout=90)
    etcd_session.prefix = "t%d-%s" % (os.getpid(), request.node.name.replace("[", "-")
                                      .replace("]", "").replace("_", "-")[:60])
    yield etcd_session
    # A test that stopped members leaves them stopped for the next one to
    # restart; a test that failed half-way leaves nothing else behind.


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        item.rep_call_failed = True
