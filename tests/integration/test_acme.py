# SPDX-License-Identifier: MIT
"""The daemon issuing from a real ACME server: certfs --issuer acme against
Pebble 2.4 + pebble-challtestsrv (PebbleEnv) on loopback.

One Pebble serves the whole session (conftest.py); tests that need Pebble started with
other settings (EAB, nonce rejection, alternate roots, short validity) start
their own. Issued chains are checked with `openssl verify` against the root
Pebble serves. Nothing sleeps for a fixed time: every wait is a condition
with a deadline.
"""

import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import acme_proxy  # noqa: E402
import certfs_harness as h  # noqa: E402
import pebble_env  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DNS_HOOK = os.path.join(ROOT, "contrib", "hooks", "dns-challtestsrv")
NGINX = "/usr/sbin/nginx"
ISSUE_TIMEOUT = 20.0
PROBLEM_PREFIX = "acme: urn:ietf:params:acme:error:"

pytestmark = pytest.mark.acme


# ---------------------------------------------------------------- Pebble

_need_pebble = h.need_pebble


@pytest.fixture
def own_pebble(tmp_path):
    """Factory for a Pebble with special settings, stopped at teardown."""
    _need_pebble()
    factory = pebble_env.PebbleFactory(tmp_path)
    try:
        yield factory.start
    finally:
        factory.stop_all()


_seq = [0]


def domain(prefix):
    """A fresh name per call (Pebble keeps state for the whole module)."""
    _seq[0] += 1
    return "%s%d-%d.example.test" % (prefix, _seq[0], os.getpid())


def acme_config(extra="", acme="", hooks=""):
    text = "[acme]\n" + acme
    if hooks:
        text += "[hooks]\n" + hooks
    return text + extra


def start_acme(certfs, env, http01=True, directory=None, ca_bundle=None, config=None,
               args=(), daemon_env=None, **kw):
    """certfs --issuer acme against env (or `directory` in front of it)."""
    a = ["--issuer", "acme", "--acme-directory", directory or env.directory_url,
         "--acme-ca-bundle", ca_bundle or env.ca_pem]
    if http01:
        a += ["--http01-listen", "127.0.0.1:%d" % env.http_port]
    e = {"CERTFS_CHALLTESTSRV": env.challtestsrv_url}
    e.update(daemon_env or {})
    return certfs(config=config, args=a + list(args), env=e, **kw)


def wait_acme(fs, name, timeout=ISSUE_TIMEOUT, cond=None, what="an ACME certificate"):
    """Wait until NAME serves a certificate from the ACME issuer (and cond(fs, name)
    holds); fails early with the status when the daemon reports an error."""
    last = {}

    def ok():
        st = h.status_json(fs.mount, name)
        last["st"] = st
        if st.get("source") != "acme":
            return None
        if cond is not None and not cond(fs, name):
            return None
        return st

    try:
        return h.wait_for(ok, timeout, "%s for %s" % (what, name))
    except h.WaitTimeout as e:
        raise h.WaitTimeout("%s; last status.json: %r; daemon log tail:\n%s"
                            % (e, last.get("st"), fs.stderr()[-3000:]))


def wait_error(fs, name, pred, timeout=ISSUE_TIMEOUT, what="last_error"):
    last = {}

    def ok():
        st = h.status_json(fs.mount, name)
        last["st"] = st
        err = st.get("last_error") or ""
        return st if err and pred(err) else None

    try:
        return h.wait_for(ok, timeout, "%s of %s" % (what, name))
    except h.WaitTimeout as e:
        raise h.WaitTimeout("%s; last status.json: %r; daemon log tail:\n%s"
                            % (e, last.get("st"), fs.stderr()[-3000:]))


# acme/acme.h ACME_ORDER_MIN_INTERVAL_S: one order per domain per 30 s, whoever
# asks (a renew, names or CSR inside it is held until it ends).
ORDER_MIN_INTERVAL_S = 30


def past_order_floor(fs):
    """Move the daemon's test clock past the per-domain order floor, so that
    what a test asks next goes out at once."""
    fs.set_clock((fs.clock or 0) + ORDER_MIN_INTERVAL_S + 1)


def utc_seconds(s):
    """An RFC 3339 time of status.json ("2026-12-07T19:43:04Z") as a Unix time."""
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def leaf(fs, name):
    return x509.load_pem_x509_certificate(fs.read(name, "cert.pem"))


def verify_chain(fs, name, root_file, tmp_path, check=True):
    """openssl verify of NAME's leaf with its chain.pem against root_file."""
    d = tmp_path / ("verify-" + name.replace("*", "_"))
    d.mkdir(exist_ok=True)
    for f in ("cert.pem", "chain.pem", "fullchain.pem"):
        (d / f).write_bytes(fs.read(name, f))
    r = subprocess.run(["openssl", "verify", "-CAfile", root_file, "-untrusted",
                        str(d / "chain.pem"), str(d / "cert.pem")],
                       capture_output=True, text=True, timeout=20)
    if check:
        assert r.returncode == 0, "openssl verify failed: %s%s" % (r.stdout, r.stderr)
    return r


def assert_issued(fs, name, env, tmp_path, names=None):
    cert = leaf(fs, name)
    got = sorted(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                 .value.get_values_for_type(x509.DNSName))
    assert got == sorted(names or [name])
    verify_chain(fs, name, env.root_file, tmp_path)
    full = h.pem_certs(fs.read(name, "fullchain.pem"))
    assert h.fingerprint(full[0]) == h.fingerprint(cert), \
        "fullchain.pem does not start with the leaf"
    if os.path.exists(fs.path(name, "privkey.pem")):
        assert h.key_matches_cert(h.load_key(fs.read(name, "privkey.pem")), cert)
    return cert


def store_file(fs, name, what):
    return os.path.join(fs.store, "domains", name, what)


def write_file(path, data):
    """open/write/close: the write is judged at close."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_script(path, text):
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip())
    os.chmod(path, 0o755)
    return path


def pebble_cert_status(env, cert):
    """Pebble's management API view of a certificate: "Valid" or "Revoked"."""
    for s in ("%x" % cert.serial_number, "%032x" % cert.serial_number):
        try:
            doc = json.loads(env._mgmt_get("/cert-status-by-serial/" + s))
        except Exception:  # noqa: BLE001 - try the other spelling
            continue
        return doc.get("Status")
    return None


# ---------------------------------------------------------------- 1. basics

@pytest.mark.timeout(60)
def test_mkdir_issues_from_pebble(certfs, pebble, tmp_path):
    fs = start_acme(certfs, pebble)
    name = domain("basic")
    os.mkdir(fs.path(name))
    # The placeholder is served at once, before the CA answers.
    assert h.pem_certs(fs.read(name, "fullchain.pem"))
    wait_acme(fs, name)
    assert_issued(fs, name, pebble, tmp_path)
    st = h.status_json(fs.mount, name)
    assert not st.get("last_error"), st


