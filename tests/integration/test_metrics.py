# SPDX-License-Identifier: MIT
"""MOUNT/metrics is Prometheus text that `promtool check metrics` (Debian's
prometheus package) accepts: every family whole, with HELP and TYPE, named
as cert-manager and x509-certificate-exporter name theirs, and the values
agree with status.json."""

import datetime
import os
import re
import shutil
import subprocess

import pytest

import certfs_harness as h

D = "metrics.example"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def promtool():
    p = shutil.which("promtool")
    if not p:
        h.missing_prerequisite("promtool is not installed (Debian package prometheus)")
    return p


def parse(text):
    """{family: {"help", "type", "samples": [(labels dict, value)]}}; also
    checks that each family's lines are contiguous and typed first."""
    fams, order, cur = {}, [], None
    for ln in text.splitlines():
        if ln.startswith("# HELP ") or ln.startswith("# TYPE "):
            kind, name, rest = ln[2:6], ln.split()[2], ln.split(None, 3)[3]
            if name != cur:
                assert name not in fams, "family %s appears twice" % name
                fams[name] = {"samples": []}
                order.append(name)
                cur = name
            fams[name][kind.lower()] = rest
            continue
        m = SAMPLE.match(ln)
        assert m, "not a sample line: %r" % ln
        name = m.group(1)
        assert name == cur, "sample of %s outside its family (in %s)" % (name, cur)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        fams[name]["samples"].append((labels, float(m.group(3))))
    for name, f in fams.items():
        assert "help" in f and "type" in f, "%s lacks HELP or TYPE" % name
    return fams


def value(fams, name, **labels):
    got = [v for lab, v in fams[name]["samples"]
           if all(lab.get(k) == w for k, w in labels.items())]
    assert len(got) == 1, (name, labels, fams[name]["samples"])
    return got[0]


def ts(rfc3339):
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(60)
def test_promtool_accepts_metrics(certfs):
    tool = promtool()
    m = certfs()
    for text in (m.read("metrics", mode="r"),):  # empty tree first
        r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr + text
    m.mkdir(D)
    m.mkdir("www." + D)
    text = m.read("metrics", mode="r")
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr + text
    parse(text)


@pytest.mark.timeout(60)
def test_metric_values_agree_with_status(certfs):
    m = certfs(config="[hooks]\ndeploy = /bin/false\n")
    st = m.mkdir(D)
    fams = parse(m.read("metrics", mode="r"))
    assert value(fams, "certfs_build_info") == 1
    assert [lab for lab, _ in fams["certfs_build_info"]["samples"]][0]["version"]
    assert value(fams, "certfs_domains") == 1
    assert value(fams, "certfs_certificate_expiration_timestamp_seconds",
                 domain=D, source="local") == ts(st["not_after"])
    assert value(fams, "certfs_certificate_not_before_timestamp_seconds",
                 domain=D) == ts(st["not_before"])
    renew = value(fams, "certfs_certificate_renewal_timestamp_seconds", domain=D)
    # A third of the lifetime is left at renewal (plus at most 2% jitter).
    life = ts(st["not_after"]) - ts(st["not_before"])
    assert ts(st["not_after"]) - life / 3 <= renew <= ts(st["not_after"]) - life / 3 + life / 50
    # The same time, by the same rules, as status.json's next renewal.
    assert renew == ts(st["next_renewal"]), st
    assert value(fams, "certfs_certificate_ready_status", domain=D, condition="True") == 1
    assert value(fams, "certfs_certificate_ready_status", domain=D, condition="False") == 0
    assert value(fams, "certfs_certificate_expired", domain=D) == 0
    assert value(fams, "certfs_issuance_total", domain=D) >= 1
    assert value(fams, "certfs_issuance_failures_total", domain=D) == 0
    assert value(fams, "certfs_upload_refusals_total", domain=D) == 0
    for name in ("certfs_issuance_total", "certfs_issuance_failures_total",
                 "certfs_upload_refusals_total", "certfs_hook_failures_total"):
        assert fams[name]["type"] == "counter", name

    # A refused upload and a failing deploy hook are counted.
    with pytest.raises(OSError):
        with open(m.path(D, "fullchain.pem"), "wb") as f:
            f.write(b"not a certificate\n")
    h.wait_for(lambda: value(parse(m.read("metrics", mode="r")),
                             "certfs_hook_failures_total", domain=D) >= 1,
               20, "the failing deploy hook to be counted")
    fams = parse(m.read("metrics", mode="r"))
    assert value(fams, "certfs_upload_refusals_total", domain=D) == 1
