# SPDX-License-Identifier: MIT
"""The store on a full disk: a refused write says so (ENOSPC at close, a
sentence in status), nothing served or stored changes, and everything works
again once there is room. The store lives on a small tmpfs of its own."""

import errno
import os
import subprocess

import pytest

import certfs_harness as h

D = "full.example.com"


@pytest.fixture
def small_store(tmp_path):
    """A 2 MiB tmpfs for the store, always unmounted afterwards."""
    path = tmp_path / "smallstore"
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("cannot mount a tmpfs for the store: %s" % r.stderr)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path):
    """Fill the filesystem at path; return the filler's name."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    # Small files may still fit into the last partial blocks: take them too.
    n = 0
    while True:
        try:
            with open(os.path.join(path, "filler.%d" % n), "wb") as f:
                f.write(b"\0" * 512)
            n += 1
        except OSError as e:
            assert e.errno == errno.ENOSPC
            break
    return filler


def store_snapshot(store):
    out = {}
    base = os.path.join(store, "domains")
    for root, _, files in os.walk(base):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, base)] = f.read()
    return out


@pytest.mark.timeout(60)
def test_full_store_refuses_and_keeps_everything(certfs, small_store, tmp_path):
    m = certfs(store=str(small_store / "store"))
    os.mkdir(m.path(D))
    m.wait_state(D, state="valid", source="local")
    served = {f: m.read(D, f) for f in ("fullchain.pem", "privkey.pem", "bundle.pem")}
    gen = m.status_json(D)["generation"]
    stored = store_snapshot(str(small_store / "store"))

    filler = fill(str(small_store))
    try:
        # An upload of another certificate (what is served already would
        # be a no-op that stores nothing).
        from test_upload import valid_upload
        bundle = valid_upload(names=(D,))[3]
        src = tmp_path / "bundle.pem"
        src.write_bytes(bundle)
        fd = os.open(m.path(D, "bundle.pem"), os.O_WRONLY | os.O_TRUNC)
        os.write(fd, bundle)
        with pytest.raises(OSError) as e:
            os.close(fd)
        assert e.value.errno == errno.ENOSPC
        st = m.status_json(D)
        assert "store is full" in (st["last_error"] or ""), st["last_error"]
        assert st["generation"] == gen
        for f, b in served.items():
            assert m.read(D, f) == b, "%s changed after a refused write" % f

        # mkdir is refused and creates nothing.
        with pytest.raises(OSError) as e:
            os.mkdir(m.path("other.example.com"))
        assert e.value.errno == errno.ENOSPC
        assert "other.example.com" not in os.listdir(m.mount)
        # Not even an empty level, which a later start would call unreadable.
        assert not os.path.exists(os.path.join(str(small_store / "store"), "domains",
                                               "other.example.com"))
    finally:
        os.unlink(filler)
        for name in os.listdir(str(small_store)):
            if name.startswith("filler."):
                os.unlink(os.path.join(str(small_store), name))

    # Everything acknowledged before is still in the store, byte for byte
    # (the state record may carry the refusal's sentence).
    after = store_snapshot(str(small_store / "store"))
    for k, v in stored.items():
        if not k.endswith("/state"):
            assert after.get(k) == v, "%s lost or changed" % k
    assert not [n for n in os.listdir(os.path.join(str(small_store / "store"), "domains", D))
                if n.startswith(".tmp")], "temporary files left behind"

    # With room again, the same upload is taken.
    r = subprocess.run(["cp", str(src), m.path(D, "bundle.pem")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    h.wait_for(lambda: m.status_json(D)["source"] == "uploaded", 10, "the upload to be served")
    os.mkdir(m.path("other.example.com"))
    m.wait_state("other.example.com", state="valid", source="local")


@pytest.mark.timeout(60)
def test_rm_of_an_upload_on_a_full_store_fails(certfs, small_store, tmp_path):
    """rm fullchain.pem removes an upload; on a full store it fails with
    ENOSPC and changes nothing (never exit 0 with no change), and works
    once there is room."""
    m = certfs(store=str(small_store / "store"))
    os.mkdir(m.path(D))
    m.wait_state(D, state="valid", source="local")
    # Another certificate: writing back what is served changes nothing.
    from test_upload import valid_upload
    (tmp_path / "b.pem").write_bytes(valid_upload(names=(D,))[3])
    r = subprocess.run(["cp", str(tmp_path / "b.pem"), m.path(D, "bundle.pem")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    h.wait_for(lambda: m.status_json(D)["source"] == "uploaded", 10, "the upload to be served")
    served = m.read(D, "fullchain.pem")
    gen = m.status_json(D)["generation"]

    filler = fill(str(small_store))
    try:
        r = subprocess.run(["rm", m.path(D, "fullchain.pem")], capture_output=True, text=True)
        assert r.returncode != 0, "rm succeeded on a full store"
        assert "No space left on device" in r.stderr, r.stderr
        st = m.status_json(D)
        assert st["source"] == "uploaded" and st["generation"] == gen, st
        assert "store is full" in (st["last_error"] or ""), st["last_error"]
        assert m.read(D, "fullchain.pem") == served
    finally:
        os.unlink(filler)
        for name in os.listdir(str(small_store)):
            if name.startswith("filler."):
                os.unlink(os.path.join(str(small_store), name))

    r = subprocess.run(["rm", m.path(D, "fullchain.pem")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    h.wait_for(lambda: m.status_json(D)["source"] == "local", 10, "the managed certificate")
    # Restarted, the store agrees.
    assert m.stop() == 0
    m.start()
    assert m.wait_state(D, state="valid")["source"] == "local"


@pytest.mark.timeout(30)
def test_names_are_fixed(certfs, tmp_path):
    """New files, links and renames are refused with EPERM and change
    nothing: an editor's temporary file cannot be created."""
    m = certfs()
    os.mkdir(m.path(D))
    m.wait_state(D, state="valid", source="local")
    before = sorted(os.listdir(m.path(D)))
    served = m.read(D, "fullchain.pem")
    for call in (lambda: open(m.path(D, ".fullchain.pem.swp"), "wb"),
                 lambda: os.mknod(m.path(D, "node")),
                 lambda: os.symlink("fullchain.pem", m.path(D, "link.pem")),
                 lambda: os.link(m.path(D, "fullchain.pem"), m.path(D, "hard.pem")),
                 lambda: os.rename(m.path(D, "cert.pem"), m.path(D, "fullchain.pem")),
                 lambda: os.rename(m.path(D), m.path("renamed.example.com")),
                 lambda: open(m.path("newfile"), "wb")):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EPERM, e.value
    assert sorted(os.listdir(m.path(D))) == before
    assert m.read(D, "fullchain.pem") == served
    r = subprocess.run(["mv", m.path(D, "chain.pem"), m.path(D, "names")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r.stderr
