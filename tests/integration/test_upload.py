# SPDX-License-Identifier: MIT
"""Writing into the tree, as a user does it through a real mount: uploading
certificates and keys (PEM, bundle, PKCS#12), CSRs, names, passphrases;
every refusal seen three ways (the errno of cp/close, the status sentence,
nothing changed); removal and expiry of an upload, with the hooks.

The certificates come from a small CA made here with python3-cryptography
(a root, an intermediate, leaves of every kind)."""

import datetime
import errno
import functools
import os
import random
import stat
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import certfs_harness as h

D = "example.com"
MIB = 1024 * 1024
EC_KEY_FILES = ("privkey.pem", "bundle.pem", "cert.pfx")

# ---------------------------------------------------------------- a small CA


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def days(n):
    return datetime.timedelta(days=n)


def new_key(kind="ec256"):
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise ValueError(kind)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_cn, pub, issuer_cn, issuer_key, not_before, not_after, ca, names=()):
    b = (x509.CertificateBuilder()
         .subject_name(_name(subject_cn))
         .issuer_name(_name(issuer_cn))
         .public_key(pub)
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before)
         .not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False,
                                          decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


class CA:
    """Root and intermediate of the test CA (made once per session)."""

    def __init__(self, tag="Test"):
        now = utcnow()
        self.root_key = new_key("ec384")
        self.root_cn = "%s Root CA" % tag
        self.root = _cert(self.root_cn, self.root_key.public_key(), self.root_cn,
                          self.root_key, now - days(365), now + days(3650), True)
        self.inter_key = new_key()
        self.inter_cn = "%s Intermediate CA" % tag
        self.inter = _cert(self.inter_cn, self.inter_key.public_key(), self.root_cn,
                           self.root_key, now - days(365), now + days(1825), True)

    def leaf(self, names, key=None, not_before=None, not_after=None, key_kind="ec256"):
        """(key, leaf certificate) for names (the first is the CN)."""
        key = key or new_key(key_kind)
        now = utcnow()
        nb = not_before if not_before is not None else now - days(1)
        na = not_after if not_after is not None else now + days(60)
        cert = _cert(names[0], key.public_key(), self.inter_cn, self.inter_key, nb, na,
                     False, names)
        return key, cert

    def lookalike_intermediate(self):
        """An intermediate with the real one's name but another key."""
        now = utcnow()
        k = new_key()
        return _cert(self.inter_cn, k.public_key(), self.root_cn, self.root_key,
                     now - days(365), now + days(1825), True)


@functools.lru_cache(maxsize=None)
def ca():
    return CA()


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key, fmt=serialization.PrivateFormat.PKCS8, password=None):
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, fmt, enc)


def chain_pem(*certs):
    return b"".join(pem(c) for c in certs)


def valid_upload(names=(D,), **kw):
    """(key, leaf, key PEM, bundle PEM: key, leaf, intermediate)."""
    key, leaf = ca().leaf(list(names), **kw)
    kp = key_pem(key)
    return key, leaf, kp, kp + chain_pem(leaf, ca().inter)


def not_after_str(cert):
    return h.cert_not_after(cert).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- writing


def write_file(tmp_path, data, name=None):
    p = tmp_path / (name or "upload-%d" % random.getrandbits(32))
    p.write_bytes(data)
    return str(p)


def cp(tmp_path, data, dst):
    """`cp SRC DST` as a user types it; the CompletedProcess."""
    return subprocess.run(["cp", write_file(tmp_path, data), dst], capture_output=True,
                          text=True)


def os_write(path, data, chunk=64 * 1024):
    """open, write, close at the os level; 0 or the errno of the first failing
    call (write(2) may fail early with EFBIG; close(2) carries the verdict)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:off + chunk])
    except OSError as e:
        try:
            os.close(fd)
        except OSError:
            pass
        return e.errno
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


def cp_ok(m, tmp_path, data, *parts):
    r = cp(tmp_path, data, m.path(*parts))
    assert r.returncode == 0, "cp into %s refused: %s; status: %r" % (
        "/".join(parts), r.stderr, m.status_json(parts[0]))
    return r


# ---------------------------------------------------------------- what is served


def store_files(m, domain):
    """The domain's records in the directory store, but the state record."""
    base = os.path.join(m.store, "domains", domain)
    out = {}
    for dirpath, _, files in os.walk(base):
        for f in files:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, base)
            if rel == "state" or ".tmp" in f:
                continue
            with open(p, "rb") as fh:
                out[rel] = fh.read()
    return out