# ---------------------------------------------------------------- 2. nginx serves the tokens

@pytest.fixture
def nginx(tmp_path):
    """nginx serving a directory on a port: start(root, port)."""
    if not os.access(NGINX, os.X_OK):
        h.missing_prerequisite("%s is missing (apt install nginx)" % NGINX)
    procs = []

    def start(root, port):
        d = tmp_path / "nginx"
        d.mkdir()
        conf = d / "nginx.conf"
        conf.write_text(textwrap.dedent("""\
            daemon off;
            master_process on;
            worker_processes 1;
            user root;
            pid {d}/nginx.pid;
            error_log {d}/error.log info;
            events {{ worker_connections 64; }}
            http {{
                access_log {d}/access.log;
                client_body_temp_path {d}/client_body;
                proxy_temp_path {d}/proxy;
                fastcgi_temp_path {d}/fastcgi;
                uwsgi_temp_path {d}/uwsgi;
                scgi_temp_path {d}/scgi;
                sendfile off;
                server {{
                    listen 127.0.0.1:{port};
                    root {root};
                    location /.well-known/acme-challenge/ {{ default_type text/plain; }}
                }}
            }}
            """).format(d=d, port=port, root=root))
        p = subprocess.Popen([NGINX, "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(d / "stderr.log", "wb"))
        procs.append(p)
        pebble_env.wait_port(port, time.monotonic() + 10, p, "nginx")
        p.logdir = d
        return p

    try:
        yield start
    finally:
        for p in procs:
            pebble_env.stop_process(p)


@pytest.mark.timeout(60)
def test_http01_through_nginx_serving_the_mount(pebble, nginx, certfs, tmp_path):
    fs = start_acme(certfs, pebble, http01=False)
    ng = nginx(fs.mount, pebble.http_port)
    name = domain("nginx")
    os.mkdir(fs.path(name))
    try:
        wait_acme(fs, name)
    except AssertionError:
        access = (ng.logdir / "access.log").read_text(errors="replace")
        raise AssertionError("not issued through nginx; nginx access log:\n" + access[-2000:])
    assert_issued(fs, name, pebble, tmp_path)
    access = (ng.logdir / "access.log").read_text(errors="replace")
    assert "/.well-known/acme-challenge/" in access and '" 200 ' in access, access


# ---------------------------------------------------------------- 3. wildcard via dns-01

@pytest.mark.timeout(60)
def test_wildcard_via_dns01_hook(certfs, pebble, tmp_path):
    fs = start_acme(certfs, pebble, http01=False,
                    config=acme_config(hooks="dns = %s\n" % DNS_HOOK))
    name = "*.wild%d.example.test" % os.getpid()
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    assert_issued(fs, name, pebble, tmp_path)


# ---------------------------------------------------------------- 4. request.csr

def blocking_dns_hook(tmp_path):
    """A dns hook that records each call ("PID ARGS" lines in `calls`) and
    then waits until `flag` exists (at most 60 s) before doing the real work.
    Returns (script, calls, flag)."""
    calls = tmp_path / "hook-calls"
    flag = tmp_path / "hook-release"
    script = write_script(str(tmp_path / "dns-blocking"), """
        #!/bin/sh
        echo "$$ $*" >> {calls}
        i=0
        while [ ! -e {flag} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
        exec {hook} "$@"
        """.format(calls=calls, flag=flag, hook=DNS_HOOK))
    return script, calls, flag


def make_csr(names):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM)


@pytest.mark.timeout(60)
def test_request_csr_issues_for_the_csr_key(certfs, pebble, tmp_path):
    fs = start_acme(certfs, pebble, clock=0)
    name = domain("csr")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    first = leaf(fs, name)
    past_order_floor(fs)
    key, csr = make_csr([name])
    write_file(fs.path(name, "request.csr"), csr)
    wait_acme(fs, name, cond=lambda f, n: h.spki(leaf(f, n)) == h.spki(key), timeout=10,
              what="a certificate for the CSR's key")
    assert leaf(fs, name).serial_number != first.serial_number
    assert_issued(fs, name, pebble, tmp_path)
    for f in ("privkey.pem", "bundle.pem", "cert.pfx"):
        assert not os.path.exists(fs.path(name, f)), "%s is served for a CSR issuance" % f


@pytest.mark.timeout(60)
def test_request_csr_written_during_an_issuance_is_not_lost(certfs, pebble, tmp_path):
    # The mkdir's own issuance is held in the dns hook while the CSR arrives.
    blocking, calls, flag = blocking_dns_hook(tmp_path)
    fs = start_acme(certfs, pebble, http01=False, clock=0,
                    config=acme_config(acme="challenge = dns-01\n", hooks="dns = %s\n" % blocking))
    name = domain("csrbusy")
    os.mkdir(fs.path(name))
    h.wait_for(lambda: calls.exists() and " add " in calls.read_text(), ISSUE_TIMEOUT,
               "the dns hook of the mkdir's issuance")
    key, csr = make_csr([name])
    write_file(fs.path(name, "request.csr"), csr)
    past_order_floor(fs)  # the CSR's order goes out once the first is done
    flag.write_text("go\n")
    wait_acme(fs, name, cond=lambda f, n: h.spki(leaf(f, n)) == h.spki(key), timeout=10,
              what="a certificate for the CSR written during the first issuance (the "
                   "CSR was accepted, then the in-flight issuance finished with the "
                   "daemon's own key and the CSR was never ordered)")
    assert_issued(fs, name, pebble, tmp_path)
    for f in ("privkey.pem", "bundle.pem", "cert.pfx"):
        assert not os.path.exists(fs.path(name, f)), "%s is served for a CSR issuance" % f


# ---------------------------------------------------------------- 5. EAB

@pytest.mark.timeout(60)
def test_external_account_binding(own_pebble, certfs, tmp_path):
    import base64
    kid = "certfs-kid-1"
    hmac_key = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    wrong = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    env = own_pebble(eab_required=True, eab_keys={kid: hmac_key})

    good = start_acme(certfs, env, config=acme_config(
        acme="email = eab@example.test\neab_kid = %s\neab_hmac_key = %s\n" % (kid, hmac_key)))
    name = domain("eab")
    os.mkdir(good.path(name))
    wait_acme(good, name)
    assert_issued(good, name, env, tmp_path)
    good.stop()

    bad = start_acme(certfs, env, config=acme_config(
        acme="eab_kid = %s\neab_hmac_key = %s\n" % (kid, wrong)))
    name2 = domain("eabbad")
    os.mkdir(bad.path(name2))
    st = wait_error(bad, name2, lambda e: "unauthorized" in e or "externalAccount" in e,
                    what="an EAB error in last_error")
    assert st["last_error"].startswith("acme: "), st
    assert st.get("source") != "acme", st


# ---------------------------------------------------------------- 6. bad nonces

@pytest.mark.timeout(90)
def test_issues_despite_rejected_nonces(own_pebble, certfs, tmp_path):
    env = own_pebble(nonce_reject=50)
    # clock=0 only makes the scheduler look every 200 ms: when ten badNonce
    # answers in a row exhaust the client's retries (about one run in twenty),
    # the 30 s backoff retry then comes on time instead of at the next minute.
    fs = start_acme(certfs, env, clock=0)
    names = [domain("nonce") for _ in range(3)]
    for n in names:
        os.mkdir(fs.path(n))
    for n in names:
        wait_acme(fs, n, timeout=45)
        assert_issued(fs, n, env, tmp_path)


# ---------------------------------------------------------------- 7. preferred chain

@pytest.mark.timeout(60)
def test_preferred_chain_selects_alternate_root(own_pebble, certfs, tmp_path):
    env = own_pebble(alternate_roots=2)
    roots = []
    for i in (0, 1):
        p = env.write_root(i)
        roots.append(p)
    root1 = x509.load_pem_x509_certificate(open(roots[1], "rb").read())
    cn1 = root1.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    fs = start_acme(certfs, env, config=acme_config(acme="preferred_chain = %s\n" % cn1))
    name = domain("chain")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    ok = verify_chain(fs, name, roots[1], tmp_path, check=False)
    assert ok.returncode == 0, ("the served chain does not lead to the preferred root %r: %s%s"
                                % (cn1, ok.stdout, ok.stderr))
    no = verify_chain(fs, name, roots[0], tmp_path, check=False)
    assert no.returncode != 0, "the served chain still leads to the default root"


# ---------------------------------------------------------------- 8. failing challenge

@pytest.mark.timeout(60)
def test_failed_challenge_reports_problem_then_renew_issues(certfs, pebble, tmp_path):
    # Nothing answers on Pebble's http port: the validation fails.
    fs = start_acme(certfs, pebble, http01=False, clock=0)
    name = domain("fail")
    os.mkdir(fs.path(name))
    st = wait_error(fs, name, lambda e: e.startswith(PROBLEM_PREFIX),
                    what="a problem document in last_error")
    assert st.get("source") != "acme", st
    assert "\n" not in st["last_error"], st
    status_text = fs.read(name, "status", mode="r")
    assert "urn:ietf:params:acme:error:" in status_text, status_text
    assert h.pem_certs(fs.read(name, "fullchain.pem")), "the placeholder is no longer served"

    # Start the responder (restart with --http01-listen) and force a new try.
    assert fs.stop() == 0
    fs.args += ["--http01-listen", "127.0.0.1:%d" % pebble.http_port]
    fs.start()
    past_order_floor(fs)
    fs.renew(name)
    wait_acme(fs, name)
    assert_issued(fs, name, pebble, tmp_path)


# ---------------------------------------------------------------- 9. restart mid-order

@pytest.mark.timeout(90)
def test_restart_mid_order_resumes_with_saved_key(certfs, pebble, tmp_path):
    blocking, calls, flag = blocking_dns_hook(tmp_path)
    fs = start_acme(certfs, pebble, http01=False,
                    config=acme_config(acme="challenge = dns-01\n", hooks="dns = %s\n" % blocking))
    name = domain("resume")
    os.mkdir(fs.path(name))
    h.wait_for(lambda: calls.exists() and " add " in calls.read_text(), ISSUE_TIMEOUT,
               "the dns hook to be called")
    order_path = store_file(fs, name, "order")
    assert os.path.exists(order_path), "no order record in the store while the order is pending"
    with open(order_path) as f:
        order = json.load(f)
    assert order.get("url", "").startswith("https://"), order
    saved_key = serialization.load_pem_private_key(order["key"].encode(), None)

    hook_pids = [int(line.split()[0]) for line in calls.read_text().splitlines()]
    fs.kill9()
    h.lazy_unmount(fs.mount)
    for pid in hook_pids:  # the orphaned hook of the dead daemon
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with open(order_path) as f:
        assert json.load(f)["url"] == order["url"]

    fs.write_config(acme_config(acme="challenge = dns-01\n", hooks="dns = %s\n" % DNS_HOOK))
    since = len(fs.stderr())
    fs.start()
    wait_acme(fs, name)
    cert = assert_issued(fs, name, pebble, tmp_path)
    assert h.spki(cert) == h.spki(saved_key), \
        "the certificate after the restart is not for the key saved with the order"
    assert not os.path.exists(order_path), "the order record is kept after success"
    assert order["url"] in fs.stderr()[since:], \
        "the daemon did not finish the saved order %s after the restart" % order["url"]


# ---------------------------------------------------------------- 10. renewal when due

@pytest.mark.timeout(60)
def test_renews_when_a_third_is_left_and_runs_deploy_hook(own_pebble, certfs, tmp_path):
    env = own_pebble(validity_seconds=3600)
    log = tmp_path / "deploy.log"
    deploy = write_script(str(tmp_path / "deploy"), """
        #!/bin/sh
        echo "$CERTFS_EVENT $CERTFS_DOMAIN" >> {log}
        """.format(log=log))
    fs = start_acme(certfs, env, clock=0, config=acme_config(hooks="deploy = %s\n" % deploy))
    name = domain("renew")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    first = assert_issued(fs, name, env, tmp_path)
    lifetime = (h.cert_not_after(first) - h.cert_not_before(first)).total_seconds()
    assert lifetime <= 3700, lifetime
    h.wait_for(lambda: log.exists() and name in log.read_text(), 10,
               "the deploy hook after the first issuance")
    deploys = log.read_text().count(name)

    # Move the clock until less than a third of the lifetime is left.
    left = (h.cert_not_after(first) - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    fs.set_clock(int(left - lifetime / 3 + 120))
    wait_acme(fs, name, cond=lambda f, n: leaf(f, n).serial_number != first.serial_number,
              what="a renewed certificate (new serial)")
    # Pebble dates certificates by the real clock: back to it, or the new one
    # would be due at once too.
    fs.set_clock(0)
    assert_issued(fs, name, env, tmp_path)
    h.wait_for(lambda: log.read_text().count(name) > deploys, 10,
               "the deploy hook after the renewal")
    lines = log.read_text().splitlines()
    assert all(line == "deploy " + name for line in lines), lines


# ---------------------------------------------------------------- 11. 429 + Retry-After

def read_state(fs, name):
    with open(store_file(fs, name, "state")) as f:
        return json.load(f)


@pytest.mark.timeout(60)
def test_rate_limited_new_order_honours_retry_after(pebble, proxy, certfs, tmp_path):
    px = proxy(pebble, retry_after=120)
    px.rate_limit_new_order = True
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle,
                    clock=0)
    name = domain("ratelimit")
    os.mkdir(fs.path(name))
    t0 = time.time()
    st = wait_error(fs, name, lambda e: "rateLimited" in e, what="rateLimited in last_error")
    assert st.get("source") == "selfsigned", "the placeholder is not served: %r" % st
    assert h.pem_certs(fs.read(name, "fullchain.pem"))
    state = h.wait_for(lambda: read_state(fs, name).get("next_attempt"), 5,
                       "next_attempt in the stored state")
    assert t0 + 110 <= state <= time.time() + 125, \
        "next_attempt %s is not about now+120 (now %d)" % (state, time.time())
    orders = px.count("/order-plz", "POST")
    assert orders >= 1

    # Persisted: a restart keeps it, and no new order goes out before it.
    assert fs.stop() == 0
    px.rate_limit_new_order = False
    fs.set_clock(60)
    fs.start()
    assert read_state(fs, name).get("next_attempt") == state
    st = h.status_json(fs.mount, name)
    assert st.get("source") == "selfsigned", st
    # A quiet second (five scheduler ticks) with the clock 60 s on: nothing is ordered.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert px.count("/order-plz", "POST") == orders, \
            "a new order went out before Retry-After passed; log:\n" + fs.stderr()[-2000:]
        time.sleep(0.05)
    fs.set_clock(130)
    wait_acme(fs, name)
    assert_issued(fs, name, pebble, tmp_path)


# ---------------------------------------------------------------- 12. revoke on delete

@pytest.mark.timeout(60)
def test_revoke_on_delete(certfs, pebble, tmp_path):
    fs = start_acme(certfs, pebble, config=acme_config(acme="revoke_on_delete = true\n"))
    name = domain("revoke")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    cert = assert_issued(fs, name, pebble, tmp_path)
    assert pebble_cert_status(pebble, cert) == "Valid"
    os.rmdir(fs.path(name))
    assert not os.path.exists(fs.path(name))
    h.wait_for(lambda: pebble_cert_status(pebble, cert) == "Revoked", 10,
               "Pebble to list the certificate as revoked; daemon log:\n" + fs.stderr()[-2000:])
    # The log line follows the CA's answer, which Pebble may list first.
    fs.wait_log(r"certificate revoked")


# ---------------------------------------------------------------- ARI (RFC 9773)

@pytest.mark.timeout(60)
def test_ari_window_triggers_renewal_with_replaces(pebble, proxy, certfs, tmp_path):
    px = proxy(pebble)
    px.ari = True
    # clock=0: the scheduler looks every 200 ms instead of every minute.
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle,
                    clock=0)
    name = domain("ari")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    first = assert_issued(fs, name, pebble, tmp_path)
    cid = acme_proxy.ari_cert_id(first)
    h.wait_for(lambda: cid in px.ari_ids, 10,
               "a renewalInfo request for the issued certificate (%s); the daemon does not "
               "ask the CA's renewalInfo (RFC 9773); proxy saw %r; log:\n%s"
               % (cid, px.requests[-20:], fs.stderr()[-2000:]))
    orders = len(px.new_orders)

    px.ari_due.add(cid)  # the suggested window is now in the past
    # renewalInfo is asked at most once a minute per domain: a minute on.
    fs.set_clock(acme_proxy_floor())
    wait_acme(fs, name, cond=lambda f, n: leaf(f, n).serial_number != first.serial_number,
              what="a renewal inside the CA's suggested window (ARI)")
    assert_issued(fs, name, pebble, tmp_path)
    later = [o for o in px.new_orders[orders:] if o]
    assert later, "no newOrder was seen for the renewal"
    assert any(o.get("replaces") == cid for o in later), \
        "the renewal's newOrder did not carry \"replaces\": %r (want %s)" % (later, cid)


