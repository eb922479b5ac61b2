# SPDX-License-Identifier: MIT
"""Nothing acknowledged comes undone: an rmdir racing with renewals stays
done (no store directory re-created, no key record outside the archive,
nothing back after a restart), and the leftover of a mkdir killed before
its first write is cleaned at start instead of being reported as an
unreadable domain for ever."""

import os
import threading

import pytest

import certfs_harness as h

N = 20


def store_domains(m):
    p = os.path.join(m.store, "domains")
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


@pytest.mark.timeout(240)
def test_rmdir_racing_renewals_stays_removed(certfs):
    m = certfs(config="[certfs]\nworkers = 4\n")
    names = ["race%02d.example.com" % i for i in range(N)]
    for n in names:
        os.mkdir(m.path(n))
    for n in names:
        m.wait_state(n, state="valid", source="local", timeout=60)
    errors = []
    removed = set()

    def renewer(n):
        # Renewals back to back until the domain is gone, so that one is
        # always about to be committed when the rmdir comes.
        while n not in removed:
            try:
                m.renew(n)
            except OSError:
                return

    def remover(n):
        try:
            h.wait_for(lambda: m.status_json(n)["generation"] >= 3, 30,
                       "renewals of %s to run" % n)
            os.rmdir(m.path(n))
        except (OSError, AssertionError) as e:
            errors.append("%s: %r" % (n, e))
        removed.add(n)

    threads = [threading.Thread(target=f, args=(n,)) for n in names for f in (renewer, remover)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert not [n for n in os.listdir(m.mount) if n in names]

    # Let every renewal that was in flight finish (or give up) before looking.
    assert m.stop() == 0
    left = [n for n in store_domains(m) if n in names]
    assert left == [], "removed domains re-created in the store: %r" % left
    archived = os.listdir(os.path.join(m.store, "archive"))
    for n in names:
        assert any(a.startswith(n + "@") for a in archived), "%s not archived" % n

    m.start()
    back = [n for n in os.listdir(m.mount) if n in names]
    assert back == [], "removed domains are back after a restart: %r" % back
    assert "skipped" not in m.stderr(), m.stderr()


@pytest.mark.timeout(60)
def test_leftover_of_a_killed_mkdir_is_cleaned(certfs):
    m = certfs(start=False)
    # What a mkdir killed between creating the level and writing the state
    # leaves behind (with a temporary, which the store sweeps anyway).
    leftover = os.path.join(m.store, "domains", "killed.example.com")
    os.makedirs(leftover, mode=0o700)
    with open(os.path.join(leftover, ".tmp.state.1234"), "w") as f:
        f.write("{")
    m.start()
    assert "killed.example.com" not in os.listdir(m.mount)
    assert not os.path.exists(leftover)
    assert "unreadable" not in m.stderr(), m.stderr()
    # And the name is free for a real mkdir.
    m.mkdir("killed.example.com")
    assert m.stop() == 0
    m.start()
    m.wait_state("killed.example.com", state="valid", source="local")
    assert "unreadable" not in m.stderr(), m.stderr()