def gen_records(m, domain):
    return {k: v for k, v in store_files(m, domain).items() if k.startswith("gen" + os.sep)}


def snapshot(m, domain):
    st = m.status_json(domain)
    snap = {"fullchain.pem": m.read(domain, "fullchain.pem"),
            "generation": st["generation"], "source": st["source"],
            "fingerprint": st["fingerprint_sha256"],
            "store": store_files(m, domain)}
    try:
        snap["privkey.pem"] = m.read(domain, "privkey.pem")
    except FileNotFoundError:
        snap["privkey.pem"] = None
    return snap


def assert_unchanged(m, domain, before):
    after = snapshot(m, domain)
    for k in ("fullchain.pem", "privkey.pem", "generation", "source", "fingerprint"):
        assert after[k] == before[k], "%s changed after a refused write" % k
    assert sorted(after["store"]) == sorted(before["store"]), \
        "store records of %s changed: %r -> %r" % (domain, sorted(before["store"]),
                                                   sorted(after["store"]))
    for k, v in before["store"].items():
        assert after["store"][k] == v, "store record %s of %s changed" % (k, domain)


ERRNO_TEXT = {errno.EINVAL: "Invalid argument", errno.EACCES: "Permission denied",
              errno.EPERM: "Operation not permitted", errno.EFBIG: "File too large"}


def refused(m, tmp_path, domain, fname, data, err, words, ways=("cp", "os")):
    """Write data into DOMAIN/fname and require a refusal seen three ways:
    the errno (cp's message and/or os-level close), last_error naming the
    file and saying `words`, and nothing served or stored changed."""
    before = snapshot(m, domain)
    dst = m.path(domain, fname)
    if "cp" in ways:
        r = cp(tmp_path, data, dst)
        assert r.returncode != 0, "cp into %s/%s was accepted" % (domain, fname)
        assert ERRNO_TEXT[err] in r.stderr, r.stderr
        assert_unchanged(m, domain, before)
    if "os" in ways:
        got = os_write(dst, data)
        assert got == err, "os-level write of %s/%s: errno %s, expected %s" % (
            domain, fname, got and errno.errorcode.get(got, got), errno.errorcode[err])
        assert_unchanged(m, domain, before)
    st = m.status_json(domain)
    last = st.get("last_error") or ""
    for w in ([words] if isinstance(words, str) else words):
        assert w in last, "last_error %r does not say %r" % (last, w)
    assert fname in last, "last_error %r does not name %s" % (last, fname)
    return st


def served(m, domain=D):
    """(leaf, chain after the leaf, key or None) of what the mount serves."""
    full = h.pem_certs(m.read(domain, "fullchain.pem"))
    try:
        key = h.load_key(m.read(domain, "privkey.pem"))
    except FileNotFoundError:
        key = None
    return full[0], full[1:], key


def wait_served(m, leaf, domain=D, timeout=3):
    """Wait until leaf is served (a rotation may sit behind a fence for up
    to a second); the status then."""
    want = h.fingerprint(leaf).hex()
    return h.wait_for(
        lambda: (lambda st: st if st["fingerprint_sha256"].replace(":", "").lower() == want
                 else None)(m.status_json(domain)),
        timeout, "%s to serve the certificate %s (status: %r)"
        % (domain, want[:16], m.status_json(domain)))


def assert_serves_upload(m, leaf, key=None, domain=D):
    st = wait_served(m, leaf, domain)
    assert st["source"] == "uploaded", st
    got_leaf, rest, got_key = served(m, domain)
    assert got_leaf == leaf, "the uploaded leaf is not served"
    assert rest == [ca().inter], "fullchain.pem must be the leaf then the intermediate"
    assert h.pem_certs(m.read(domain, "cert.pem")) == [leaf]
    assert h.pem_certs(m.read(domain, "chain.pem")) == [ca().inter]
    if key is not None:
        assert h.spki(got_key) == h.spki(key), "privkey.pem is not the uploaded key"
    assert h.key_matches_cert(got_key, got_leaf)
    assert st["fingerprint_sha256"].replace(":", "").lower() == h.fingerprint(leaf).hex()
    return st


def pending_text(m, domain=D):
    """status and status.json as text (both say what an upload waits for)."""
    return m.read(domain, "status", mode="r") + m.read(domain, "status.json", mode="r")


def managed(m, domain=D):
    m.mkdir(domain)
    return snapshot(m, domain)


# ---------------------------------------------------------------- uploads


