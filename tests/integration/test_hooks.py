# SPDX-License-Identifier: MIT
"""Hooks run without a shell, with the daemon's environment and certfs's
own CERTFS_* values on top: a DNS hook finds its server and credentials."""

import os

import pytest

import certfs_harness as h

D = "hooked.example.com"

HOOK = """#!/bin/sh
echo "$CERTFS_EVENT $CERTFS_DOMAIN $HOOK_SETTING $CERTFS_MOUNT" >> %s
"""


@pytest.mark.timeout(30)
def test_hook_sees_daemon_environment_and_certfs_values(certfs, tmp_path):
    log = tmp_path / "deploy.log"
    script = tmp_path / "deploy.sh"
    script.write_text(HOOK % log)
    script.chmod(0o755)
    # CERTFS_EVENT in the daemon's environment must not reach the hook:
    # certfs's own value wins.
    m = certfs(config="[hooks]\ndeploy = %s\n" % script,
               env={"HOOK_SETTING": "from-the-daemon", "CERTFS_EVENT": "stale"})
    os.mkdir(m.path(D))
    m.wait_state(D, state="valid", source="local")

    def line():
        try:
            return [ln for ln in log.read_text().splitlines() if ln.strip()]
        except FileNotFoundError:
            return []
    h.wait_for(line, 10, "the deploy hook to run")
    assert line()[0] == "deploy %s from-the-daemon %s" % (D, m.mount), line()
