# SPDX-License-Identifier: MIT
"""`meson install` puts what an operator needs where Debian looks for it:
the daemon in sbin, certfs(8) and certfs.conf(5), the systemd unit and a
commented sample configuration. The manual pages render without warnings
and name every option and configuration key; the unit passes
`systemd-analyze verify`."""

import os
import re
import shutil
import subprocess

import pytest

import certfs_harness as h

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def builddir():
    return os.path.dirname(os.path.dirname(h.certfs_bin()))


@pytest.fixture(scope="module")
def destdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["meson", "install", "-C", builddir(), "--no-rebuild", "--quiet",
                        "--destdir", str(d)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return str(d)


def meson_dirs():
    r = subprocess.run(["meson", "introspect", "--buildoptions", builddir()],
                       capture_output=True, text=True, check=True)
    import json
    opts = {o["name"]: o["value"] for o in json.loads(r.stdout)}
    return opts["prefix"], opts["sbindir"], opts["mandir"], opts["datadir"]


def installed(destdir, *parts):
    return os.path.join(destdir, *[p.lstrip("/") for p in parts])


def conf_keys():
    """Every key of conf/conf.c's table, as (section-macro, name)."""
    src = open(os.path.join(ROOT, "conf", "conf.c")).read()
    keys = re.findall(r'\bK[ID]?\((?:SECT_[A-Z]+, )?"([a-z0-9_]+)"', src)
    assert len(keys) > 20, keys
    return sorted(set(keys))


def help_options():
    r = subprocess.run([h.certfs_bin(), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    return sorted(set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", r.stdout)))


def roff_text(path):
    """The page's words with roff escapes for '-' removed."""
    return open(path).read().replace("\\-", "-").replace("\\fB", "").replace(
        "\\fR", "").replace("\\fI", "").replace("\\fP", "")


def test_install_layout(destdir):
    prefix, sbindir, mandir, datadir = meson_dirs()
    daemon = installed(destdir, prefix, sbindir, "certfs")
    assert os.access(daemon, os.X_OK), daemon
    for page in ("man8/certfs.8", "man5/certfs.conf.5"):
        assert os.path.isfile(installed(destdir, prefix, mandir, page)), page
    sample = installed(destdir, prefix, datadir, "doc/certfs/examples/certfs.conf")
    assert os.path.isfile(sample)
    units = [os.path.join(dp, f) for dp, _, fs in os.walk(destdir) for f in fs
             if f == "certfs.service"]
    assert len(units) == 1, units
    text = open(units[0]).read()
    assert "ExecStart=%s -f " % os.path.join(prefix, sbindir, "certfs") in text
    assert "Type=notify" in text


def test_man_pages_render_without_warnings():
    for page in ("certfs.8", "certfs.conf.5"):
        r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(ROOT, "doc", page)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)


def test_man_page_documents_every_option():
    page = roff_text(os.path.join(ROOT, "doc", "certfs.8"))
    opts = help_options()
    assert "--acme-directory" in opts and "-f" in opts, opts
    missing = [o for o in opts if o not in page]
    assert not missing, "certfs(8) does not mention %s" % missing


def test_every_config_key_documented():
    page = roff_text(os.path.join(ROOT, "doc", "certfs.conf.5"))
    sample = open(os.path.join(ROOT, "doc", "certfs.conf.sample")).read()
    for key in conf_keys():
        assert re.search(r"^\.(?:B|BR|TP)\s.*\b%s\b" % key, page, re.M), \
            "certfs.conf(5) has no entry for %s" % key
        assert re.search(r"^;%s =" % key, sample, re.M), \
            "the sample configuration has no line for %s" % key


def test_sample_config_loads(tmp_path):
    """The shipped sample is a valid configuration: certfs gets past it and
    stops at the (missing) mountpoint."""
    sample = os.path.join(ROOT, "doc", "certfs.conf.sample")
    r = subprocess.run([h.certfs_bin(), "-f", "-c", sample, "--store", str(tmp_path / "s"),
                        str(tmp_path / "no-such-mountpoint")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "mountpoint" in r.stderr and "certfs.conf" not in r.stderr, r.stderr


def test_systemd_analyze_verify(destdir, tmp_path):
    if not shutil.which("systemd-analyze"):
        h.missing_prerequisite("systemd-analyze is not installed")
    prefix, sbindir, mandir, _ = meson_dirs()
    unit = [os.path.join(dp, f) for dp, _, fs in os.walk(destdir) for f in fs
            if f == "certfs.service"][0]
    # The unit names the installed daemon; point it at the one in destdir.
    text = open(unit).read().replace(os.path.join(prefix, sbindir, "certfs"),
                                     installed(destdir, prefix, sbindir, "certfs"))
    local = tmp_path / "certfs.service"
    local.write_text(text)
    env = dict(os.environ, MANPATH=installed(destdir, prefix, mandir))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stdout + r.stderr