@pytest.mark.timeout(60)
def test_shuffled_chain_then_key(mounted, tmp_path):
    before = managed(mounted)
    key, leaf, kp, _ = valid_upload()
    # root, leaf, intermediate: the daemon sorts them and drops the root.
    cp_ok(mounted, tmp_path, chain_pem(ca().root, leaf, ca().inter), D, "fullchain.pem")
    text = pending_text(mounted)
    assert "certificate waiting for its private key (write privkey.pem)" in text, text
    # Until its key arrives, the managed certificate is still served.
    now = snapshot(mounted, D)
    for k in ("fullchain.pem", "privkey.pem", "generation", "source"):
        assert now[k] == before[k], k
    assert set(now["store"]) - set(before["store"]), "the pending certificate is not stored"
    cp_ok(mounted, tmp_path, kp, D, "privkey.pem")
    st = assert_serves_upload(mounted, leaf, key)
    assert st["generation"] > before["generation"]
    assert "waiting" not in pending_text(mounted)


@pytest.mark.timeout(60)
def test_key_then_shuffled_chain(mounted, tmp_path):
    before = managed(mounted)
    key, leaf, kp, _ = valid_upload()
    cp_ok(mounted, tmp_path, kp, D, "privkey.pem")
    text = pending_text(mounted)
    assert "private key waiting for its certificate (write fullchain.pem)" in text, text
    now = snapshot(mounted, D)
    for k in ("fullchain.pem", "privkey.pem", "generation", "source"):
        assert now[k] == before[k], k
    cp_ok(mounted, tmp_path, chain_pem(ca().inter, ca().root, leaf), D, "fullchain.pem")
    assert_serves_upload(mounted, leaf, key)
    assert "waiting" not in pending_text(mounted)


@pytest.mark.timeout(60)
def test_pending_half_survives_restart(certfs, tmp_path):
    m = certfs()
    managed(m)
    key, leaf, kp, _ = valid_upload()
    cp_ok(m, tmp_path, chain_pem(leaf, ca().inter), D, "cert.pem")
    assert m.stop() == 0
    m.start()
    assert "waiting for its private key" in pending_text(m)
    assert m.status_json(D)["source"] == "local"
    cp_ok(m, tmp_path, kp, D, "privkey.pem")
    assert_serves_upload(m, leaf, key)


@pytest.mark.timeout(60)
def test_bundle_installed_at_once(mounted, tmp_path):
    before = managed(mounted)
    key, leaf, _, _ = valid_upload()
    # One file is enough, its blocks in any order (the root is dropped).
    blocks = [key_pem(key), pem(leaf), pem(ca().inter), pem(ca().root)]
    random.shuffle(blocks)
    order = [b.split(b"\n", 1)[0].decode() for b in blocks]
    r = cp(tmp_path, b"".join(blocks), mounted.path(D, "bundle.pem"))
    assert r.returncode == 0, "bundle in the order %r refused: %s" % (order, r.stderr)
    st = assert_serves_upload(mounted, leaf, key)
    assert st["generation"] > before["generation"]
    assert st["last_error"] is None, st
    # The combined files follow.
    blocks = h.pem_blocks(mounted.read(D, "bundle.pem"))
    assert [b[0] for b in blocks] == ["PRIVATE KEY", "CERTIFICATE", "CERTIFICATE"]
    assert h.spki(h.load_key(blocks[0][1])) == h.spki(key)
    from cryptography.hazmat.primitives.serialization import pkcs12
    k, c, extra = pkcs12.load_key_and_certificates(mounted.read(D, "cert.pfx"), None)
    assert c == leaf and h.spki(k) == h.spki(key) and list(extra) == [ca().inter]
    # A new generation record is in the store.
    assert len(gen_records(mounted, D)) > len([k for k in before["store"]
                                               if k.startswith("gen" + os.sep)])


@pytest.mark.timeout(60)
def test_pkcs1_and_sec1_keys(mounted, tmp_path):
    managed(mounted)
    rkey, rleaf = ca().leaf([D], key_kind="rsa2048")
    cp_ok(mounted, tmp_path, key_pem(rkey, serialization.PrivateFormat.TraditionalOpenSSL)
          + chain_pem(rleaf, ca().inter), D, "bundle.pem")
    assert_serves_upload(mounted, rleaf, rkey)
    ekey, eleaf = ca().leaf([D], key_kind="ec384")
    cp_ok(mounted, tmp_path, chain_pem(eleaf, ca().inter), D, "fullchain.pem")
    cp_ok(mounted, tmp_path, key_pem(ekey, serialization.PrivateFormat.TraditionalOpenSSL),
          D, "privkey.pem")
    assert_serves_upload(mounted, eleaf, ekey)


