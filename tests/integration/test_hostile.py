# SPDX-License-Identifier: MIT
"""Hostile uploads through a real mount: inputs built to cost a lot of CPU
(iteration counts, chains of one name, many certificates), content no TLS
client accepts (a CA as the leaf, no serverAuth, an unknown critical
extension, SHA-1, a loop of cross-signs, RSA e=1), CSR names that would
break status, oversized passphrases and names with a NUL byte, and what is
left of secrets in a core dump. Every refusal is seen three ways: the
errno of cp/close, the sentence in status, and nothing served or stored
changed. While costly uploads are judged, another domain stays readable
(counted reads, no timing asserts).

Hostile files are made here with python3-cryptography and the openssl
command. Iteration counts past the cap are set by changing the value of the
DER INTEGER in place (same length), so making them costs nothing."""

import base64
import errno
import ipaddress
import os
import re
import signal
import subprocess
import sys
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import certfs_harness as h
import test_upload as up

D = up.D
OTHER = "other.example.com"
CHEAP_ITER = b"\x02\x03\x00\x80\x00"  # INTEGER 32768
HUGE_ITER = b"\x02\x03\x7f\xff\xff"   # INTEGER 8388607, 14 times the cap


# ---------------------------------------------------------------- files


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def openssl_out(tmp_path, out, *args):
    path = str(tmp_path / out)
    h.openssl(*args, "-out", path)
    with open(path, "rb") as f:
        return f.read()


def with_huge_iter(der):
    """The one iteration count in der (32768) set to 8388607."""
    assert der.count(CHEAP_ITER) == 1, "expected one iteration count of 32768"
    return der.replace(CHEAP_ITER, HUGE_ITER)