# ---------------------------------------------------------------- accounts per CA, SIGHUP

def account_records(fs):
    """The account records in the store: {directory: record}."""
    d = os.path.join(fs.store, "acme", "accounts")
    out = {}
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else ():
        with open(os.path.join(d, n)) as f:
            rec = json.load(f)
        out[rec["directory"]] = rec
    return out


def ca_config(env, acme="", hooks=""):
    """[acme] pointing at env through the file (so SIGHUP can change it)."""
    return acme_config(acme="directory = %s\nca_bundle = %s\n%s"
                       % (env.directory_url, env.ca_pem, acme), hooks=hooks)


def start_file_acme(certfs, env, config, **kw):
    """certfs --issuer acme with the CA given only by the config file."""
    return certfs(config=config, env={"CERTFS_CHALLTESTSRV": env.challtestsrv_url},
                  args=["--issuer", "acme", "--http01-listen", "127.0.0.1:%d" % env.http_port],
                  **kw)


def sighup(fs, config):
    since = len(fs.stderr())
    fs.write_config(config)
    fs.signal(signal.SIGHUP)
    fs.wait_log(r"config: reloaded", since=since)


@pytest.mark.timeout(120)
def test_changed_directory_gets_its_own_account(certfs, pebble, own_pebble, tmp_path):
    # The second CA validates http-01 on the same port, so one responder serves both.
    other = own_pebble(http_port=pebble.http_port)
    fs = start_file_acme(certfs, pebble, ca_config(pebble), clock=0)
    first = domain("ca1")
    os.mkdir(fs.path(first))
    wait_acme(fs, first)
    verify_chain(fs, first, pebble.root_file, tmp_path)
    recs = account_records(fs)
    assert list(recs) == [pebble.directory_url], recs
    assert recs[pebble.directory_url]["url"].startswith(pebble.directory_url[:-len("/dir")])

    # A restart with another directory: a new account there, the old one kept.
    assert fs.stop() == 0
    fs.write_config(ca_config(other))
    fs.start()
    second = domain("ca2")
    os.mkdir(fs.path(second))
    wait_acme(fs, second)
    verify_chain(fs, second, other.root_file, tmp_path)
    # The existing domain renews at the new CA too (no foreign "kid").
    serial = leaf(fs, first).serial_number
    past_order_floor(fs)
    fs.renew(first)
    wait_acme(fs, first, cond=lambda f, n: leaf(f, n).serial_number != serial,
              what="a renewal at the new CA")
    verify_chain(fs, first, other.root_file, tmp_path)
    recs = account_records(fs)
    assert sorted(recs) == sorted([pebble.directory_url, other.directory_url]), recs
    assert recs[other.directory_url]["url"].startswith(other.directory_url[:-len("/dir")])
    assert recs[other.directory_url]["key"] != recs[pebble.directory_url]["key"]

    # SIGHUP back to the first CA (directory and CA bundle): applied without a
    # restart, and its stored account is used again (no new key made).
    keys_made = fs.stderr().count("new account key for")
    sighup(fs, ca_config(pebble))
    third = domain("ca3")
    os.mkdir(fs.path(third))
    wait_acme(fs, third)
    verify_chain(fs, third, pebble.root_file, tmp_path)
    assert fs.stderr().count("new account key for") == keys_made, fs.stderr()[-3000:]
    assert account_records(fs)[pebble.directory_url] == recs[pebble.directory_url]


