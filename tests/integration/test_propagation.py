# SPDX-License-Identifier: MIT
"""The container recipe of the README: a bind of the mount's parent with
slave propagation keeps working across a certfs restart, where a bind of
the mount itself is left holding the old, dead mount (ENOTCONN)."""

import errno
import os
import subprocess

import pytest

import certfs_harness as h

D = "bind.example.com"


def sh(*argv):
    subprocess.run(list(argv), check=True, capture_output=True, timeout=30)


@pytest.mark.timeout(90)
def test_rslave_bind_of_parent_survives_restart(certfs, tmp_path):
    parent, view, plain = tmp_path / "parent", tmp_path / "view", tmp_path / "plain"
    for d in (parent, view, plain):
        d.mkdir()
    mnt = parent / "certfs"
    mounts, m = [], None
    try:
        # The host side: a parent that shares its mounts (as /run is on a
        # systemd host), certfs mounted inside it.
        sh("mount", "--bind", str(parent), str(parent))
        mounts.append(parent)
        sh("mount", "--make-shared", str(parent))
        mnt.mkdir()
        m = certfs(mount=str(mnt))
        m.mkdir(D)
        # What a container gets: the parent with rslave, and a plain bind.
        sh("mount", "--rbind", str(parent), str(view))
        mounts.insert(0, view)
        sh("mount", "--make-rslave", str(view))
        sh("mount", "--bind", str(mnt), str(plain))
        mounts.insert(0, plain)
        key = m.read(D, "privkey.pem")
        assert (view / "certfs" / D / "privkey.pem").read_bytes() == key

        assert m.stop() == 0
        m.start()
        h.wait_for(lambda: (view / "certfs" / D / "privkey.pem").read_bytes() == key, 15,
                   "the rslave bind to see the new mount")
        with pytest.raises(OSError) as e:
            (plain / D / "privkey.pem").read_bytes()
        assert e.value.errno == errno.ENOTCONN, e.value
    finally:
        # certfs first, so it unmounts its own mount; then the binds.
        if m is not None and m.running():
            m.stop()
        for p in mounts:
            subprocess.run(["umount", "-l", str(p)], capture_output=True)
