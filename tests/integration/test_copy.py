# SPDX-License-Identifier: MIT
"""A domain and the whole mount copy with the everyday tools: `cp -r`,
`tar -c` and `rsync -a` succeed and copy what can be read. The write-only
files (request.csr, passphrase) take writes but are not listed, and the
modes shown match what can be done: files nobody can write are 0444."""

import errno
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

import certfs_harness as h

D = "copy.example.com"
READABLE = ("fullchain.pem", "cert.pem", "chain.pem", "privkey.pem", "bundle.pem",
            "cert.pfx", "status", "status.json", "names", "log")


@pytest.fixture
def tree(certfs):
    m = certfs()
    m.mkdir(D)
    m.mkdir("www.example.org")
    return m


def run(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (argv, r.returncode, r.stderr)
    return r


def check_domain_copy(m, dst):
    assert sorted(os.listdir(dst)) == sorted(READABLE), os.listdir(dst)
    for name in ("fullchain.pem", "privkey.pem", "cert.pfx"):
        with open(os.path.join(dst, name), "rb") as f:
            assert f.read() == m.read(D, name), name


@pytest.mark.timeout(60)
def test_cp_r_domain_and_mount(tree, tmp_path):
    run(["cp", "-r", tree.path(D), str(tmp_path / "domain")])
    check_domain_copy(tree, tmp_path / "domain")
    run(["cp", "-a", tree.mount + "/.", str(tmp_path / "all")])
    check_domain_copy(tree, tmp_path / "all" / D)
    assert os.path.isfile(tmp_path / "all" / "ca.pem")


@pytest.mark.timeout(60)
def test_tar_domain_and_mount(tree, tmp_path):
    run(["tar", "-C", tree.mount, "-cf", str(tmp_path / "d.tar"), D])
    run(["tar", "-C", tree.mount, "-cf", str(tmp_path / "all.tar"), "."])
    with tarfile.open(tmp_path / "all.tar") as t:
        names = t.getnames()
        assert "./%s/fullchain.pem" % D in names and "./metrics" in names, names
        assert not any(n.endswith(("passphrase", "request.csr")) for n in names), names
    (tmp_path / "x").mkdir()
    run(["tar", "-C", str(tmp_path / "x"), "-xf", str(tmp_path / "d.tar")])
    check_domain_copy(tree, tmp_path / "x" / D)


@pytest.mark.timeout(60)
def test_rsync_a_domain_and_mount(tree, tmp_path):
    if not shutil.which("rsync"):
        h.missing_prerequisite("rsync is not installed")
    run(["rsync", "-a", tree.path(D), str(tmp_path / "r")])
    check_domain_copy(tree, tmp_path / "r" / D)
    run(["rsync", "-a", tree.mount + "/", str(tmp_path / "all")])
    check_domain_copy(tree, tmp_path / "all" / D)


@pytest.mark.timeout(60)
def test_modes_say_what_can_be_done(tree):
    def mode(*p):
        return stat.S_IMODE(os.stat(tree.path(*p)).st_mode)
    for name in ("status.json", "metrics", "ca.pem", "crt-list"):
        assert mode(name) == 0o444, name   # nothing else can be written at the root
    assert mode("status") == 0o644   # takes "renew"
    assert mode(D, "status.json") == 0o444
    for name in ("fullchain.pem", "cert.pem", "chain.pem", "status", "names"):
        assert mode(D, name) == 0o644, name
    for name in ("passphrase", "request.csr"):
        assert mode(D, name) == 0o200, name   # still there by name
    with pytest.raises(PermissionError):
        open(tree.path("status.json"), "w").close()


@pytest.mark.timeout(60)
def test_serving_mount_modes_read_only(certfs, tmp_path):
    """Nothing can be written through a serving mount: every file but the
    keys (key_mode) is shown 0444, and the copy tools work there too."""
    m, serve = h.serving_mount(certfs, tmp_path)
    m.mkdir(D)
    h.wait_for(lambda: os.path.exists(os.path.join(serve, D, "fullchain.pem")), 10,
               "the domain on the serving mount")
    for p in ("status", "metrics", D + "/fullchain.pem", D + "/status", D + "/names"):
        assert stat.S_IMODE(os.stat(os.path.join(serve, p)).st_mode) == 0o444, p
    assert stat.S_IMODE(os.stat(os.path.join(serve, D, "privkey.pem")).st_mode) == 0o600
    run(["cp", "-r", os.path.join(serve, D), str(tmp_path / "domain")])
    check_domain_copy(m, tmp_path / "domain")


@pytest.mark.timeout(60)
def test_write_only_files_unlisted_but_writable(tree):
    assert "passphrase" not in os.listdir(tree.path(D))
    assert "request.csr" not in os.listdir(tree.path(D))
    before = tree.read(D, "fullchain.pem")
    with open(tree.path(D, "passphrase"), "w") as f:
        f.write("correct horse\n")
    # Taken (close succeeded) and recorded without complaint.
    assert not tree.status_json(D).get("last_error"), tree.status_json(D)
    # Opened by name; an empty write is refused at the last close, like
    # every file but passphrase and names, and changes nothing.
    f = open(tree.path(D, "request.csr"), "wb")
    with pytest.raises(OSError) as e:
        f.close()
    assert e.value.errno == errno.EINVAL
    assert tree.read(D, "fullchain.pem") == before