def pfx(tmp_path, key, certs, password, *extra):
    kf = write(tmp_path, "pfx-key.pem", up.key_pem(key))
    cf = write(tmp_path, "pfx-certs.pem", up.chain_pem(*certs))
    return openssl_out(tmp_path, "out.pfx", "pkcs12", "-export", "-inkey", kf, "-in", cf,
                       "-passout", "pass:" + password, *extra)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(subject, pub, issuer, signer, ca=False, names=(), eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
         extra=()):
    now = up.utcnow()
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
         .public_key(pub).serial_number(x509.random_serial_number())
         .not_valid_before(now - up.days(1)).not_valid_after(now + up.days(30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                            critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    return b.sign(signer, hashes.SHA256())


def openssl_signed(tmp_path, subject_key, issuer_cert, issuer_key, ext, md="sha256",
                   pubkey=None, subject=D):
    """A certificate made by `openssl x509 -req` (SHA-1 signatures, forced
    public keys), issued by issuer_cert/issuer_key."""
    csr = (x509.CertificateSigningRequestBuilder().subject_name(name(subject))
           .sign(subject_key, hashes.SHA256()))
    args = ["x509", "-req", "-in", write(tmp_path, "x.csr", csr.public_bytes(
                serialization.Encoding.PEM)),
            "-CA", write(tmp_path, "ca.pem", up.pem(issuer_cert)),
            "-CAkey", write(tmp_path, "ca.key", up.key_pem(issuer_key)),
            "-set_serial", "4242", "-days", "30", "-" + md,
            "-extfile", write(tmp_path, "x.ext", ext.encode())]
    if pubkey:
        args += ["-force_pubkey", pubkey]
    return x509.load_pem_x509_certificate(openssl_out(tmp_path, "x.pem", *args))


LEAF_EXT = "basicConstraints=CA:FALSE\nsubjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n" % D
CA_EXT = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"


def rsa_pubkey_with_e(tmp_path, e):
    """An RSA public key file whose exponent is e (python3-cryptography
    refuses to make one): the DER is built by `openssl asn1parse -genconf`."""
    n = up.new_key("rsa2048").public_key().public_numbers().n
    conf = ("asn1=SEQUENCE:spki\n[spki]\nalg=SEQUENCE:alg\nkey=BITWRAP,SEQUENCE:rsakey\n"
            "[alg]\noid=OID:rsaEncryption\nnull=NULL\n"
            "[rsakey]\nn=INTEGER:0x%X\ne=INTEGER:%d\n" % (n, e))
    der = str(tmp_path / "pub.der")
    h.openssl("asn1parse", "-genconf", write(tmp_path, "pub.cnf", conf.encode()), "-out", der,
              "-noout")
    pem = str(tmp_path / "pub.pem")
    h.openssl("pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem)
    return pem


def status_lines(m, domain):
    return m.read(domain, "status", mode="r").splitlines()


# ---------------------------------------------------------------- bounded cost


@pytest.mark.timeout(120)
def test_pfx_mac_iterations_refused(mounted, tmp_path):
    up.managed(mounted)
    key, leaf = up.ca().leaf([D])
    # No encryption inside: the MAC is the only derivation, its count the only 32768.
    data = pfx(tmp_path, key, [leaf, up.ca().inter], "", "-keypbe", "NONE", "-certpbe",
               "NONE", "-iter", "32768")
    up.refused(mounted, tmp_path, D, "cert.pfx", with_huge_iter(data), errno.EINVAL,
               "PFX MAC: iteration count 8388607 is over the limit of 600000")
    # The same file with its real count is fine: the count was the only fault.
    up.cp_ok(mounted, tmp_path, data, D, "cert.pfx")
    up.assert_serves_upload(mounted, leaf, key)


@pytest.mark.timeout(120)
def test_pkcs8_pbkdf2_iterations_refused(mounted, tmp_path):
    up.managed(mounted)
    key, leaf = up.ca().leaf([D])
    up.cp_ok(mounted, tmp_path, b"hostile-pass\n", D, "passphrase")
    kf = write(tmp_path, "plain.key", up.key_pem(key))
    enc = openssl_out(tmp_path, "enc.der", "pkcs8", "-topk8", "-in", kf, "-outform", "DER",
                      "-v2", "aes-256-cbc", "-iter", "32768", "-passout", "pass:hostile-pass")
    hostile = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" +
               base64.encodebytes(with_huge_iter(enc)) +
               b"-----END ENCRYPTED PRIVATE KEY-----\n")
    up.refused(mounted, tmp_path, D, "privkey.pem", hostile, errno.EINVAL,
               "encrypted private key: iteration count 8388607 is over the limit of 600000")


@pytest.mark.timeout(120)
def test_many_certificates_refused(mounted, tmp_path):
    """1,000 tiny certificates with one subject (222 s of chain sorting
    before the limit), and 16 that all share one name, each signed by the
    next one's key (n^2 signature checks without the budget)."""
    up.managed(mounted)
    k = ec.generate_private_key(ec.SECP256R1())
    one = up.pem(cert("Same", k.public_key(), "Same", k))
    up.refused(mounted, tmp_path, D, "fullchain.pem", one * 1000, errno.EINVAL,
               "more than 16 certificates (the limit for one upload)")
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(16)]
    ring = b"".join(up.pem(cert("Same", keys[i].public_key(), "Same", keys[(i + 1) % 16]))
                    for i in range(16))
    up.refused(mounted, tmp_path, D, "fullchain.pem", ring, errno.EINVAL,
               "needs more than 64 signature checks (the limit)", ways=("os",))


@pytest.mark.timeout(60)
def test_passphrase_and_names_limits(mounted, tmp_path):
    up.managed(mounted)
    up.refused(mounted, tmp_path, D, "passphrase", b"p" * 1025, errno.EINVAL,
               "passphrase is longer than 1024 bytes (the limit)")
    # Exactly the limit is a passphrase.
    up.cp_ok(mounted, tmp_path, b"p" * 1024, D, "passphrase")
    before = status_lines(mounted, D)
    up.refused(mounted, tmp_path, D, "names", ("www.%s\0evil.%s\n" % (D, D)).encode(),
               errno.EINVAL, "names contains a NUL byte")
    names = [ln for ln in status_lines(mounted, D) if ln.startswith("names:")]
    assert names == [ln for ln in before if ln.startswith("names:")]
    many = "".join("n%d.%s\n" % (i, D) for i in range(100)).encode()
    up.refused(mounted, tmp_path, D, "names", many, errno.EINVAL,
               "names lists more than 100 names (the limit)", ways=("os",))


# ---------------------------------------------------------------- strict acceptance


@pytest.mark.timeout(120)
def test_not_for_tls_refused(mounted, tmp_path):
    """Chains that sort fine but that a TLS client refuses."""
    up.managed(mounted)
    ca = up.ca()
    k = up.new_key()
    pub = k.public_key()

    def leaf(**kw):
        return cert(D, pub, ca.inter_cn, ca.inter_key, names=[D], **kw)

    cases = [
        (leaf(ca=True), "certificate is a CA certificate (CA:TRUE), which TLS clients refuse"),
        (leaf(eku=[ExtendedKeyUsageOID.CLIENT_AUTH]),
         "extended key usage does not include serverAuth"),
        (leaf(extra=[(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"),
                                                 b"\x05\x00"), True)]),
         "has an unknown critical extension 1.3.6.1.4.1.55555.1"),
        (openssl_signed(tmp_path, k, ca.inter, ca.inter_key, LEAF_EXT, md="sha1"),
         "certificate 'CN=%s' is signed with SHA1, which TLS clients refuse" % D),
    ]
    for c, words in cases:
        up.refused(mounted, tmp_path, D, "fullchain.pem", up.chain_pem(c, ca.inter),
                   errno.EINVAL, words, ways=("os",))
    # A SHA-1 intermediate under a good root, with a good leaf under it.
    ik = up.new_key()
    inter = openssl_signed(tmp_path, ik, ca.root, ca.root_key, CA_EXT, md="sha1",
                           subject="SHA1 Intermediate")
    good = cert(D, pub, "SHA1 Intermediate", ik, names=[D])
    up.refused(mounted, tmp_path, D, "fullchain.pem", up.chain_pem(good, inter),
               errno.EINVAL, "certificate 'CN=SHA1 Intermediate' is signed with SHA1",
               ways=("os",))
    # The positive control: the same leaf without the fault is taken (with its key).
    fine = leaf()
    up.cp_ok(mounted, tmp_path, up.key_pem(k) + up.chain_pem(fine, ca.inter), D, "bundle.pem")
    up.assert_serves_upload(mounted, fine, k)


