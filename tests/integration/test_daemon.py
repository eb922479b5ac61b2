# SPDX-License-Identifier: MIT
"""The daemon's life: restart and crash recovery, signals, start-up
failures, daemonizing, allow_other and key permissions, mount(8)."""

import os
import re
import signal
import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

import certfs_harness as h

D = "example.com"
D2 = "www.example.org"
BYTE_FILES = ("fullchain.pem", "cert.pem", "chain.pem", "privkey.pem", "bundle.pem")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def snapshot(m, domains):
    """What must survive a restart: the bytes of every certificate and key
    file, the PKCS#12 contents (its salt is random), the CA root, and the
    identity of each generation."""
    snap = {"ca.pem": m.read("ca.pem")}
    for d in domains:
        for f in BYTE_FILES:
            snap[(d, f)] = m.read(d, f)
        key, cert, extra = pkcs12.load_key_and_certificates(m.read(d, "cert.pfx"), None)
        snap[(d, "cert.pfx")] = (h.spki(key), cert, list(extra))
        st = m.status_json(d)
        snap[(d, "status")] = {k: st[k] for k in ("serial", "not_after", "fingerprint_sha256",
                                                  "generation", "source", "state")}
    snap["domains"] = sorted(x["domain"] for x in m.status_json()["domains"])
    return snap


def two_domains(m):
    m.mkdir(D)
    m.mkdir(D2)
    return snapshot(m, [D, D2])


@pytest.mark.timeout(90)
def test_unmount_remount_keeps_everything(certfs):
    m = certfs()
    before = two_domains(m)
    assert m.stop() == 0
    assert not h.is_any_mounted(m.mount)
    m.start()
    for d in (D, D2):
        m.wait_state(d, state="valid", source="local")
    assert snapshot(m, [D, D2]) == before