@pytest.mark.timeout(60)
def test_mismatched_key_refused(mounted, tmp_path):
    managed(mounted)
    key, leaf, _, bundle = valid_upload()
    cp_ok(mounted, tmp_path, bundle, D, "bundle.pem")  # an upload is served
    other = new_key()
    bad = key_pem(other) + chain_pem(leaf, ca().inter)
    refused(mounted, tmp_path, D, "bundle.pem", bad, errno.EINVAL,
            "private key does not match the certificate")
    assert_serves_upload(mounted, leaf, key)


@pytest.mark.timeout(60)
def test_expired_refused(mounted, tmp_path):
    managed(mounted)
    now = utcnow()
    _, leaf, _, bundle = valid_upload(not_before=now - days(90), not_after=now - days(3))
    date = h.cert_not_after(leaf).strftime("%Y-%m-%d")
    refused(mounted, tmp_path, D, "bundle.pem", bundle, errno.EINVAL,
            "certificate has expired on " + date)
    refused(mounted, tmp_path, D, "fullchain.pem", chain_pem(leaf, ca().inter), errno.EINVAL,
            "certificate has expired on " + date)


@pytest.mark.timeout(60)
def test_not_yet_valid_refused(mounted, tmp_path):
    managed(mounted)
    now = utcnow()
    _, leaf, _, bundle = valid_upload(not_before=now + days(3), not_after=now + days(90))
    date = h.cert_not_before(leaf).strftime("%Y-%m-%d")
    refused(mounted, tmp_path, D, "bundle.pem", bundle, errno.EINVAL,
            "certificate is not valid before " + date)


@pytest.mark.timeout(60)
def test_other_domain_refused(mounted, tmp_path):
    managed(mounted)
    _, _, _, bundle = valid_upload(names=("other.org", "www.other.org"))
    refused(mounted, tmp_path, D, "bundle.pem", bundle, errno.EINVAL,
            "certificate does not cover example.com")
    # A wildcard covers one label only: *.example.com is not example.com.
    _, _, _, bundle = valid_upload(names=("*.example.com",))
    refused(mounted, tmp_path, D, "bundle.pem", bundle, errno.EINVAL,
            "certificate does not cover example.com", ways=("os",))


@pytest.mark.timeout(60)
def test_wildcard_for_subdomain(mounted, tmp_path):
    sub = "www." + D
    managed(mounted, sub)
    key, leaf, _, bundle = valid_upload(names=("*." + D,))
    cp_ok(mounted, tmp_path, bundle, sub, "bundle.pem")
    assert_serves_upload(mounted, leaf, key, domain=sub)


@pytest.mark.timeout(60)
def test_weak_rsa_refused(mounted, tmp_path):
    managed(mounted)
    key, leaf = ca().leaf([D], key_kind="rsa1024")
    refused(mounted, tmp_path, D, "bundle.pem", key_pem(key) + chain_pem(leaf, ca().inter),
            errno.EINVAL, "RSA key of 1024 bits is too weak")
    refused(mounted, tmp_path, D, "fullchain.pem", chain_pem(leaf, ca().inter), errno.EINVAL,
            "RSA key of 1024 bits is too weak", ways=("os",))


@pytest.mark.timeout(60)
def test_broken_chain_refused(mounted, tmp_path):
    managed(mounted)
    key, leaf, kp, _ = valid_upload()
    # An intermediate with the right name but another key.
    refused(mounted, tmp_path, D, "bundle.pem",
            kp + chain_pem(leaf, ca().lookalike_intermediate()), errno.EINVAL,
            ["is not issued by", "Test Intermediate CA"])
    # An unrelated certificate pasted along.
    _, stranger = ca().leaf(["other.org"])
    stranger_ca = CA("Stranger").root
    refused(mounted, tmp_path, D, "bundle.pem",
            kp + chain_pem(leaf, ca().inter, stranger_ca), errno.EINVAL,
            ["does not belong to the chain", "Stranger Root CA"], ways=("os",))
    refused(mounted, tmp_path, D, "fullchain.pem", chain_pem(leaf, stranger), errno.EINVAL,
            "more than one leaf", ways=("os",))
    refused(mounted, tmp_path, D, "fullchain.pem", b"not a certificate\n", errno.EINVAL,
            "no certificate found", ways=("os",))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fmt", ["pkcs8", "traditional"])