@pytest.mark.timeout(120)
def test_cross_signed_loop_refused(mounted, tmp_path):
    up.managed(mounted)
    ka, kb, kl = up.new_key(), up.new_key(), up.new_key()
    a = cert("Loop A", ka.public_key(), "Loop B", kb, ca=True, eku=())
    b = cert("Loop B", kb.public_key(), "Loop A", ka, ca=True, eku=())
    leaf = cert(D, kl.public_key(), "Loop A", ka, names=[D])
    up.refused(mounted, tmp_path, D, "fullchain.pem", up.chain_pem(leaf, a, b), errno.EINVAL,
               "which comes earlier in the chain (a loop)")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("e", [1, 65536], ids=["e1", "even"])
def test_bad_rsa_exponent_refused(mounted, tmp_path, e):
    up.managed(mounted)
    ca = up.ca()
    c = openssl_signed(tmp_path, up.new_key(), ca.inter, ca.inter_key, LEAF_EXT,
                       pubkey=rsa_pubkey_with_e(tmp_path, e))
    text = h.openssl("x509", "-noout", "-text", input=up.pem(c)).stdout.decode()
    assert "Exponent: %d " % e in text, text
    up.refused(mounted, tmp_path, D, "fullchain.pem", up.chain_pem(c, ca.inter), errno.EINVAL,
               "RSA public exponent %d is not allowed" % e)


