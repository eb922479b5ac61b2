# SPDX-License-Identifier: MIT
"""The acme/ client against a real Pebble, through the acme-issue driver.

Each test starts its own Pebble + pebble-challtestsrv (PebbleEnv) on free
loopback ports, runs tests/tools/acme-issue and checks the result with
`openssl verify` against the root Pebble serves. The driver is found via
ACME_TOOL (path to acme-issue) or in the usual build directories; without it,
or without Pebble, the tests are skipped with the reason.
"""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import certfs_harness as h
import pebble_env  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DNS_HOOK = os.path.join(ROOT, "contrib", "hooks", "dns-challtestsrv")
TOOL_TIMEOUT = 50

pytestmark = pytest.mark.acme


def acme_tool():
    t = os.environ.get("ACME_TOOL")
    if t:
        return os.path.abspath(os.path.join(ROOT, t)) if not os.path.isabs(t) else t
    for d in ("build", "build-acme", "build-it", "builddir"):
        p = os.path.join(ROOT, d, "tests", "tools", "acme-issue")
        if os.access(p, os.X_OK):
            return p
    return None


@pytest.fixture
def tool():
    t = acme_tool()
    if not t or not os.access(t, os.X_OK):
        h.missing_prerequisite("acme-issue is not built: set ACME_TOOL to "
                               "tests/tools/acme-issue in a build directory")
    for b in (pebble_env.PEBBLE, pebble_env.CHALLTESTSRV):
        if not pebble_env.which(b):
            h.missing_prerequisite("%s is missing (apt install pebble)" % b)
    return t


@pytest.fixture
def pebble(tmp_path):
    """A factory: pebble(**PebbleEnv options) -> started env, stopped at teardown."""
    factory = pebble_env.PebbleFactory(tmp_path)
    try:
        yield factory.start
    finally:
        factory.stop_all()


def run_tool(tool, env, out, names, *args, extra_env=None):
    cmd = [tool, "--directory", env.directory_url, "--ca-bundle", env.ca_pem,
           "--out", str(out), "--timeout", "40"] + list(args) + list(names)
    e = dict(os.environ)
    e["CERTFS_CHALLTESTSRV"] = env.challtestsrv_url
    if extra_env:
        e.update(extra_env)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT, env=e)
    for bad in ("Sanitizer", "runtime error:"):
        assert bad not in res.stderr, res.stderr
    return res


def http01(env):
    return ["--http01-listen", "127.0.0.1:%d" % env.http_port]


def assert_ok(res, env):
    assert res.returncode == 0, (
        "acme-issue failed (%d)\nstderr:\n%s\npebble log tail:\n%s"
        % (res.returncode, res.stderr, env.log("pebble")[-3000:]))


def openssl_verify(root, chain):
    res = subprocess.run(["openssl", "verify", "-CAfile", root, "-untrusted", str(chain),
                          str(chain)], capture_output=True, text=True, timeout=20)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def load_chain(path):
    from cryptography import x509
    data = open(path, "rb").read()
    end = b"-----END CERTIFICATE-----"
    blocks = [b + end for b in data.split(end) if b.strip()]
    return [x509.load_pem_x509_certificate(b) for b in blocks]


def sans(cert):
    from cryptography import x509
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(ext.value.get_values_for_type(x509.DNSName))


def issuer_cn(cert):
    from cryptography.x509.oid import NameOID
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def subject_cn(cert):
    from cryptography.x509.oid import NameOID
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@pytest.mark.timeout(60)
def test_http01_issues_verifiable_chain(tool, pebble, tmp_path):
    env = pebble()
    out = tmp_path / "chain.pem"
    names = ["a.example.test", "b.example.test"]
    res = run_tool(tool, env, out, names, *http01(env))
    assert_ok(res, env)
    openssl_verify(env.write_root(0), out)
    chain = load_chain(out)
    assert sans(chain[0]) == sorted(names)
    assert len(chain) >= 2


@pytest.mark.timeout(60)
def test_dns01_wildcard_via_hook(tool, pebble, tmp_path):
    env = pebble()
    out = tmp_path / "chain.pem"
    names = ["*.wild.example.test", "wild.example.test"]
    res = run_tool(tool, env, out, names, "--challenge", "dns-01", "--dns-hook", DNS_HOOK)
    assert_ok(res, env)
    openssl_verify(env.write_root(0), out)
    assert sans(load_chain(out)[0]) == sorted(names)


@pytest.mark.timeout(60)
def test_wildcard_without_dns_hook_is_refused(tool, pebble, tmp_path):
    env = pebble()
    res = run_tool(tool, env, tmp_path / "chain.pem", ["*.nodns.example.test"], *http01(env))
    assert res.returncode != 0
    assert "needs dns-01" in res.stderr, res.stderr
    assert not (tmp_path / "chain.pem").exists()