@pytest.mark.timeout(90)
def test_kill9_fusermount_remount_keeps_everything(certfs):
    m = certfs()
    before = two_domains(m)
    m.kill9()
    # The dead daemon leaves its mount behind: the user cleans it up.
    r = subprocess.run(["fusermount3", "-u", m.mount], capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run(["fusermount3", "-u", "-z", m.mount], check=True)
    h.wait_for(lambda: not h.is_any_mounted(m.mount), 10, "stale mount to go")
    m.start()
    for d in (D, D2):
        m.wait_state(d, state="valid", source="local")
    assert snapshot(m, [D, D2]) == before
    m.mkdir("after.example.net")


def pfx_opens(m, password):
    try:
        pkcs12.load_key_and_certificates(m.read(D, "cert.pfx"), password)
        return True
    except ValueError:
        return False


@pytest.mark.timeout(90)
def test_sighup_reload(certfs):
    m = certfs(config="[certfs]\npfx_password = first\n")
    m.mkdir(D)
    assert pfx_opens(m, b"first")
    mounted_before = h.mount_entries(m.mount)

    # A changed config takes effect, the mount stays.
    m.write_config("[certfs]\npfx_password = second\n")
    m.signal(signal.SIGHUP)
    h.wait_for(lambda: pfx_opens(m, b"second"), 10, "cert.pfx under the reloaded password")
    assert not pfx_opens(m, b"first")
    assert m.running()
    assert h.mount_entries(m.mount) == mounted_before

    # A bad config is refused: the old one stays, and the log says why.
    since = len(m.stderr())
    m.write_config("[certfs]\npfx_password = third\nno_such_key = 1\n")
    m.signal(signal.SIGHUP)
    m.wait_log(r"certfs\.conf:3", since=since)
    assert m.running()
    assert h.mount_entries(m.mount) == mounted_before
    assert pfx_opens(m, b"second")
    assert not pfx_opens(m, b"third")
    m.mkdir("later.example.com")
    assert h.pem_certs(m.read("later.example.com", "fullchain.pem"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero_and_unmounts(certfs, sig):
    m = certfs()
    m.mkdir(D)
    m.signal(sig)
    assert m.proc.wait(15) == 0, m.stderr()
    assert not h.is_any_mounted(m.mount)


@pytest.mark.timeout(60)
def test_fusermount_u_exits_zero(certfs):
    m = certfs()
    subprocess.run(["fusermount3", "-u", m.mount], check=True)
    assert m.proc.wait(15) == 0, m.stderr()
    assert not h.is_any_mounted(m.mount)


def run_failing(argv, env=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL, env=env)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return r, lines


def check_startup_failure(m, argv, expect=None):
    before = h.mounts()
    r, lines = run_failing(argv, env=m.env())
    assert r.returncode != 0, "certfs started: %r" % (r,)
    assert len(lines) == 1, "one line on stderr expected, got %r" % (r.stderr,)
    if expect:
        assert re.search(expect, lines[0]), lines[0]
    # Only this daemon's mounts: other mounts come and go on a shared machine.
    mine = (os.path.realpath(m.mount), m.store)
    assert not any(x[1] == h.FSTYPE and x not in before and (x[0] in mine or x[2] in mine)
                   for x in h.mounts()), "a mount was left behind"
    assert not h.pids_of(m.binary, m.mount), "a daemon was left behind"
    return lines[0]


@pytest.mark.timeout(60)
def test_startup_missing_mountpoint(certfs):
    m = certfs(start=False)
    m.mount = os.path.join(m.dir, "does-not-exist")
    check_startup_failure(m, m.argv(), expect=re.escape("does-not-exist"))
    assert not os.path.exists(m.mount)


@pytest.mark.timeout(60)
def test_startup_serving_mount_refusals(certfs):
    """--serve on a directory that does not exist, or beside -o ro, stops
    start-up with one line and mounts nothing."""
    m = certfs(start=False)
    missing = os.path.join(m.dir, "no-serve-dir")
    check_startup_failure(m, m.argv() + ["--serve", missing], expect=re.escape("no-serve-dir"))
    serve = os.path.join(m.dir, "serve")
    os.mkdir(serve)
    check_startup_failure(m, m.argv() + ["--serve", serve, "-o", "ro"], expect="--serve")
    assert not h.is_any_mounted(serve)


@pytest.mark.timeout(60)
def test_startup_bad_config_key(certfs):
    m = certfs(config="[certfs]\nissuer = local\nbogus_key = 1\n", start=False)
    line = check_startup_failure(m, m.argv())
    assert re.search(re.escape(m.config) + r":3\b", line), line
    assert "bogus_key" in line


@pytest.mark.timeout(60)
def test_startup_bad_config_value(certfs):
    m = certfs(config="[certfs]\n\nkey_mode = 0999\n", start=False)
    line = check_startup_failure(m, m.argv())
    assert re.search(re.escape(m.config) + r":3\b", line), line


@pytest.mark.timeout(60)
def test_startup_store_is_a_file(certfs):
    m = certfs(start=False)
    with open(m.store, "w") as f:
        f.write("not a directory\n")
    check_startup_failure(m, m.argv())
    with open(m.store) as f:
        assert f.read() == "not a directory\n"


@pytest.mark.timeout(60)
def test_startup_mountpoint_busy(certfs):
    first = certfs()
    first.mkdir(D)
    second = certfs(start=False, mount=first.mount)
    entries = h.mount_entries(first.mount)
    r, lines = run_failing(second.argv(), env=second.env())
    assert r.returncode != 0, r
    assert len(lines) == 1, r.stderr
    assert h.mount_entries(first.mount) == entries, "the busy mountpoint changed"
    assert first.running()
    assert h.pem_certs(first.read(D, "fullchain.pem"))


@pytest.mark.timeout(60)
def test_second_daemon_on_a_store_is_refused(certfs):
    """One writer per store: a second daemon on the same store, in the
    foreground or detaching, is refused with one line naming the first
    one's pid and mountpoint, and the first keeps serving unchanged."""
    first = certfs()
    first.mkdir(D)
    served = first.read(D, "fullchain.pem")
    for fg in (True, False):
        second = certfs(start=False, store=first.store)
        line = check_startup_failure(second, second.argv(foreground=fg))
        assert "pid %d" % first.proc.pid in line, line
        assert os.path.realpath(first.mount) in line, line
        assert "in use" in line, line
        assert not h.is_any_mounted(second.mount)
    assert first.running()
    assert first.read(D, "fullchain.pem") == served
    assert [n for n in os.listdir(first.mount) if "." in n and n not in h.ROOT_FILES] == [D]


@pytest.mark.timeout(90)
def test_store_lock_of_a_killed_daemon_does_not_block(certfs):
    """A daemon killed with SIGKILL leaves its lock file, naming a dead
    pid; the next daemon on the store starts anyway, and its own detached
    child is then named in a refusal."""
    m = certfs()
    m.mkdir(D)
    dead = m.proc.pid
    m.kill9()
    with open(os.path.join(m.store, ".lock")) as f:
        assert ("pid %d" % dead) in f.read()
    subprocess.run(["fusermount3", "-u", "-z", m.mount], check=True)
    h.wait_for(lambda: not h.is_any_mounted(m.mount), 10, "stale mount to go")
    # Detaching: the lock passes through the fork to the daemon that stays.
    r = subprocess.run(m.argv(foreground=False), capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL, env=m.env())
    assert r.returncode == 0, r.stderr
    pids = h.wait_for(lambda: h.pids_of(m.binary, m.mount), 10, "the detached daemon")
    m.daemon_pids += pids
    h.wait_state(m.mount, D, state="valid", source="local")
    second = certfs(start=False, store=m.store)
    line = check_startup_failure(second, second.argv())
    assert "pid %d" % pids[0] in line, line


@pytest.mark.timeout(60)
def test_daemonize_returns_after_mount(certfs):
    m = certfs(start=False)
    argv = m.argv(foreground=False)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL, env=m.env())
    assert r.returncode == 0, r.stderr
    # The mount is up when the command returns: no waiting.
    assert h.is_mounted(m.mount)
    with open(m.path("status.json"), "rb") as f:
        assert f.read().startswith(b"{")
    assert h.pem_certs(m.read("ca.pem"))
    pids = h.pids_of(m.binary, m.mount)
    assert len(pids) == 1, pids
    m.daemon_pids = pids
    m.mkdir(D)
    subprocess.run(["fusermount3", "-u", m.mount], check=True)
    h.wait_for(lambda: not h.pid_alive(pids[0]), 15, "the detached daemon to exit")
    assert not h.is_any_mounted(m.mount)


def as_nobody(*argv):
    return subprocess.run(NOBODY + list(argv), capture_output=True, text=True)


@pytest.mark.timeout(60)
def test_allow_other_key_is_private(certfs):
    m = certfs(options="allow_other", public=True)
    m.mkdir(D)
    r = as_nobody("cat", m.path(D, "fullchain.pem"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.encode() == m.read(D, "fullchain.pem")
    r = as_nobody("cat", m.path("ca.pem"))
    assert r.returncode == 0, r.stderr
    for f in ("privkey.pem", "bundle.pem", "cert.pfx"):
        r = as_nobody("cat", m.path(D, f))
        assert r.returncode != 0, f
        assert "Permission denied" in r.stderr, (f, r.stderr)
        assert "PRIVATE KEY" not in r.stdout
    # Nobody but root creates or removes domains.
    r = as_nobody("mkdir", m.path("nobody.example.com"))
    assert r.returncode != 0
    assert "nobody.example.com" not in os.listdir(m.mount)


@pytest.mark.timeout(60)
def test_key_group_mode_grants_read(certfs):
    m = certfs(options="allow_other", public=True,
               config="[certfs]\nkey_group = 65534\nkey_mode = 0640\n")
    m.mkdir(D)
    r = as_nobody("cat", m.path(D, "privkey.pem"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.encode() == m.read(D, "privkey.pem")
    # Another unprivileged user outside the group still gets nothing.
    r = subprocess.run(["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups",
                        "cat", m.path(D, "privkey.pem")], capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r.stderr


@pytest.mark.timeout(60)
def test_without_allow_other_others_get_nothing(certfs):
    m = certfs(public=True)
    m.mkdir(D)
    r = as_nobody("cat", m.path(D, "fullchain.pem"))
    assert r.returncode != 0


def fstab_mount(m, form, bindir, options):
    """Mount m's store the way /etc/fstab would. mount(8) runs its helper
    without PATH (so the shell falls back to the system directories):
    'type' runs the helper mount(8) picks for `-t fuse.certfs`
    (/sbin/mount.fuse3, which runs `certfs STORE MOUNT -o ...` from PATH)
    with our PATH; 'hash' is the `certfs#STORE` form through mount(8)
    itself, naming the binary by its path."""
    env = m.env()
    env["PATH"] = "%s:%s" % (bindir, env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
    if form == "type":
        argv = ["/sbin/mount.fuse3", m.store, m.mount, "-o", options, "-t", "fuse.certfs"]
    else:
        argv = ["mount", "-t", "fuse", "%s#%s" % (m.binary, m.store), m.mount, "-o", options]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env,
                       stdin=subprocess.DEVNULL)
    m.daemon_pids = h.pids_of(m.binary, m.mount)
    assert r.returncode == 0, (argv, r.stderr)
    return r


def umount_and_wait(m):
    pids = h.pids_of(m.binary, m.mount)
    subprocess.run(["umount", m.mount], check=True)
    for pid in pids:
        h.wait_for(lambda: not h.pid_alive(pid), 15, "certfs %d to exit" % pid)
    assert not h.is_any_mounted(m.mount)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("form", ["type", "hash"])
def test_mount_t_fuse_certfs(certfs, tmp_path, form):
    if not os.access("/sbin/mount.fuse3", os.X_OK):
        h.missing_prerequisite("/sbin/mount.fuse3 is not installed")
    m = certfs(start=False)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(m.binary, bindir / "certfs")
    os.makedirs(m.store, mode=0o700, exist_ok=True)
    fstab_mount(m, form, bindir, "config=%s,allow_other" % m.config)
    ent = [e for e in h.mount_entries(m.mount) if e[1] == h.FSTYPE]
    assert ent, h.mount_entries(m.mount)
    assert ent[0][2] == m.store, "the mount's source names the store: %r" % (ent,)
    m.mkdir(D)
    assert os.listdir(m.store), "the SOURCE argument is the store"
    ca = m.read("ca.pem")
    key = m.read(D, "privkey.pem")
    umount_and_wait(m)
    # Mounting the same store again serves the same domain and key.
    fstab_mount(m, form, bindir, "config=%s" % m.config)
    assert D in os.listdir(m.mount)
    assert m.read("ca.pem") == ca
    assert m.read(D, "privkey.pem") == key
    umount_and_wait(m)