def test_encrypted_key(mounted, tmp_path, fmt):
    managed(mounted)
    key, leaf = ca().leaf([D])
    f = (serialization.PrivateFormat.PKCS8 if fmt == "pkcs8"
         else serialization.PrivateFormat.TraditionalOpenSSL)
    enc = key_pem(key, f, password=b"correct horse")
    assert b"ENCRYPTED" in enc
    bundle = enc + chain_pem(leaf, ca().inter)
    refused(mounted, tmp_path, D, "bundle.pem", bundle, errno.EINVAL,
            "key is encrypted: write the passphrase to passphrase first")
    cp_ok(mounted, tmp_path, b"wrong horse\n", D, "passphrase")
    refused(mounted, tmp_path, D, "bundle.pem", bundle, errno.EINVAL,
            "passphrase does not decrypt the private key", ways=("os",))
    assert os_write(mounted.path(D, "passphrase"), b"correct horse\n") == 0
    # Never readable back.
    with pytest.raises(PermissionError):
        open(mounted.path(D, "passphrase"), "rb")
    r = subprocess.run(["cat", mounted.path(D, "passphrase")], capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    assert stat.S_IMODE(os.stat(mounted.path(D, "passphrase")).st_mode) == 0o200
    # Now the key: first its certificate (pending), then the encrypted key alone.
    cp_ok(mounted, tmp_path, chain_pem(leaf, ca().inter), D, "fullchain.pem")
    assert mounted.status_json(D)["source"] == "local"
    cp_ok(mounted, tmp_path, enc, D, "privkey.pem")
    assert_serves_upload(mounted, leaf, key)
    # The served key is never encrypted.
    assert b"ENCRYPTED" not in mounted.read(D, "privkey.pem")


def make_pfx(tmp_path, key, certs, password, legacy):
    kf = write_file(tmp_path, key_pem(key), "pfx-key.pem")
    cf = write_file(tmp_path, pem(certs[0]), "pfx-leaf.pem")
    chf = write_file(tmp_path, chain_pem(*certs[1:]), "pfx-chain.pem")
    out = str(tmp_path / "out.pfx")
    args = ["pkcs12", "-export", "-inkey", kf, "-in", cf, "-certfile", chf,
            "-passout", "pass:" + password, "-out", out]
    if legacy:
        args.append("-legacy")
    h.openssl(*args)
    with open(out, "rb") as f:
        return f.read()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("legacy", [False, True], ids=["default", "legacy"])
def test_pfx(mounted, tmp_path, legacy):
    managed(mounted)
    # The empty password by default.
    key, leaf = ca().leaf([D])
    cp_ok(mounted, tmp_path, make_pfx(tmp_path, key, [leaf, ca().inter, ca().root], "",
                                      legacy), D, "cert.pfx")
    assert_serves_upload(mounted, leaf, key)
    # A PFX with a password: refused until passphrase holds it.
    key2, leaf2 = ca().leaf([D])
    pfx = make_pfx(tmp_path, key2, [leaf2, ca().inter], "pfx-s3cret", legacy)
    refused(mounted, tmp_path, D, "cert.pfx", pfx, errno.EINVAL,
            "PFX is protected by a password: write it to example.com/passphrase first")
    cp_ok(mounted, tmp_path, b"not-the-password\n", D, "passphrase")
    refused(mounted, tmp_path, D, "cert.pfx", pfx, errno.EINVAL, "PFX password is wrong",
            ways=("os",))
    cp_ok(mounted, tmp_path, b"pfx-s3cret\n", D, "passphrase")
    cp_ok(mounted, tmp_path, pfx, D, "cert.pfx")
    assert_serves_upload(mounted, leaf2, key2)


def make_csr(names, key=None, der=False):
    key = key or new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(_name(names[0]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    enc = serialization.Encoding.DER if der else serialization.Encoding.PEM
    return key, csr.public_bytes(enc)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("form", ["pem", "der"])
def test_csr_for_domain(mounted, tmp_path, form):
    before = managed(mounted)
    key, csr = make_csr([D], der=form == "der")
    cp_ok(mounted, tmp_path, csr, D, "request.csr")

    def issued():
        # The certificate first: once it shows the CSR's key, status read
        # after it names that generation or a later one.
        leaf = h.pem_certs(mounted.read(D, "fullchain.pem"))[0]
        st = mounted.status_json(D)
        return st if h.spki(leaf) == h.spki(key) and st["source"] == "local" else None

    st = h.wait_for(issued, 10, "a certificate for the CSR's key")
    assert st["generation"] > before["generation"]
    full = h.pem_certs(mounted.read(D, "fullchain.pem"))
    root = h.pem_certs(mounted.read("ca.pem"))[0]
    for child, parent in zip(full, full[1:] + [root]):
        h.check_signed_by(child, parent)
    san = full[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [D]
    # The key stays with the user: no key files.
    names = os.listdir(mounted.path(D))
    for f in EC_KEY_FILES:
        assert f not in names, names
        with pytest.raises(FileNotFoundError):
            open(mounted.path(D, f), "rb")
    assert "fullchain.pem" in names and "cert.pem" in names
    assert st.get("has_private_key") is False, st


@pytest.mark.timeout(60)
def test_csr_other_domain_refused(mounted, tmp_path):
    managed(mounted)
    _, csr = make_csr(["other.org"])
    refused(mounted, tmp_path, D, "request.csr", csr, errno.EINVAL,
            "CSR name other.org does not belong to example.com")
    # One foreign name among good ones is enough.
    _, csr = make_csr([D, "www." + D, "evil.org"])
    refused(mounted, tmp_path, D, "request.csr", csr, errno.EINVAL, "does not belong",
            ways=("os",))
    refused(mounted, tmp_path, D, "request.csr", b"-----BEGIN CERTIFICATE REQUEST-----\n"
            b"AAAA\n-----END CERTIFICATE REQUEST-----\n", errno.EINVAL, "CSR",
            ways=("os",))


@pytest.mark.timeout(60)
def test_oversize_write(mounted, tmp_path):
    managed(mounted)
    _, _, _, bundle = valid_upload()
    big = bundle + b"\n" * (MIB + 1 - len(bundle))
    assert len(big) == MIB + 1
    refused(mounted, tmp_path, D, "bundle.pem", big, errno.EFBIG, "larger than 1 MiB")
    r = subprocess.run("cat %s > %s" % (write_file(tmp_path, big), mounted.path(D, "cert.pem")),
                       shell=True, capture_output=True, text=True)
    assert r.returncode != 0 and "File too large" in r.stderr, r
    # Exactly 1 MiB is not too large (then judged as content).
    ok = bundle + b"\n" * (MIB - len(bundle))
    assert os_write(mounted.path(D, "bundle.pem"), ok) == 0
    assert mounted.status_json(D)["source"] == "uploaded"


@pytest.mark.timeout(60)
def test_empty_write_refused_changes_nothing(mounted, tmp_path):
    before = managed(mounted)
    for f in ("fullchain.pem", "privkey.pem", "bundle.pem", "cert.pfx", "chain.pem"):
        assert os_write(mounted.path(D, f), b"") == errno.EINVAL, f
        r = subprocess.run("cat /dev/null > %s" % mounted.path(D, f), shell=True,
                           capture_output=True, text=True)
        assert r.returncode != 0 and "Invalid argument" in r.stderr, r
        # close(2) answers at once; status says why once the open file
        # is released (an empty write is judged then, see README).
        h.wait_for(lambda: mounted.status_json(D)["last_error"] == f + ": empty file", 10,
                   "last_error of an empty %s" % f)
    assert_unchanged(mounted, D, before)
    # Opening for writing without truncating or writing (touch) is no write.
    assert subprocess.run(["touch", mounted.path(D, "fullchain.pem")]).returncode == 0


KILLED_WRITER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
data = sys.stdin.buffer.read(int(sys.argv[2]))
os.write(fd, data)
sys.stdout.write("ready\n")
sys.stdout.flush()
sys.stdin.buffer.read()  # killed here
"""


@pytest.mark.timeout(60)
def test_writer_killed_mid_write(mounted, tmp_path):
    managed(mounted)
    key, leaf, _, bundle = valid_upload()
    cp_ok(mounted, tmp_path, bundle, D, "bundle.pem")
    before = snapshot(mounted, D)
    served_bytes = {f: mounted.read(D, f) for f in ("fullchain.pem", "cert.pem", "chain.pem",
                                                    "privkey.pem", "bundle.pem")}
    _, _, _, other = valid_upload()
    chain_only = chain_pem(ca().leaf([D], key=key)[1], ca().inter)
    for fname, data, cut in (("bundle.pem", other, len(other) // 2),
                             ("bundle.pem", other, len(other) - 40),
                             ("fullchain.pem", chain_only, len(chain_only) // 2),
                             ("fullchain.pem", chain_only, len(chain_only) - 40)):
        p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, mounted.path(D, fname),
                              str(cut)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        p.stdin.write(data[:cut])
        p.stdin.flush()
        assert p.stdout.readline() == b"ready\n"
        p.kill()
        p.wait(10)
        p.stdin.close()
        p.stdout.close()
        assert_unchanged(mounted, D, before)
        for f, b in served_bytes.items():
            assert mounted.read(D, f) == b, "%s changed after a writer of %s died" % (f, fname)
    assert_serves_upload(mounted, leaf, key)


FORKED_WRITER = r"""
import os, signal, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.write(fd, sys.stdin.buffer.read())
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.close(r)
    os.write(w, b"x")  # holds the inherited fd until killed
    signal.pause()
os.close(w)
os.read(r, 1)
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)  # the child's copy is closed first (a FLUSH of a dead writer)
try:
    os.close(fd)
except OSError as e:
    print("close failed: %s" % e)
    sys.exit(3)
print("closed")
"""


@pytest.mark.timeout(60)
def test_forked_child_killed_before_writer_closes(mounted, tmp_path):
    """A shell or a server forks with the upload open; the child is killed
    first. The parent's own close() says 0, and then the upload is served
    (an acknowledged write is never lost)."""
    managed(mounted)
    key, leaf, _, bundle = valid_upload()
    r = subprocess.run([sys.executable, "-c", FORKED_WRITER, mounted.path(D, "bundle.pem")],
                       input=bundle, capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == b"closed\n", (r.returncode, r.stdout, r.stderr)
    assert_serves_upload(mounted, leaf, key)


@pytest.mark.timeout(60)
def test_rm_fullchain_falls_back(mounted, tmp_path):
    before = managed(mounted)
    key, leaf, _, bundle = valid_upload()
    cp_ok(mounted, tmp_path, bundle, D, "bundle.pem")
    assert_serves_upload(mounted, leaf, key)
    r = subprocess.run(["rm", mounted.path(D, "fullchain.pem")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr

    def back():
        st = mounted.status_json(D)
        return st if (st["source"] == "local" and
                      mounted.read(D, "fullchain.pem") == before["fullchain.pem"]) else None

    # The managed certificate was kept ready: no issuance, at once (a
    # rotation fence lasts at most 1 s).
    st = h.wait_for(back, 2, "the managed certificate to be served again")
    assert st["fingerprint_sha256"] == before["fingerprint"]
    assert st["state"] == "valid"
    assert mounted.read(D, "privkey.pem") == before["privkey.pem"]
    # Removing again, or removing other files, succeeds and changes nothing.
    snap = snapshot(mounted, D)
    for f in ("fullchain.pem", "privkey.pem", "status"):
        assert subprocess.run(["rm", "-f", mounted.path(D, f)]).returncode == 0
    assert_unchanged(mounted, D, snap)


@pytest.mark.timeout(60)
def test_racing_writers(mounted, tmp_path):
    managed(mounted)
    uploads = [valid_upload() for _ in range(2)]
    srcs = [write_file(tmp_path, u[3], "race-%d.pem" % i) for i, u in enumerate(uploads)]
    leaves = {h.fingerprint(u[1]): u[0] for u in uploads}
    errors = []
    stop = threading.Event()

    def writer(src):
        for _ in range(15):
            r = subprocess.run(["cp", src, mounted.path(D, "bundle.pem")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                errors.append(r.stderr)

    def reader():
        while not stop.is_set():
            try:
                blocks = h.pem_blocks(mounted.read(D, "bundle.pem"))
                k = h.load_key(blocks[0][1])
                c = x509.load_pem_x509_certificate(blocks[1][1])
                if not h.key_matches_cert(k, c):
                    errors.append("bundle.pem read with a key that is not its certificate's")
            except Exception as e:  # noqa: BLE001
                errors.append("reader: %r" % (e,))

    threads = [threading.Thread(target=writer, args=(s,)) for s in srcs]
    rt = threading.Thread(target=reader)
    rt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stop.set()
    rt.join(10)
    assert not errors, errors[:5]
    leaf, rest, key = served(mounted)
    assert h.fingerprint(leaf) in leaves, "the served leaf is none of the uploads"
    assert h.spki(key) == h.spki(leaves[h.fingerprint(leaf)]), "a mix of two uploads"
    assert rest == [ca().inter]
    assert mounted.status_json(D)["source"] == "uploaded"


# ---------------------------------------------------------------- names


@pytest.mark.timeout(60)
def test_names(mounted, tmp_path):
    before = managed(mounted)
    assert os_write(mounted.path(D, "names"), b"www.example.com\n") == 0

    def reissued():
        st = mounted.status_json(D)
        if st["generation"] <= before["generation"] or st["source"] != "local":
            return None
        leaf = h.pem_certs(mounted.read(D, "fullchain.pem"))[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return san.get_values_for_type(x509.DNSName)

    sans = h.wait_for(reissued, 10, "a re-issue covering www.example.com")
    assert sorted(sans) == [D, "www." + D], sans
    assert mounted.read(D, "names", mode="r").split() == [D, "www." + D]
    assert mounted.status_json(D)["names"] == [D, "www." + D]
    h.wait_state(mounted.mount, D, "valid", "local")
    names_before = mounted.read(D, "names")
    refused(mounted, tmp_path, D, "names", b"www.example.com\nwww.other.org\n", errno.EINVAL,
            "name www.other.org does not belong to example.com")
    refused(mounted, tmp_path, D, "names", b"bad_name.example.com\n", errno.EINVAL,
            "domain name 'bad_name.example.com' has a character '_'")
    assert mounted.read(D, "names") == names_before


@pytest.mark.timeout(60)
def test_status_accepts_only_renew(mounted, tmp_path):
    managed(mounted)
    refused(mounted, tmp_path, D, "status", b"please\n", errno.EINVAL,
            "status accepts only the word renew")


# ---------------------------------------------------------------- hooks

HOOK = """#!/bin/sh
echo "$CERTFS_EVENT $CERTFS_DOMAIN $CERTFS_NOT_AFTER" >> %s
"""


def hooks(tmp_path):
    """(config text, notify log path, deploy log path)."""
    logs = {}
    for kind in ("notify", "deploy"):
        script = tmp_path / ("%s.sh" % kind)
        log = str(tmp_path / ("%s.log" % kind))
        script.write_text(HOOK % log)
        script.chmod(0o755)
        logs[kind] = log
    conf = "[hooks]\nnotify = %s\ndeploy = %s\n" % (tmp_path / "notify.sh",
                                                    tmp_path / "deploy.sh")
    return conf, logs["notify"], logs["deploy"]


def log_lines(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        return []


def wait_line(path, line, timeout=10):
    return h.wait_for(lambda: line in log_lines(path), timeout,
                      "hook log line %r in %s (have %r)" % (line, path, log_lines(path)))


@pytest.mark.timeout(60)
def test_deploy_hook_after_upload(certfs, tmp_path):
    conf, notify_log, deploy_log = hooks(tmp_path)
    m = certfs(config=conf)
    managed(m)
    key, leaf, _, bundle = valid_upload()
    cp_ok(m, tmp_path, bundle, D, "bundle.pem")
    wait_line(deploy_log, "deploy %s %s" % (D, not_after_str(leaf)))
    assert log_lines(notify_log) == [], "nothing to notify about a fresh upload"


@pytest.mark.timeout(60)
def test_upload_expiring_then_expired(certfs, tmp_path):
    conf, notify_log, deploy_log = hooks(tmp_path)
    m = certfs(config=conf, clock=0)
    before = managed(m)
    now = utcnow()
    key, leaf, _, bundle = valid_upload(not_before=now - days(1),
                                        not_after=now + days(20))
    na = not_after_str(leaf)
    cp_ok(m, tmp_path, bundle, D, "bundle.pem")
    assert m.wait_state(D, "valid", "uploaded")["not_after"] == na
    wait_line(deploy_log, "deploy %s %s" % (D, na))
    end = h.cert_not_after(leaf).timestamp()

    # Ten days before its end: expiring, and the notify hook says so once.
    m.set_clock(end - 10 * 86400 - time.time())
    st = m.wait_state(D, "expiring", "uploaded")
    assert st["fingerprint_sha256"].replace(":", "").lower() == h.fingerprint(leaf).hex()
    wait_line(notify_log, "expiring %s %s" % (D, na))

    # Past its end: the managed certificate is served again.
    m.set_clock(end + 3600 - time.time())
    st = m.wait_state(D, "valid", "local")
    wait_line(notify_log, "expired %s %s" % (D, na))
    assert m.read(D, "fullchain.pem") == before["fullchain.pem"]
    assert m.read(D, "privkey.pem") == before["privkey.pem"]
    # deploy ran again for the managed certificate (it ran first when it was issued).
    local = "deploy %s %s" % (D, st["not_after"])
    h.wait_for(lambda: log_lines(deploy_log).count(local) >= 2, 10,
               "deploy hook after the fallback (have %r)" % log_lines(deploy_log))
    assert log_lines(notify_log).count("expiring %s %s" % (D, na)) == 1, log_lines(notify_log)