@pytest.mark.timeout(60)
def test_external_account_binding(tool, pebble, tmp_path):
    kid = "kid-certfs"
    hmac_key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
    env = pebble(eab_required=True, eab_keys={kid: hmac_key})
    out = tmp_path / "chain.pem"
    res = run_tool(tool, env, out, ["eab.example.test"], *http01(env),
                   "--eab-kid", kid, "--eab-hmac-key", hmac_key)
    assert_ok(res, env)
    openssl_verify(env.write_root(0), out)
    # Without EAB the directory's externalAccountRequired stops us early.
    res = run_tool(tool, env, tmp_path / "no.pem", ["eab.example.test"], *http01(env))
    assert res.returncode != 0
    assert "external account binding" in res.stderr, res.stderr
    # A wrong MAC key is refused by the CA with a readable problem.
    res = run_tool(tool, env, tmp_path / "bad.pem", ["eab.example.test"], *http01(env),
                   "--eab-kid", kid, "--eab-hmac-key", "A" * 64)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("acme: urn:ietf:params:acme:error:unauthorized: "), res.stderr


@pytest.mark.timeout(60)
def test_bad_nonce_storm_still_issues(tool, pebble, tmp_path):
    env = pebble(nonce_reject=50)
    out = tmp_path / "chain.pem"
    res = run_tool(tool, env, out, ["nonce.example.test"], *http01(env))
    assert_ok(res, env)
    openssl_verify(env.write_root(0), out)


@pytest.mark.timeout(60)
def test_concurrent_issuance_through_one_client(tool, pebble, tmp_path):
    env = pebble(nonce_reject=20)
    out = tmp_path / "chain.pem"
    res = run_tool(tool, env, out, ["c1.example.test", "c2.example.test"], *http01(env),
                   "--threads", "6")
    assert_ok(res, env)
    openssl_verify(env.write_root(0), out)


@pytest.mark.timeout(60)
def test_resume_saved_order(tool, pebble, tmp_path):
    env = pebble()
    state = tmp_path / "order"
    key = tmp_path / "account.pem"
    dkey = tmp_path / "domain.pem"
    out = tmp_path / "chain.pem"
    res = run_tool(tool, env, out, ["resume.example.test"], *http01(env),
                   "--order-state", str(state), "--account-key", str(key),
                   "--domain-key", str(dkey))
    assert_ok(res, env)
    order_url = state.read_text().strip()
    assert order_url.startswith("https://127.0.0.1:")
    # The same account resumes the saved (now valid) order: download only.
    out2 = tmp_path / "again.pem"
    res = run_tool(tool, env, out2, ["resume.example.test"], *http01(env),
                   "--resume-order", order_url, "--account-key", str(key),
                   "--domain-key", str(dkey))
    assert_ok(res, env)
    assert "resuming order" in res.stderr, res.stderr
    assert out2.read_bytes() == out.read_bytes()
    # Another account cannot read the order: a new order is made instead.
    out3 = tmp_path / "other.pem"
    res = run_tool(tool, env, out3, ["resume.example.test"], *http01(env),
                   "--resume-order", order_url)
    assert_ok(res, env)
    assert "not usable" in res.stderr, res.stderr


@pytest.mark.timeout(60)
def test_preferred_alternate_chain(tool, pebble, tmp_path):
    env = pebble(alternate_roots=2)
    root1 = env.write_root(1)
    from cryptography import x509
    alt_cn = subject_cn(x509.load_pem_x509_certificate(open(root1, "rb").read()))
    out = tmp_path / "chain.pem"
    res = run_tool(tool, env, out, ["alt.example.test"], *http01(env),
                   "--preferred-chain", alt_cn)
    assert_ok(res, env)
    chain = load_chain(out)
    assert issuer_cn(chain[-1]) == alt_cn
    openssl_verify(root1, out)
    # Without a preference the default chain (root 0) comes back.
    out0 = tmp_path / "default.pem"
    res = run_tool(tool, env, out0, ["alt.example.test"], *http01(env))
    assert_ok(res, env)
    openssl_verify(env.write_root(0), out0)


@pytest.mark.timeout(60)
def test_failed_challenge_gives_problem_sentence(tool, pebble, tmp_path):
    env = pebble()
    out = tmp_path / "chain.pem"
    # The responder listens on another port: nothing serves Pebble's httpPort.
    other = pebble_env.free_port()
    res = run_tool(tool, env, out, ["fail.example.test"],
                   "--http01-listen", "127.0.0.1:%d" % other)
    assert res.returncode != 0
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("acme: urn:ietf:params:acme:error:"), res.stderr
    assert "fail.example.test" in line or "127.0.0.1" in line, line
    assert not out.exists()