def csr_with(sans, cn=D):
    key = up.new_key()
    b = x509.CertificateSigningRequestBuilder().subject_name(name(cn))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.timeout(120)
def test_csr_names_validated(mounted, tmp_path):
    up.managed(mounted)
    cases = [
        ([x509.DNSName("*.*.")], "CSR name: domain name '*.*.' ends with a dot"),
        ([x509.DNSName("*.*." + D)], "has a wildcard outside the first label"),
        ([x509.DNSName("a b." + D)], "has a character ' ' not allowed in a host name"),
        ([x509.DNSName("a.." + D)], "has an empty label"),
        ([x509.DNSName("x.%s\nstate: valid\nsource: uploaded" % D)],
         "CSR name: domain name contains a control character"),
        ([x509.DNSName("\x01\x02." + D)], "CSR name: domain name contains a control character"),
        # The local issuer issues for addresses (development names), of
        # the domain only.
        ([x509.DNSName(D), x509.IPAddress(ipaddress.ip_address("192.0.2.1"))],
         "CSR name 192.0.2.1 does not belong to example.com"),
        ([x509.DNSName(D), x509.RFC822Name("hostmaster@" + D)],
         "CSR asks for an email address: certfs orders certificates for DNS names only"),
        ([x509.DNSName(D), x509.UniformResourceIdentifier("https://%s/" % D)],
         "CSR asks for a URI: certfs orders certificates for DNS names only"),
    ]
    for i, (sans, words) in enumerate(cases):
        up.refused(mounted, tmp_path, D, "request.csr", csr_with(sans), errno.EINVAL, words,
                   ways=("cp",) if i == 0 else ("os",))
        lines = status_lines(mounted, D)
        assert sum(ln.startswith("state:") for ln in lines) == 1, lines
        assert sum(ln.startswith("source:") for ln in lines) == 1, lines
    # The CN is a name too.
    up.refused(mounted, tmp_path, D, "request.csr", csr_with([], cn="x.%s\nstate: valid" % D),
               errno.EINVAL, "control character", ways=("os",))
    assert mounted.status_json(D)["state"] == "valid"


# ---------------------------------------------------------------- readers keep reading


@pytest.fixture(scope="module")
def costly_pfx(tmp_path_factory):
    """The most expensive PFX an upload may be: MAC, certificates and key at
    600,000 iterations each (1.8 M of the 2 M budget), for a name that is
    not the domain's, so that it is judged in full and then refused."""
    tmp = tmp_path_factory.mktemp("costly")
    key, leaf = up.ca().leaf(["foreign.example.org"])
    return pfx(tmp, key, [leaf, up.ca().inter], "costly-pass", "-iter", "600000")


def judge_concurrently(m, domain, fname, data, n=16):
    """n writers put data into domain/fname at once; once all have written,
    another domain's fullchain.pem is read (fresh opens) until the last
    close(2) verdict is in. (verdicts, reads completed before the last
    verdict, reads with wrong bytes, reads completed before the first
    verdict)."""
    want = m.read(OTHER, "fullchain.pem")
    opened = threading.Barrier(n + 1)
    verdicts = []
    lock = threading.Lock()

    def upload():
        fd = os.open(m.path(domain, fname), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, data)
        finally:
            opened.wait(60)
        try:
            os.close(fd)
            got = 0
        except OSError as e:
            got = e.errno
        with lock:
            verdicts.append(got)

    threads = [threading.Thread(target=upload) for _ in range(n)]
    for t in threads:
        t.start()
    opened.wait(60)  # every upload written: from here on each close is a verdict
    reads = bad = first = 0
    while True:
        with lock:
            if len(verdicts) == n:
                break
        with open(m.path(OTHER, "fullchain.pem"), "rb") as f:
            got = f.read()
        with lock:
            if len(verdicts) < n:
                reads += 1
            if not verdicts:
                first += 1
        bad += got != want
    for t in threads:
        t.join(60)
    return verdicts, reads, bad, first


