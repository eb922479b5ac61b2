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


def write_hook(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def lines_of(path):
    try:
        return [ln for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        return []


@pytest.mark.timeout(30)
def test_certbot_variables_and_deploy_dir_in_order(certfs, tmp_path):
    """A certbot deploy hook works unchanged: RENEWED_LINEAGE is the
    domain's directory in the mount (its fullchain.pem is readable there),
    RENEWED_DOMAINS the names. deploy_dir's executables run after deploy,
    in name order; other files there are skipped, and a failing one does
    not stop the next."""
    log = tmp_path / "hooks.log"
    record = ('echo "$1 $CERTFS_DOMAIN|$RENEWED_LINEAGE|$RENEWED_DOMAINS|'
              '$(head -c 27 "$RENEWED_LINEAGE/fullchain.pem")" >> %s\n' % log)
    deploy = write_hook(tmp_path / "deploy.sh", record)
    hooks = tmp_path / "deploy.d"
    hooks.mkdir()
    write_hook(hooks / "20-second", record.replace("$1", "20"))
    write_hook(hooks / "10-first", record.replace("$1", "10") + "exit 3\n")
    write_hook(hooks / "30-third", record.replace("$1", "30"))
    write_hook(hooks / "15-old.dpkg-old", record.replace("$1", "skipped"))
    write_hook(hooks / ".hidden", record.replace("$1", "skipped"))
    (hooks / "25-not-executable").write_text("#!/bin/sh\necho skipped >> %s\n" % log)
    m = certfs(config="[hooks]\ndeploy = %s command\ndeploy_dir = %s\n"
               "[domain %s]\nnames = www.%s\n" % (deploy, hooks, D, D))
    os.mkdir(m.path(D))
    m.wait_state(D, state="valid", source="local")
    h.wait_for(lambda: len(lines_of(log)) >= 4, 15, "the deploy hooks to run")
    got = lines_of(log)
    lineage = os.path.join(m.mount, D)
    want = "%s|%s|%s www.%s|-----BEGIN CERTIFICATE-----" % (D, lineage, D, D)
    assert got == ["command " + want, "10 " + want, "20 " + want, "30 " + want], got
    # The failing one is reported and counted.
    st = m.status_json(D)
    assert "10-first exited with status 3" in st.get("hook_error", ""), st
    assert "skipped" not in log.read_text()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("key,problem", [
    ("deploy", "missing"), ("notify", "not-executable"), ("dns", "directory"),
    ("deploy_dir", "missing"), ("deploy_dir", "file"),
])
def test_bad_hook_path_stops_start(certfs, tmp_path, key, problem):
    target = {"missing": tmp_path / "no-such-hook",
              "not-executable": tmp_path / "plain.sh",
              "directory": tmp_path,
              "file": tmp_path / "plain.sh"}[problem]
    (tmp_path / "plain.sh").write_text("#!/bin/sh\n")
    (tmp_path / "plain.sh").chmod(0o644)
    m = certfs(config="[certfs]\nissuer = local\n[hooks]\n%s = %s\n" % (key, target),
               start=False)
    r = __import__("subprocess").run(m.argv(), capture_output=True, text=True, timeout=30,
                                     stdin=__import__("subprocess").DEVNULL, env=m.env())
    assert r.returncode == 1, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("certfs: %s:4: %s: %s" % (m.config, key, target)), lines[0]
    why = {"missing": "No such file or directory", "not-executable": "is not executable",
           "directory": "is not a regular file", "file": "is not a directory"}[problem]
    assert lines[0].endswith(why), lines[0]
    assert not h.is_any_mounted(m.mount)


@pytest.mark.timeout(30)
def test_sighup_with_bad_hook_keeps_running_configuration(certfs, tmp_path):
    log = tmp_path / "deploy.log"
    deploy = write_hook(tmp_path / "deploy.sh", 'echo "$CERTFS_DOMAIN" >> %s\n' % log)
    m = certfs(config="[hooks]\ndeploy = %s\n" % deploy)
    m.write_config("[hooks]\ndeploy = %s\n" % (tmp_path / "typo.sh"))
    m.signal(__import__("signal").SIGHUP)
    m.wait_log(r"reload failed, keeping the running configuration: .*:2: deploy: .*typo\.sh")
    os.mkdir(m.path(D))
    m.wait_state(D, state="valid", source="local")
    h.wait_for(lambda: lines_of(log) == [D], 10, "the old deploy hook to run")