@pytest.mark.timeout(90)
def test_sighup_applies_a_fixed_ca_bundle(certfs, pebble, tmp_path):
    # A wrong CA bundle first (Pebble's issuing root, not its listener's CA).
    bad = ca_config(pebble).replace(pebble.ca_pem, pebble.root_file)
    fs = start_file_acme(certfs, pebble, bad, clock=0)
    name = domain("bundle")
    os.mkdir(fs.path(name))
    wait_error(fs, name, lambda e: "certificate" in e.lower(), what="a TLS error")
    since = len(fs.stderr())
    sighup(fs, "[certfs]\nworkers = 3\n" + ca_config(pebble))
    assert "workers changed: takes effect after a restart" in fs.stderr()[since:]
    past_order_floor(fs)
    fs.renew(name)
    wait_acme(fs, name)
    verify_chain(fs, name, pebble.root_file, tmp_path)


def acme_proxy_floor():
    """Seconds past the ARI polling floor (acme/acme.h ACME_ARI_MIN_INTERVAL_S)."""
    return 61


# ---------------------------------------------------------------- rate-limit rules

# The numbers of acme/acme.h's rate-limit rules (and the README's).
POLL_MAX_S = 2.0            # ACME_POLL_MAX_MS: at most one poll per 2 s once backed off
POLL_QUICK = 7              # 25 ms doubling to 2 s: the polls before that
FAILED_VALIDATIONS_PER_HOUR = 4