@pytest.mark.timeout(300)
def test_other_domain_readable_while_judged(mounted, tmp_path, costly_pfx):
    """16 of the costliest uploads the limits allow, at once, into one
    domain: another domain is read while they are judged (reads complete,
    with the right bytes, before even the first verdict: judging holds no
    thread that requests need); every upload is refused with EINVAL and
    nothing changes."""
    m = mounted
    up.managed(m)
    m.mkdir(OTHER)
    up.cp_ok(m, tmp_path, b"costly-pass\n", D, "passphrase")
    before = up.snapshot(m, D)
    verdicts, reads, bad, first = judge_concurrently(m, D, "cert.pfx", costly_pfx)
    assert verdicts == [errno.EINVAL] * 16, verdicts
    assert bad == 0
    # One costly judgement is over a million iterations: a free request
    # thread answers many reads meanwhile. Judged on the request threads,
    # the 16 uploads held every thread and a read waited for a verdict.
    assert first >= 10, "%d reads of %s completed before the first verdict" % (first, OTHER)
    up.assert_unchanged(m, D, before)
    last = m.status_json(D)["last_error"]
    assert "certificate does not cover example.com" in last, last


GIVING_UP_WRITER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.write(fd, open(sys.argv[2], "rb").read())
sys.stdout.write("written\n")
sys.stdout.flush()
os.close(fd)  # killed while this waits for the verdict
"""


@pytest.mark.timeout(300)
def test_writers_that_give_up_stop_the_work(mounted, tmp_path, costly_pfx):
    """Eight writers of the costliest upload, killed while their close(2)
    waits for its verdict: only what was already being judged is judged
    (two at a time); the rest is dropped unjudged, so a writer that gives up
    costs no more work. Nothing changes."""
    m = mounted
    up.managed(m)
    up.cp_ok(m, tmp_path, b"costly-pass\n", D, "passphrase")
    before = up.snapshot(m, D)
    f = tmp_path / "costly.pfx"
    f.write_bytes(costly_pfx)
    since = len(m.stderr())
    ps = [subprocess.Popen([sys.executable, "-c", GIVING_UP_WRITER, m.path(D, "cert.pfx"),
                            str(f)], stdout=subprocess.PIPE) for _ in range(8)]
    for p in ps:
        assert p.stdout.readline() == b"written\n"
    for p in ps:
        p.kill()
    for p in ps:
        p.wait(30)
        p.stdout.close()
    judged = re.compile(r"cert\.pfx: write refused")
    dropped = re.compile(r"cert\.pfx: (its writer stopped waiting|a writer was killed "
                         r"\(signal 9\) before closing the file); not judged")

    def outcomes():
        log = m.stderr()[since:]
        n = (len(judged.findall(log)), len(dropped.findall(log)))
        return n if sum(n) == 8 else None

    n_judged, n_dropped = h.wait_for(outcomes, 60, "a verdict or a drop for all 8 uploads")
    assert n_judged <= 4, "%d of 8 given-up uploads were judged anyway" % n_judged
    up.assert_unchanged(m, D, before)


@pytest.mark.timeout(300)
def test_hostile_uploads_answered_at_once(mounted, tmp_path):
    """16 PFX files asking for 8.4 M MAC iterations each, at once: all are
    refused from their parameters, within fewer than 50,000 reads of another
    domain. The reads are the clock: refusing 16 (each refusal is stored,
    one after the other) takes some thousands here; judging them in full
    took about 3 s each, which is some 200,000."""
    m = mounted
    up.managed(m)
    m.mkdir(OTHER)
    key, leaf = up.ca().leaf([D])
    data = with_huge_iter(pfx(tmp_path, key, [leaf, up.ca().inter], "", "-keypbe", "NONE",
                              "-certpbe", "NONE", "-iter", "32768"))
    before = up.snapshot(m, D)
    verdicts, reads, bad, _ = judge_concurrently(m, D, "cert.pfx", data)
    assert verdicts == [errno.EINVAL] * 16, verdicts
    assert bad == 0
    assert reads < 50000, "%d reads of %s completed before the last verdict" % (reads, OTHER)
    up.assert_unchanged(m, D, before)
    assert "over the limit of 600000" in m.status_json(D)["last_error"]


# ---------------------------------------------------------------- core dumps


def needles_of_key(key, pem_text):
    """Byte strings that must not be in a dump: lines of the PEM body, the
    PKCS#8 DER, the private scalar in both byte orders (OpenSSL keeps
    bignums as little-endian words)."""
    out = {}
    body = [ln for ln in pem_text.splitlines() if ln and not ln.startswith(b"-----")]
    for i, ln in enumerate(body[:3]):
        out["PEM line %d" % (i + 1)] = ln
    out["PKCS#8 DER"] = key.private_bytes(serialization.Encoding.DER,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
    d = key.private_numbers().private_value.to_bytes(32, "big")
    out["private scalar"] = d
    out["private scalar (little-endian)"] = d[::-1]
    return out


@pytest.fixture(scope="module")
def gcore():
    g = h.which("gcore")
    if not g:
        h.missing_prerequisite("gcore (gdb) is missing")
    return g


def test_core_dump_holds_no_key(certfs, certfs_bin, tmp_path, gcore):
    """A key uploaded, a key generated, a passphrase written, the key files
    and the PFX read: a gcore dump of the daemon then holds none of them."""
    if h.sanitized(certfs_bin):
        # Its shadow memory spans terabytes: gdb takes minutes over it, and
        # ASan's quarantine keeps freed blocks the way no release build does.
        pytest.skip("gcore of an AddressSanitizer build; the plain build runs this test")
    m = certfs()
    os.mkdir(m.path(D))
    m.wait_state(D, "valid")
    secret = b"hostile-passphrase-%d" % os.getpid()
    up.cp_ok(m, tmp_path, secret + b"\n", D, "passphrase")
    key, leaf, kp, bundle = up.valid_upload()
    up.cp_ok(m, tmp_path, bundle, D, "bundle.pem")
    up.wait_served(m, leaf)
    for f in ("privkey.pem", "bundle.pem", "cert.pfx"):
        m.read(D, f)
    other = "gen.example.com"
    m.mkdir(other)
    gen_pem = m.read(other, "privkey.pem")
    m.read(other, "cert.pfx")
    gen_key = serialization.load_pem_private_key(gen_pem, None)
    assert isinstance(gen_key, ec.EllipticCurvePrivateKey)

    needles = {"passphrase": secret}
    for tag, k, p in (("uploaded", key, kp), ("generated", gen_key, gen_pem)):
        for what, b in needles_of_key(k, p).items():
            needles["%s key: %s" % (tag, what)] = b

    prefix = str(tmp_path / "core")
    # gcore is a script around gdb: on a timeout the whole group goes, so
    # that no gdb is left holding the daemon stopped.
    p = subprocess.Popen([gcore, "-o", prefix, str(m.proc.pid)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    core = "%s.%d" % (prefix, m.proc.pid)
    assert p.returncode == 0 and os.path.exists(core), out
    try:
        with open(core, "rb") as f:
            dump = f.read()
        # The dump is real: it holds what is public (the served certificate).
        assert up.pem(leaf).splitlines()[2] in dump
        found = [what for what, b in needles.items() if b in dump]

        assert not found, "the core dump holds: %s" % ", ".join(found)
    finally:
        os.unlink(core)