def quiet(seconds, check, what):
    """check() must hold during the whole period (the scheduler looks every 200 ms
    with a test clock, so a second is five chances to break it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_retry_after_zero_on_a_processing_order_is_not_a_poll_storm(pebble, proxy, certfs,
                                                                    tmp_path):
    px = proxy(pebble)
    px.processing_hold = 4.0
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle)
    name = domain("ra0")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    assert_issued(fs, name, pebble, tmp_path)
    polls = px.count_prefix("/my-order/", "POST")
    # Without the floor this is one poll per 25 ms: 160 in 4 s.
    bound = POLL_QUICK + px.processing_hold / POLL_MAX_S + 3
    assert 2 <= polls <= bound, "%d order polls for a %.0f s processing order with Retry-After: 0" \
        % (polls, px.processing_hold)


@pytest.mark.timeout(60)
def test_renewal_information_is_polled_at_most_once_a_minute(pebble, proxy, certfs, tmp_path):
    px = proxy(pebble)
    px.ari = True
    px.ari_retry_after = 0
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle,
                    clock=0)
    name = domain("arifloor")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    cid = acme_proxy.ari_cert_id(leaf(fs, name))
    asked = lambda: px.ari_ids.count(cid)  # noqa: E731
    h.wait_for(lambda: asked() == 1, 10, "the first renewalInfo request")
    quiet(1.5, lambda: asked() == 1, "renewalInfo asked again within a minute")
    fs.set_clock(acme_proxy_floor())
    h.wait_for(lambda: asked() == 2, 10, "renewalInfo a minute later")
    quiet(1.0, lambda: asked() == 2, "renewalInfo asked again within a minute")
    assert fs.stderr().count("renewal information: renew at") == 1, fs.stderr()[-2000:]


@pytest.mark.timeout(90)
def test_due_on_arrival_is_served_and_reported_not_reordered(own_pebble, proxy, certfs, tmp_path):
    env = own_pebble(validity_seconds=1200)
    px = proxy(env)
    notify_log = tmp_path / "notify.log"
    notify = write_script(str(tmp_path / "notify"), """
        #!/bin/sh
        echo "$CERTFS_EVENT $CERTFS_DOMAIN" >> {log}
        """.format(log=notify_log))
    fs = start_acme(certfs, env, directory=px.directory_url, ca_bundle=px.ca_bundle, clock=0,
                    config=acme_config(hooks="notify = %s\n" % notify))
    name = domain("arrival")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    first = leaf(fs, name)
    assert px.count("/order-plz", "POST") == 1
    # 1000 s on: a third of 1200 s is left, so it renews; and every new
    # certificate (dated by Pebble's real clock) is due the moment it arrives.
    fs.set_clock(1000)
    st = wait_error(fs, name, lambda e: "already due" in e, what="the due-on-arrival report")
    assert st.get("source") == "acme" and st.get("state") == "valid", st
    h.wait_for(lambda: leaf(fs, name).serial_number != first.serial_number, ISSUE_TIMEOUT,
               "the certificate due on arrival to be served")
    quiet(2.0, lambda: px.count("/order-plz", "POST") == 2,
          "the certificate due on arrival was ordered again: %d orders"
          % px.count("/order-plz", "POST"))
    h.wait_for(lambda: notify_log.exists() and "due-on-arrival " + name in notify_log.read_text(),
               ISSUE_TIMEOUT, "the notify hook for the certificate due on arrival")
    # Held for a quarter of the lifetime, and status says until when.
    st = h.status_json(fs.mount, name)
    assert "already due" in st["renewal_reason"], st
    second = leaf(fs, name)
    life = (h.cert_not_after(second) - h.cert_not_before(second)).total_seconds()
    held_until = utc_seconds(st["next_renewal"])
    assert held_until - utc_seconds(st["last_attempt"]) >= life / 4 - 1, (st, life)
    # Past the hold (by the daemon's clock, whatever time has passed since):
    # one more order, no more.
    fs.set_clock(max(fs.clock, int(held_until - time.time()) + 2))
    h.wait_for(lambda: px.count("/order-plz", "POST") == 3, ISSUE_TIMEOUT,
               "the order after the hold")
    wait_acme(fs, name, cond=lambda f, n: leaf(f, n).serial_number != second.serial_number,
              what="the certificate ordered after the hold")
    quiet(1.5, lambda: px.count("/order-plz", "POST") == 3, "orders after the hold")


@pytest.mark.timeout(120)
def test_failed_validations_stay_under_the_hourly_limit(pebble, proxy, certfs, tmp_path):
    px = proxy(pebble)
    # Nothing answers http-01: every validation fails.
    fs = start_acme(certfs, pebble, http01=False, directory=px.directory_url,
                    ca_bundle=px.ca_bundle, clock=0)
    name = domain("vfail")
    os.mkdir(fs.path(name))
    orders = lambda: px.count("/order-plz", "POST")  # noqa: E731
    failures = lambda: read_state(fs, name).get("failures", 0)  # noqa: E731
    for n in range(1, FAILED_VALIDATIONS_PER_HOUR):
        h.wait_for(lambda: failures() >= n, ISSUE_TIMEOUT, "failed validation %d" % n)
        past_order_floor(fs)
        fs.renew(name)  # a forced renewal skips the back-off, not the limit
    h.wait_for(lambda: failures() >= FAILED_VALIDATIONS_PER_HOUR, ISSUE_TIMEOUT,
               "failed validation %d" % FAILED_VALIDATIONS_PER_HOUR)
    past_order_floor(fs)
    fs.renew(name)
    wait_error(fs, name, lambda e: "failed validations in the last hour" in e,
               what="the failed-validation hold")
    assert orders() == FAILED_VALIDATIONS_PER_HOUR
    quiet(1.5, lambda: orders() == FAILED_VALIDATIONS_PER_HOUR,
          "an order went out past the failed-validation limit")
    before = h.status_json(fs.mount, name)
    assert before["last_attempt"], before

    # A restart forgets neither the count nor the last attempt.
    assert fs.stop() == 0
    fs.start()
    st = h.status_json(fs.mount, name)
    assert st["last_attempt"] == before["last_attempt"], (st, before)
    past_order_floor(fs)
    fs.renew(name)
    h.wait_for(lambda: "failed validations in the last hour"
               in h.status_json(fs.mount, name).get("renewal_reason", ""), 10,
               "the failed-validation hold after the restart")
    quiet(1.5, lambda: orders() == FAILED_VALIDATIONS_PER_HOUR,
          "an order went out past the failed-validation limit after a restart")
    # An hour later the held renewal goes out by itself.
    fs.set_clock(fs.clock + 3600)
    h.wait_for(lambda: orders() == FAILED_VALIDATIONS_PER_HOUR + 1, ISSUE_TIMEOUT,
               "the held order an hour later")


@pytest.mark.timeout(120)
def test_user_requests_keep_the_per_domain_order_floor(pebble, proxy, certfs, tmp_path):
    px = proxy(pebble)
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle, clock=0)
    name = domain("loop")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    mine = lambda: orders_for(px, name)  # noqa: E731
    assert mine() == 1, "a new domain's first order goes out at once"
    first = leaf(fs, name).serial_number
    # A loop of renews with a names write among them: every write is
    # accepted; nothing is ordered inside the floor.
    for _ in range(10):
        fs.renew(name)
    write_file(fs.path(name, "names"), ("%s\nwww.%s\n" % (name, name)).encode())
    for _ in range(10):
        fs.renew(name)
    st = h.wait_for(lambda: (lambda s: s if s.get("renewal_reason", "").startswith("paced")
                             else None)(h.status_json(fs.mount, name)), 10,
                    "the pacing hold in status")
    assert utc_seconds(st["next_renewal"]) == \
        utc_seconds(st["last_attempt"]) + ORDER_MIN_INTERVAL_S, st
    quiet(1.5, lambda: mine() == 1, "a request inside the per-domain floor placed an order")
    # At the floor's end one order goes out, for the names last written.
    past_order_floor(fs)
    wait_acme(fs, name, cond=lambda f, n: leaf(f, n).serial_number != first,
              what="the held request at the end of the floor")
    assert_issued(fs, name, pebble, tmp_path, names=[name, "www." + name])
    quiet(1.5, lambda: mine() == 2, "%d orders for one held request" % mine())
    # The same for request.csr.
    second = leaf(fs, name).serial_number
    key, csr = make_csr([name])
    write_file(fs.path(name, "request.csr"), csr)
    quiet(1.0, lambda: mine() == 2, "a CSR inside the per-domain floor placed an order")
    past_order_floor(fs)
    wait_acme(fs, name, cond=lambda f, n: leaf(f, n).serial_number != second
              and h.spki(leaf(f, n)) == h.spki(key), what="the CSR's certificate")
    assert mine() == 3


@pytest.mark.timeout(90)
def test_held_request_outlives_a_restart(pebble, proxy, certfs, tmp_path):
    """A names write held by the per-domain floor, then the daemon stops:
    once started again, the request is still made, and only once (a second
    restart, by SIGKILL, does not make it again)."""
    px = proxy(pebble)
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle, clock=0)
    name = domain("held")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    first = leaf(fs, name).serial_number
    write_file(fs.path(name, "names"), ("%s\nwww.%s\n" % (name, name)).encode())
    h.wait_for(lambda: h.status_json(fs.mount, name).get("renewal_reason", "")
               .startswith("paced"), 10, "the pacing hold in status")
    assert fs.stop() == 0
    assert orders_for(px, name) == 1
    fs.start()
    h.wait_for(lambda: h.status_json(fs.mount, name).get("next_renewal"), 10,
               "the stored request in status after the restart")
    quiet(1.0, lambda: orders_for(px, name) == 1,
          "an order inside the per-domain floor after a restart")
    past_order_floor(fs)
    wait_acme(fs, name, cond=lambda f, n: leaf(f, n).serial_number != first,
              what="the held names request after the restart")
    assert_issued(fs, name, pebble, tmp_path, names=[name, "www." + name])
    # Answered: after another restart it is not made again.
    fs.kill9()
    h.lazy_unmount(fs.mount)
    fs.start()
    past_order_floor(fs)
    st = h.wait_for(lambda: (lambda s: s if "lifetime" in s.get("renewal_reason", "") else None)(
        h.status_json(fs.mount, name)), 10, "the lifetime rule once the request is answered")
    quiet(1.0, lambda: orders_for(px, name) == 2, "the answered request was made again")


# ---------------------------------------------------------------- issuer = none, issuer switch

def orders_for(px, name):
    return sum(1 for o in px.new_orders if o and name in json.dumps(o))


@pytest.mark.timeout(90)
def test_issuer_none_domain_makes_no_orders(pebble, proxy, certfs, tmp_path):
    import test_upload as tu
    px = proxy(pebble)
    notify_log = tmp_path / "notify.log"
    notify = write_script(str(tmp_path / "notify"), """
        #!/bin/sh
        echo "$CERTFS_EVENT $CERTFS_DOMAIN" >> {log}
        """.format(log=notify_log))
    name, other = domain("none"), domain("managed")
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle, clock=0,
                    config=acme_config(hooks="notify = %s\n" % notify)
                    + "[domain %s]\nissuer = none\n" % name)
    os.mkdir(fs.path(name))
    os.mkdir(fs.path(other))
    wait_acme(fs, other)
    assert h.pem_certs(fs.read(name, "fullchain.pem")), "no placeholder for the issuer-none domain"
    st = h.status_json(fs.mount, name)
    assert st["source"] == "selfsigned" and st["next_renewal"] is None, st
    assert "issuer none" in st["renewal_reason"], st
    no_orders = lambda: orders_for(px, name) == 0  # noqa: E731
    quiet(1.5, no_orders, "an order went out for an issuer-none domain")

    def notified(event):
        return notify_log.exists() and ("%s %s" % (event, name)) in notify_log.read_text()

    # An upload is served; removing it serves the self-signed placeholder and notifies.
    _, cert, _, bundle = tu.valid_upload(names=(name,))
    write_file(fs.path(name, "bundle.pem"), bundle)
    h.wait_for(lambda: leaf(fs, name).serial_number == cert.serial_number, 10, "the upload served")
    os.unlink(fs.path(name, "fullchain.pem"))
    h.wait_for(lambda: h.status_json(fs.mount, name).get("source") == "selfsigned"
               and leaf(fs, name).serial_number != cert.serial_number, 10,
               "the self-signed placeholder after rm")
    h.wait_for(lambda: notified("placeholder"), 10, "the notify hook after rm")

    # The same when an upload expires (61 days on; it was valid for 60).
    _, cert2, _, bundle2 = tu.valid_upload(names=(name,))
    write_file(fs.path(name, "bundle.pem"), bundle2)
    h.wait_for(lambda: leaf(fs, name).serial_number == cert2.serial_number, 10, "the upload served")
    fs.set_clock(61 * 86400)
    h.wait_for(lambda: h.status_json(fs.mount, name).get("source") == "selfsigned"
               and leaf(fs, name).serial_number != cert2.serial_number, 10,
               "the self-signed placeholder after the upload expired")
    h.wait_for(lambda: notified("expired"), 10, "the notify hook after expiry")
    quiet(1.0, no_orders, "an order went out for an issuer-none domain")


@pytest.mark.timeout(90)
def test_issuer_switch_reissues_existing_domains(pebble, proxy, certfs, tmp_path):
    px = proxy(pebble)
    fs = certfs(args=["--issuer", "local"])
    names = [domain("switch") for _ in range(3)]
    for n in names:
        os.mkdir(fs.path(n))
    for n in names:
        h.wait_for(lambda: h.status_json(fs.mount, n).get("source") == "local", 10,
                   "a local certificate for " + n)
    assert fs.stop() == 0
    fs.args = ["--issuer", "acme", "--acme-directory", px.directory_url,
               "--acme-ca-bundle", px.ca_bundle,
               "--http01-listen", "127.0.0.1:%d" % pebble.http_port]
    fs.extra_env["CERTFS_CHALLTESTSRV"] = pebble.challtestsrv_url
    fs.start()
    for n in names:
        wait_acme(fs, n, timeout=40)
        assert_issued(fs, n, pebble, tmp_path)
    quiet(1.0, lambda: len(px.new_orders) == len(names),
          "more orders than domains after the switch: %d" % len(px.new_orders))


@pytest.mark.timeout(90)
def test_renew_in_root_status_renews_every_domain(pebble, proxy, certfs, tmp_path):
    px = proxy(pebble)
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle, clock=0)
    names = [domain("all") for _ in range(3)]
    for n in names:
        os.mkdir(fs.path(n))
    serials = {}
    for n in names:
        wait_acme(fs, n)
        serials[n] = leaf(fs, n).serial_number
    with pytest.raises(OSError) as e:
        write_file(fs.path("status"), b"renew everything\n")
    assert e.value.errno == 22
    # Past the per-domain floor of automatic orders (30 s).
    fs.set_clock(31)
    write_file(fs.path("status"), b"renew\n")
    for n in names:
        wait_acme(fs, n, cond=lambda f, d: leaf(f, d).serial_number != serials[d],
                  what="a renewal after renew in MOUNT/status")
        assert_issued(fs, n, pebble, tmp_path)
    quiet(1.0, lambda: len(px.new_orders) == 2 * len(names),
          "%d orders for %d domains renewed once" % (len(px.new_orders), len(names)))


# ---------------------------------------------------------------- start-up checks, profile

@pytest.mark.timeout(60)
@pytest.mark.parametrize("acme,hooks,line,words", [
    ("ca_bundle = /nonexistent/acme-ca.pem\n", "", 2, "ca_bundle: /nonexistent/acme-ca.pem: No such file"),
    ("eab_kid = kid-1\n", "", 2, "eab_kid needs eab_hmac_key too"),
    ("challenge = dns-01\n", "", 2, "challenge: dns-01 needs the dns hook"),
    ("", "deploy = /nonexistent/reload\n", 3, "deploy: /nonexistent/reload: No such file"),
])
def test_config_checked_at_start(certfs, acme, hooks, line, words):
    fs = certfs(config=acme_config(acme=acme, hooks=hooks), args=["--issuer", "acme"],
                start=False)
    r = subprocess.run(fs.argv(), env=fs.env(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, "certfs started with a bad configuration"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith("%s:%d: %s" % (fs.config, line, words)) or \
        ("%s:%d: %s" % (fs.config, line, words)) in lines[0], lines[0]


@pytest.mark.timeout(60)
def test_profile_only_where_the_server_offers_it(pebble, proxy, certfs, tmp_path):
    px = proxy(pebble)
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle,
                    config=acme_config(acme="profile = shortlived\n"))
    name = domain("noprofile")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    assert px.new_orders and all("profile" not in o for o in px.new_orders if o), px.new_orders
    assert "offers no certificate profiles: profile shortlived is not sent" in fs.stderr()
    assert fs.stop() == 0

    # A server with profiles, but not this one: a clear refusal, no order.
    px2 = proxy(pebble)
    px2.profiles = {"classic": "the usual", "tlsserver": "short"}
    fs2 = start_acme(certfs, pebble, directory=px2.directory_url, ca_bundle=px2.ca_bundle,
                     config=acme_config(acme="profile = shortlived\n"))
    name2 = domain("badprofile")
    os.mkdir(fs2.path(name2))
    wait_error(fs2, name2, lambda e: "profile shortlived is not offered" in e and
               "classic, tlsserver" in e, what="the profile refusal")
    assert not px2.new_orders


# ---------------------------------------------------------------- status: next renewal, retries

@pytest.mark.timeout(60)
def test_status_shows_next_renewal_and_retries(certfs, pebble, tmp_path):
    fs = start_acme(certfs, pebble)
    name = domain("sched")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    st = h.status_json(fs.mount, name)
    cert = leaf(fs, name)
    life = (h.cert_not_after(cert) - h.cert_not_before(cert)).total_seconds()
    nxt = datetime.datetime.strptime(st["next_renewal"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    left = (h.cert_not_after(cert) - nxt).total_seconds()
    # A third of the lifetime left, less up to 2% of jitter: the time the
    # scheduler orders at (and metrics show), a little after the third.
    assert life / 3 - life / 50 - 60 <= left <= life / 3 + 60, (st, life, left)
    assert "lifetime" in st["renewal_reason"], st
    assert st["last_attempt"] and st["failures"] == 0 and st["next_retry"] is None, st
    assert st["last_success"] and st["last_success"] >= st["last_attempt"], st
    text = fs.read(name, "status", mode="r")
    for key in ("next_renewal:", "renewal_reason:", "last_success:", "last_attempt:",
                "failures: 0", "next_retry: none"):
        assert key in text, text
    assert fs.stop() == 0

    # A failure: the count, the retry time and why.
    fs2 = start_acme(certfs, pebble, http01=False)
    bad = domain("schedfail")
    os.mkdir(fs2.path(bad))
    wait_error(fs2, bad, lambda e: e.startswith(PROBLEM_PREFIX))
    st = h.wait_for(lambda: (lambda s: s if s.get("next_retry") else None)(
        h.status_json(fs2.mount, bad)), 5, "next_retry in status.json")
    assert st["failures"] >= 1 and st["last_attempt"], st
    assert st["last_success"] is None, st  # never issued: no success to show
    assert st["renewal_reason"].startswith("retry after"), st
    assert st["next_renewal"] == st["next_retry"], st


# ---------------------------------------------------------------- tls-alpn-01

@pytest.mark.timeout(60)
def test_tls_alpn01_builtin_responder(certfs, pebble, tmp_path):
    fs = start_acme(certfs, pebble, http01=False,
                    args=["--tls-alpn01-listen", "127.0.0.1:%d" % pebble.tls_port],
                    config=acme_config(acme="challenge = tls-alpn-01\n"))
    name = domain("alpn")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    assert_issued(fs, name, pebble, tmp_path)
    assert "tls-alpn-01: listening on 127.0.0.1:%d" % pebble.tls_port in fs.stderr()


@pytest.mark.timeout(60)
def test_tls_alpn01_without_responder_says_so(certfs, pebble, tmp_path):
    fs = start_acme(certfs, pebble, http01=False,
                    config=acme_config(acme="challenge = tls-alpn-01\n"))
    name = domain("noalpn")
    os.mkdir(fs.path(name))
    wait_error(fs, name, lambda e: "tls-alpn-01 needs the built-in responder" in e)


# ---------------------------------------------------------------- dns-01 through CNAME delegation

@pytest.mark.timeout(60)
@pytest.mark.parametrize("resolver", ["127.0.0.1", "[::1]"])
def test_dns01_follows_cname_delegation(certfs, pebble, tmp_path, resolver):
    if resolver.startswith("[") and not pebble.dns_ipv6:
        pytest.skip("no IPv6 on the loopback here (::1 cannot be bound)")
    calls = tmp_path / "dns-calls"
    hook = write_script(str(tmp_path / "dns-recording"), """
        #!/bin/sh
        echo "$*" >> {calls}
        exec {hook} "$@"
        """.format(calls=calls, hook=DNS_HOOK))
    auto, fixed = domain("cname"), domain("delegate")
    auto_target = "_acme-challenge.auth-%s.example.net" % auto.split(".")[0]
    fixed_target = "_acme-challenge.fixed-%s.example.net" % fixed.split(".")[0]
    # What the customer zone holds: _acme-challenge.NAME CNAME <delegated record>.
    pebble.challtestsrv_post("/set-cname", {"host": "_acme-challenge.%s." % auto,
                                            "target": auto_target + "."})
    pebble.challtestsrv_post("/set-cname", {"host": "_acme-challenge.%s." % fixed,
                                            "target": fixed_target + "."})
    fs = start_acme(certfs, pebble, http01=False, config=acme_config(
        acme="challenge = dns-01\ndns_resolver = %s:%d\n" % (resolver, pebble.dns_port),
        hooks="dns = %s\n" % hook) + "[domain %s]\ndns_delegate = %s\n" % (fixed, fixed_target))
    for n in (auto, fixed):
        os.mkdir(fs.path(n))
    for n in (auto, fixed):
        wait_acme(fs, n)
        assert_issued(fs, n, pebble, tmp_path)
    lines = calls.read_text().splitlines()
    added = [line.split()[1] for line in lines if line.startswith("add ")]
    assert sorted(added) == sorted([auto_target, fixed_target]), lines
    deleted = [line.split()[1] for line in lines if line.startswith("del ")]
    assert sorted(deleted) == sorted(added), lines


@pytest.mark.timeout(60)
def test_sighup_applies_key_type_and_hooks(certfs, pebble, tmp_path):
    log = tmp_path / "deploy.log"
    deploy = write_script(str(tmp_path / "deploy"), """
        #!/bin/sh
        echo "$CERTFS_EVENT $CERTFS_DOMAIN" >> {log}
        """.format(log=log))
    fs = start_file_acme(certfs, pebble, ca_config(pebble), clock=0)
    name = domain("hupkey")
    os.mkdir(fs.path(name))
    wait_acme(fs, name)
    first = leaf(fs, name)
    assert first.public_key().curve.name == "secp256r1"
    sighup(fs, "[certfs]\nkey_type = ec384\n" + ca_config(pebble, hooks="deploy = %s\n" % deploy))
    past_order_floor(fs)
    fs.renew(name)
    wait_acme(fs, name, cond=lambda f, n: leaf(f, n).serial_number != first.serial_number,
              what="a renewal after SIGHUP")
    assert leaf(fs, name).public_key().curve.name == "secp384r1", "key_type not applied"
    h.wait_for(lambda: log.exists() and ("deploy " + name) in log.read_text(), 10,
               "the deploy hook added by SIGHUP")


# ---------------------------------------------------------------- retry at next_retry

@pytest.mark.timeout(120)
def test_first_retry_comes_at_next_retry(pebble, proxy, certfs, tmp_path):
    # No test clock: the scheduler then looks only once a minute by itself,
    # so a retry on time means it was woken for it.
    px = proxy(pebble, retry_after=10)
    px.refuse_new_orders = 1
    fs = start_acme(certfs, pebble, directory=px.directory_url, ca_bundle=px.ca_bundle)
    name = domain("retry")
    os.mkdir(fs.path(name))
    st = wait_error(fs, name, lambda e: "rateLimited" in e, what="the refused order")
    st = h.wait_for(lambda: (lambda s: s if s.get("next_retry") else None)(
        h.status_json(fs.mount, name)), 5, "next_retry in status.json")
    assert st["failures"] == 1, st
    due = utc_seconds(st["next_retry"])
    assert px.count("/order-plz", "POST") == 1
    # The retry's order must reach the CA by next_retry (plus a little for a
    # loaded machine), not at the scheduler's next minute.
    h.wait_for(lambda: px.count("/order-plz", "POST") >= 2, max(due - time.time(), 0) + 5,
               "the retry's order at next_retry %s" % st["next_retry"])
    wait_acme(fs, name)
    assert px.count("/order-plz", "POST") == 2
    assert_issued(fs, name, pebble, tmp_path)
