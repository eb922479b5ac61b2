# SPDX-License-Identifier: MIT
"""The stories of the people certfs is for, typed as they type them: `cp`,
`cat`, `mkdir -p`, `ls`, `rm`, `openssl pkcs12`. Each test is one story that
once half-worked: an upload without its intermediate, a stale last_error,
a PFX export without the domain's passphrase, names in upper case,
development certificates for localhost, uploads of what is already served,
errno that reads right, a root listing without broken entries, and the
placeholder served while an issuer fails."""

import datetime
import errno
import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import certfs_harness as h
from test_upload import (CA, D, _cert, ca, chain_pem, cp, days, hooks, key_pem, log_lines,
                         new_key, pem, snapshot, assert_unchanged, utcnow, valid_upload,
                         wait_line, write_file)


def sh(cmd, **kw):
    """A shell command line as a user types it; the CompletedProcess."""
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, **kw)


def ok(cmd):
    r = sh(cmd)
    assert r.returncode == 0, "%s: %s" % (cmd, r.stderr)
    return r


def fails(cmd, text):
    r = sh(cmd)
    assert r.returncode != 0, "%s succeeded" % cmd
    assert text in r.stderr, "%s: %r does not say %r" % (cmd, r.stderr, text)
    return r


def last_error(m, domain=D):
    return m.status_json(domain).get("last_error") or ""


def wait_error(m, text, domain=D):
    """last_error becomes text (an empty write is judged when its open file
    is released, just after close(2) returned)."""
    return h.wait_for(lambda: last_error(m, domain) == text, 10, "last_error %r" % text)


def files(tmp_path, **named):
    """Write each named bytes to tmp_path/NAME; their paths."""
    out = {}
    for name, data in named.items():
        p = tmp_path / name.replace("_", ".")
        p.write_bytes(data)
        out[name] = str(p)
    return out


def managed(m, domain=D):
    m.mkdir(domain)
    return snapshot(m, domain)


def deploys(path, domain=D):
    return [line for line in log_lines(path) if line.startswith("deploy %s " % domain)]


# ---------------------------------------------------------------- 1. chains


@pytest.mark.timeout(60)
def test_leaf_without_intermediate_refused(mounted, tmp_path):
    m = mounted
    before = managed(m)
    key, leaf = ca().leaf([D])
    f = files(tmp_path, app_crt=pem(leaf), app_key=key_pem(key), inter_crt=pem(ca().inter))
    fails("cp %s %s" % (f["app_crt"], m.path(D, "fullchain.pem")), "Invalid argument")
    err = last_error(m)
    assert "missing the certificate that issued" in err, err
    assert "Test Intermediate CA" in err, err
    assert_unchanged(m, D, before)
    fails("cp %s %s" % (f["app_crt"], m.path(D, "cert.pem")), "Invalid argument")
    # With its intermediate appended it is accepted, and served complete.
    ok("cat %s %s > %s" % (f["app_crt"], f["inter_crt"], m.path(D, "fullchain.pem")))
    ok("cp %s %s" % (f["app_key"], m.path(D, "privkey.pem")))
    st = h.wait_for(lambda: (lambda s: s if s["source"] == "uploaded" else None)(
        m.status_json(D)), 5, "the upload to be served")
    assert st["state"] == "valid" and not st.get("last_error"), st
    assert h.pem_certs(m.read(D, "fullchain.pem")) == [leaf, ca().inter]


@pytest.mark.timeout(60)
def test_chain_pem_completes_served_leaf(mounted, tmp_path):
    m = mounted
    managed(m)
    key, leaf, kp, bundle = valid_upload()
    f = files(tmp_path, bundle_pem=bundle, inter_crt=pem(ca().inter))
    ok("cp %s %s" % (f["bundle_pem"], m.path(D, "bundle.pem")))
    gen = m.status_json(D)["generation"]
    # The same intermediate again changes nothing.
    ok("cp %s %s" % (f["inter_crt"], m.path(D, "chain.pem")))
    assert m.status_json(D)["generation"] == gen
    # The CA moved its intermediate under another root (a cross-sign): same
    # name and key, another issuer. chain.pem takes it for the served leaf.
    other = CA("Cross")
    cross = _cert(ca().inter_cn, ca().inter_key.public_key(), other.root_cn, other.root_key,
                  utcnow() - days(10), utcnow() + days(400), True)
    f = files(tmp_path, cross_crt=pem(cross), stranger_crt=pem(other.inter))
    ok("cp %s %s" % (f["cross_crt"], m.path(D, "chain.pem")))
    h.wait_for(lambda: h.pem_certs(m.read(D, "fullchain.pem")) == [leaf, cross], 5,
               "the new intermediate to be served")
    assert h.pem_certs(m.read(D, "chain.pem")) == [cross]
    assert h.spki(h.load_key(m.read(D, "privkey.pem"))) == h.spki(key)
    assert m.status_json(D)["source"] == "uploaded"
    # An intermediate that did not issue the leaf is refused.
    fails("cp %s %s" % (f["stranger_crt"], m.path(D, "chain.pem")), "Invalid argument")
    assert "chain.pem" in last_error(m), last_error(m)
    assert h.pem_certs(m.read(D, "fullchain.pem")) == [leaf, cross]


@pytest.mark.timeout(60)
def test_chain_pem_completes_pending_leaf(mounted, tmp_path):
    m = mounted
    managed(m)
    key, leaf = ca().leaf([D])
    other = CA("Cross")
    cross = _cert(ca().inter_cn, ca().inter_key.public_key(), other.root_cn, other.root_key,
                  utcnow() - days(10), utcnow() + days(400), True)
    f = files(tmp_path, full_pem=chain_pem(leaf, ca().inter), cross_crt=pem(cross),
              app_key=key_pem(key))
    ok("cp %s %s" % (f["full_pem"], m.path(D, "fullchain.pem")))
    assert "waiting for its private key" in m.read(D, "status", mode="r")
    ok("cp %s %s" % (f["cross_crt"], m.path(D, "chain.pem")))
    assert m.status_json(D)["source"] == "local"
    ok("cp %s %s" % (f["app_key"], m.path(D, "privkey.pem")))
    h.wait_for(lambda: h.pem_certs(m.read(D, "fullchain.pem")) == [leaf, cross], 5,
               "the pending leaf with the intermediate from chain.pem")
    # Nothing to complete: a managed certificate is not changed by chain.pem.
    m.mkdir("example.org")
    fails("cp %s %s" % (f["cross_crt"], m.path("example.org", "chain.pem")),
          "Invalid argument")
    assert "completes an uploaded certificate" in last_error(m, "example.org")


@pytest.mark.timeout(60)
def test_lone_leaf_of_trusted_root_or_local_ca(certfs, tmp_path):
    # A leaf issued straight by a root of the system trust store (here one
    # named by SSL_CERT_FILE, as OpenSSL reads it) needs no intermediate.
    roots = tmp_path / "roots.pem"
    roots.write_bytes(pem(ca().root))
    m = certfs(env={"SSL_CERT_FILE": str(roots)})
    managed(m)
    key = new_key()
    leaf = _cert(D, key.public_key(), ca().root_cn, ca().root_key, utcnow() - days(1),
                 utcnow() + days(30), False, [D])
    f = files(tmp_path, app_crt=pem(leaf), app_key=key_pem(key))
    ok("cp %s %s" % (f["app_crt"], m.path(D, "fullchain.pem")))
    ok("cp %s %s" % (f["app_key"], m.path(D, "privkey.pem")))
    h.wait_for(lambda: h.pem_certs(m.read(D, "fullchain.pem")) == [leaf], 5,
               "the lone leaf of a trusted root to be served")
    # A leaf of the local CA's intermediate: served with that intermediate.
    with open(os.path.join(m.store, "ca", "root")) as fh:
        local = json.load(fh)
    int_cert = x509.load_pem_x509_certificate(local["int_cert"].encode())
    int_key = serialization.load_pem_private_key(local["int_key"].encode(), None)
    key2 = new_key()
    b = (x509.CertificateBuilder().subject_name(int_cert.subject.__class__(
        [x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, D)]))
         .issuer_name(int_cert.subject).public_key(key2.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(utcnow() - days(1)).not_valid_after(utcnow() + days(30))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(D)]), critical=False))
    from cryptography.hazmat.primitives import hashes
    leaf2 = b.sign(int_key, hashes.SHA256())
    f = files(tmp_path, dev_pem=key_pem(key2) + pem(leaf2))
    ok("cp %s %s" % (f["dev_pem"], m.path(D, "bundle.pem")))
    h.wait_for(lambda: h.pem_certs(m.read(D, "fullchain.pem")) == [leaf2, int_cert], 5,
               "the local CA's leaf to be served with its intermediate")


# ---------------------------------------------------------------- 2. last_error


@pytest.mark.timeout(60)
def test_last_error_cleared_by_success_across_restart(certfs, tmp_path):
    m = certfs()
    managed(m)
    key, leaf, kp, bundle = valid_upload()
    f = files(tmp_path, app_key=kp, full_pem=chain_pem(leaf, ca().inter), bundle_pem=bundle)
    # A key written to fullchain.pem: the message names fullchain.pem.
    fails("cp %s %s" % (f["app_key"], m.path(D, "fullchain.pem")), "Invalid argument")
    err = last_error(m)
    assert err.startswith("fullchain.pem: fullchain.pem holds a private key but no "
                          "certificate"), err
    assert "bundle.pem" not in err, err
    ok("cp %s %s" % (f["bundle_pem"], m.path(D, "bundle.pem")))
    st = m.status_json(D)
    assert st["source"] == "uploaded" and st.get("last_error") is None, st
    assert "last_error: none" in m.read(D, "status", mode="r")
    assert m.stop() == 0
    m.start()
    st = m.status_json(D)
    assert st["source"] == "uploaded" and st.get("last_error") is None, st


@pytest.mark.timeout(60)
def test_right_key_after_wrong_one_clears_pending(mounted, tmp_path):
    m = mounted
    managed(m)
    key, leaf, kp, bundle = valid_upload()
    f = files(tmp_path, bundle_pem=bundle, wrong_key=key_pem(new_key()), app_key=kp)
    ok("cp %s %s" % (f["bundle_pem"], m.path(D, "bundle.pem")))
    ok("cp %s %s" % (f["wrong_key"], m.path(D, "privkey.pem")))
    assert "waiting for its certificate" in m.read(D, "status", mode="r")
    ok("cp %s %s" % (f["app_key"], m.path(D, "privkey.pem")))
    st = m.status_json(D)
    assert st.get("pending") is None, st
    assert "pending: none" in m.read(D, "status", mode="r")


# ---------------------------------------------------------------- 6. no-ops, rm


@pytest.mark.timeout(60)
def test_same_upload_three_times_is_one_generation(certfs, tmp_path):
    conf, _, deploy_log = hooks(tmp_path)
    m = certfs(config=conf)
    managed(m)
    key, leaf, _, bundle = valid_upload()
    f = files(tmp_path, bundle_pem=bundle)
    ok("cp %s %s" % (f["bundle_pem"], m.path(D, "bundle.pem")))
    st = m.wait_state(D, "valid", "uploaded")
    na = h.cert_not_after(leaf).strftime("%Y-%m-%dT%H:%M:%SZ")
    wait_line(deploy_log, "deploy %s %s" % (D, na))
    before = snapshot(m, D)
    for _ in range(2):
        ok("cp %s %s" % (f["bundle_pem"], m.path(D, "bundle.pem")))
    assert_unchanged(m, D, before)
    assert m.status_json(D)["generation"] == st["generation"]
    assert deploys(deploy_log).count("deploy %s %s" % (D, na)) == 1, log_lines(deploy_log)


@pytest.mark.timeout(60)
def test_restoring_own_files_keeps_managed(mounted, tmp_path):
    m = mounted
    before = managed(m)
    backup = tmp_path / "backup"
    ok("mkdir -p %s && cp %s %s %s %s %s %s" % (
        backup, *[m.path(D, n) for n in ("fullchain.pem", "cert.pem", "chain.pem",
                                          "privkey.pem", "bundle.pem")], backup))
    ok("cp %s %s" % (m.path(D, "cert.pfx"), backup))
    for n in ("fullchain.pem", "cert.pem", "chain.pem", "privkey.pem", "bundle.pem",
              "cert.pfx"):
        ok("cp %s %s" % (backup / n, m.path(D, n)))
    assert_unchanged(m, D, before)
    st = m.status_json(D)
    assert st["source"] == "local" and st.get("last_error") is None, st


@pytest.mark.timeout(60)
@pytest.mark.parametrize("victim", ["fullchain.pem", "cert.pem", "bundle.pem", "cert.pfx",
                                    "privkey.pem"])
def test_rm_of_any_upload_file_removes_it(mounted, tmp_path, victim):
    m = mounted
    before = managed(m)
    key, leaf, _, bundle = valid_upload()
    f = files(tmp_path, bundle_pem=bundle)
    ok("cp %s %s" % (f["bundle_pem"], m.path(D, "bundle.pem")))
    m.wait_state(D, "valid", "uploaded")
    ok("rm %s" % m.path(D, victim))
    h.wait_for(lambda: m.status_json(D)["source"] == "local" and
               m.read(D, "fullchain.pem") == before["fullchain.pem"], 3,
               "the managed certificate after rm %s" % victim)
    # Views: removing them changes nothing.
    snap = snapshot(m, D)
    ok("rm -f %s %s" % (m.path(D, "chain.pem"), m.path(D, "status")))
    assert_unchanged(m, D, snap)


# ---------------------------------------------------------------- 7. errno


@pytest.mark.timeout(60)
def test_errno_reads_right(mounted, tmp_path):
    m = mounted
    managed(m)
    from test_upload import make_csr, make_pfx
    _, csr = make_csr(["other.org"])
    key, leaf = ca().leaf([D])
    pfx = make_pfx(tmp_path, key, [leaf, ca().inter], "pfx-s3cret", False)
    f = files(tmp_path, other_csr=csr, names_txt=b"www.other.org\n", app_pfx=pfx)
    fails("cp %s %s" % (f["other_csr"], m.path(D, "request.csr")), "Invalid argument")
    assert "does not belong to example.com" in last_error(m)
    fails("cp %s %s" % (f["names_txt"], m.path(D, "names")), "Invalid argument")
    fails("cp /dev/null %s" % m.path(D, "fullchain.pem"), "Invalid argument")
    wait_error(m, "fullchain.pem: empty file")
    fails("cp %s %s" % (f["app_pfx"], m.path(D, "cert.pfx")), "Invalid argument")
    assert "write it to example.com/passphrase first" in last_error(m), last_error(m)
    ok("echo pfx-s3cret > %s" % m.path(D, "passphrase"))
    ok("cp %s %s" % (f["app_pfx"], m.path(D, "cert.pfx")))
    assert m.status_json(D)["source"] == "uploaded"
    # A shell redirection closes a first descriptor before the command
    # writes: only the last close is judged, so no "empty file" on the way.
    _, _, _, bundle = valid_upload()
    f = files(tmp_path, other_pem=bundle)
    before = m.read("log", mode="r").count("empty file")
    for shell in ("bash", "sh"):
        ok("%s -c 'cat %s > %s'" % (shell, f["other_pem"], m.path(D, "bundle.pem")))
        ok("%s -c 'echo renew > %s'" % (shell, m.path(D, "status")))
    assert m.read("log", mode="r").count("empty file") == before, m.read("log", mode="r")
    assert not last_error(m), last_error(m)
    r = sh("bash -c ': > %s'" % m.path(D, "fullchain.pem"))
    wait_error(m, "fullchain.pem: empty file")


@pytest.mark.timeout(60)
def test_empty_upload_told_per_open_file(mounted, tmp_path):
    m = mounted
    before = managed(m)
    fc = m.path(D, "fullchain.pem")
    served = m.read(D, "fullchain.pem")

    def empties():
        return m.read(D, "log", mode="r").count("fullchain.pem: empty file")

    # Opened for writing, neither truncated nor written: no write at all.
    ok("touch %s" % fc)
    os.close(os.open(fc, os.O_WRONLY))
    assert not last_error(m) and empties() == 0
    # One process, two opens of one file: a reader kept open and a writer
    # that truncates and writes nothing. Only the writer is an upload.
    for reader_first in (True, False):
        if reader_first:
            r = os.open(fc, os.O_RDONLY)
            w = os.open(fc, os.O_WRONLY | os.O_TRUNC)
        else:
            w = os.open(fc, os.O_WRONLY | os.O_TRUNC)
            r = os.open(fc, os.O_RDONLY)
        n = empties()
        with pytest.raises(OSError) as e:
            os.close(w)
        assert e.value.errno == errno.EINVAL
        h.wait_for(lambda: empties() == n + 1, 10, "one refusal of the empty writer")
        assert os.read(r, 1 << 20) == served
        os.close(r)
        assert empties() == n + 1
    # What users type.
    fails("cp /dev/null %s" % fc, "Invalid argument")
    h.wait_for(lambda: empties() == 3, 10, "the refusal of cp /dev/null")
    ok("bash -c ': > %s'" % fc)  # shells do not report a failed close(2)
    h.wait_for(lambda: empties() == 4, 10, "the refusal of : >")
    wait_error(m, "fullchain.pem: empty file")
    assert_unchanged(m, D, before)
    # A descriptor closed before a duplicate writes (a shell redirection):
    # the open file's upload is what the duplicate wrote.
    _, leaf, _, bundle = valid_upload()
    w = os.open(m.path(D, "bundle.pem"), os.O_WRONLY | os.O_TRUNC)
    w2 = os.dup(w)
    with pytest.raises(OSError):
        os.close(w)
    os.write(w2, bundle)
    os.close(w2)
    assert m.status_json(D)["source"] == "uploaded"
    assert h.pem_certs(m.read(D, "cert.pem"))[0] == leaf
    assert empties() == 4 and not last_error(m)


# ---------------------------------------------------------------- 3. PFX export


def pfx_opens(m, password, domain=D):
    r = h.openssl("pkcs12", "-in", m.path(domain, "cert.pfx"), "-passin", "pass:" + password,
                  "-nodes", check=False)
    return r.returncode == 0 and b"PRIVATE KEY" in r.stdout


@pytest.mark.timeout(60)
def test_pfx_export_uses_domain_passphrase(certfs, tmp_path):
    m = certfs(config="[certfs]\npfx_password = global-Pfx\n")
    managed(m)
    managed(m, "example.org")
    assert pfx_opens(m, "global-Pfx") and not pfx_opens(m, "")
    assert "passphrase: none" in m.read(D, "status", mode="r")
    ok("echo 'per-domain s3cret' > %s" % m.path(D, "passphrase"))
    assert pfx_opens(m, "per-domain s3cret"), "cert.pfx is not exported with the passphrase"
    assert not pfx_opens(m, "global-Pfx")
    status = m.read(D, "status", mode="r")
    assert "passphrase: set" in status and "s3cret" not in status, status
    assert m.status_json(D)["passphrase"] == "set"
    assert "s3cret" not in m.read(D, "status.json", mode="r")
    # Other domains keep the global password.
    assert pfx_opens(m, "global-Pfx", "example.org")
    # Across a restart too.
    assert m.stop() == 0
    m.start()
    assert pfx_opens(m, "per-domain s3cret")
    # `: > passphrase` clears it: back to the global password.
    ok(": > %s" % m.path(D, "passphrase"))
    h.wait_for(lambda: pfx_opens(m, "global-Pfx"), 10, "cert.pfx under pfx_password again")
    assert "passphrase: none" in m.read(D, "status", mode="r")


@pytest.mark.timeout(60)
def test_passphrase_reencrypts_placeholder_pfx(certfs, tmp_path):
    serve = str(tmp_path / "serve")
    os.mkdir(serve)
    m = certfs(config="[certfs]\nissuer = acme\npfx_password = global-Pfx\n"
               "[acme]\ndirectory = https://127.0.0.1:9/directory\n", args=("--serve", serve))
    m.extra_mounts.append(serve)
    h.wait_for(lambda: h.is_mounted(serve), 10, "the serving mount")
    ok("mkdir %s" % m.path(D))
    st = m.wait_state(D, "error")
    assert st["source"] == "selfsigned" and st["generation"] == 0, st
    cert = m.read(D, "cert.pem")
    assert pfx_opens(m, "global-Pfx")
    ok("echo secret > %s" % m.path(D, "passphrase"))
    # At once, with the placeholder's own key and certificate.
    ok("openssl pkcs12 -in %s -passin pass:secret -nodes -out /dev/null" % m.path(D, "cert.pfx"))
    assert not pfx_opens(m, "global-Pfx")
    assert m.read(D, "cert.pem") == cert
    from cryptography.hazmat.primitives.serialization import pkcs12
    key, leaf, _ = pkcs12.load_key_and_certificates(m.read(D, "cert.pfx"), b"secret")
    assert leaf == h.pem_certs(cert)[0] and h.key_matches_cert(key, leaf)
    # The serving mount too, once its grace for readers of the previous
    # file is over (deploy hooks wait for the same).
    spfx = os.path.join(serve, D, "cert.pfx")
    h.wait_for(lambda: h.openssl("pkcs12", "-in", spfx, "-passin", "pass:secret", "-nodes",
                                 check=False).returncode == 0, 10, "the serving mount's cert.pfx")
    ok(": > %s" % m.path(D, "passphrase"))
    h.wait_for(lambda: pfx_opens(m, "global-Pfx"), 10, "cert.pfx under pfx_password again")
    assert m.read(D, "cert.pem") == cert


# ---------------------------------------------------------------- 4. names


@pytest.mark.timeout(60)
def test_names_fold_case_at_lookup(mounted):
    m = mounted
    ok("cd %s && mkdir UPPER.Example" % m.mount)
    m.wait_state("upper.example", "valid", "local")
    r = ok("cd %s && ls UPPER.Example" % m.mount)
    assert "fullchain.pem" in r.stdout.split(), r.stdout
    r = ok("cd %s && cd UPPER.Example && cat status" % m.mount)
    assert "domain: upper.example" in r.stdout, r.stdout
    ok("cd %s && mkdir -p Mixed.Example && mkdir -p Mixed.Example && mkdir -p MIXED.example"
       % m.mount)
    names = ok("ls %s" % m.mount).stdout.split()
    assert "mixed.example" in names and "upper.example" in names, names
    assert "Mixed.Example" not in names and "UPPER.Example" not in names, names
    fails("cd %s && mkdir Mixed.Example" % m.mount, "File exists")
    r = ok("cat %s" % m.path("Mixed.Example", "cert.pem"))
    assert h.pem_certs(r.stdout.encode())
    ok("cd %s && rmdir UPPER.Example" % m.mount)
    assert "upper.example" not in os.listdir(m.mount)


@pytest.mark.timeout(60)
def test_refused_name_reason_in_log(mounted):
    m = mounted
    assert "log" in os.listdir(m.mount)
    fails("mkdir %s" % m.path("bad_name.example.com"), "Invalid argument")
    fails("mkdir %s" % m.path("caf\u00e9.example"), "Invalid argument")
    fails("mkdir %s" % m.path("a..b"), "Invalid argument")
    log = ok("cat %s" % m.path("log")).stdout
    assert "has a character '_' not allowed in a host name" in log, log
    assert "xn-- form" in log, log
    assert "'a..b' has an empty label" in log, log
    # Refused uploads and issuance are events there too.
    managed(m)
    fails("cp /dev/null %s" % m.path(D, "cert.pem"), "Invalid argument")
    wait_error(m, "cert.pem: empty file")
    log = ok("cat %s" % m.path("log")).stdout
    assert "example.com: created" in log and "cert.pem: empty file" in log, log
    assert os.stat(m.path("log")).st_mode & 0o777 == 0o444
    # DOMAIN/log: the same events, of that domain only.
    managed(m, "www.example.com")
    assert "log" in os.listdir(m.path(D))
    dlog = ok("cat %s" % m.path(D, "log")).stdout
    assert "example.com: created" in dlog and "cert.pem: empty file" in dlog, dlog
    assert "www.example.com" not in dlog and "mkdir refused" not in dlog, dlog
    assert "www.example.com: created" in ok("cat %s" % m.path("www.example.com", "log")).stdout


# ---------------------------------------------------------------- 8. root listing


ACME_DOWN = "[certfs]\nissuer = acme\n[acme]\ndirectory = https://127.0.0.1:9/directory\n"


@pytest.mark.timeout(60)
def test_acme_root_lists_only_what_exists(certfs):
    m = certfs(config=ACME_DOWN)
    r = ok("ls -l %s" % m.mount)
    assert "?" not in r.stdout, r.stdout
    names = sorted(os.listdir(m.mount))
    assert "ca.pem" not in names, names
    for n in names:
        os.stat(m.path(n))  # every listed name can be looked up
    # With the local issuer ca.pem is listed and readable.
    m2 = certfs()
    assert "ca.pem" in os.listdir(m2.mount)
    assert h.pem_certs(m2.read("ca.pem"))


# ---------------------------------------------------------------- 5. development


def sans(cert):
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (san.get_values_for_type(x509.DNSName),
            [str(a) for a in san.get_values_for_type(x509.IPAddress)])


DEV_NAMES = {"localhost": (["localhost"], []), "*.localhost": (["*.localhost"], []),
             "intranet": (["intranet"], []), "127.0.0.1": ([], ["127.0.0.1"]),
             "::1": ([], ["::1"])}


@pytest.mark.timeout(90)
def test_development_names_local_ca(certfs):
    m = certfs()
    for name in DEV_NAMES:
        ok("mkdir '%s'" % m.path(name))
    # IPv6 in its canonical text: another spelling is the same directory.
    fails("mkdir '%s'" % m.path("0:0:0:0:0:0:0:1"), "File exists")
    names = os.listdir(m.mount)
    for name, (dns, ips) in DEV_NAMES.items():
        assert name in names, names
        m.wait_state(name, "valid", "local")
        leaf = h.pem_certs(m.read(name, "cert.pem"))[0]
        assert sans(leaf) == (dns, ips), (name, sans(leaf))
    # What a client checks: the chain to ca.pem, and the address.
    r = h.openssl("verify", "-CAfile", m.path("ca.pem"), "-untrusted",
                  m.path("127.0.0.1", "chain.pem"), "-verify_ip", "127.0.0.1",
                  m.path("127.0.0.1", "cert.pem"))
    assert b"OK" in r.stdout
    r = h.openssl("verify", "-CAfile", m.path("ca.pem"), "-untrusted",
                  m.path("localhost", "chain.pem"), "-verify_hostname", "localhost",
                  m.path("localhost", "cert.pem"))
    assert b"OK" in r.stdout
    # They survive a restart (an IPv6 name is kept in the store under "++1").
    assert m.stop() == 0
    m.start()
    for name in DEV_NAMES:
        assert m.status_json(name)["state"] == "valid", name
    ok("rmdir '%s'" % m.path("::1"))
    assert "::1" not in os.listdir(m.mount)


@pytest.mark.timeout(60)
def test_development_names_selfsigned(certfs):
    m = certfs(config="[certfs]\nissuer = selfsigned\n")
    ok("mkdir %s %s" % (m.path("localhost"), m.path("10.0.0.1")))
    m.wait_state("10.0.0.1", "valid", "selfsigned", min_generation=1)
    leaf = h.pem_certs(m.read("10.0.0.1", "cert.pem"))[0]
    assert sans(leaf) == ([], ["10.0.0.1"])


@pytest.mark.timeout(60)
def test_development_names_refused_for_acme(certfs):
    m = certfs(config=ACME_DOWN)
    for name in ("localhost", "intranet", "127.0.0.1", "::1", "*.localhost", "com"):
        fails("mkdir '%s'" % m.path(name), "Invalid argument")
    log = m.read("log", mode="r")
    assert "'localhost' is a development name" in log, log
    assert "an ACME CA does not issue" in log, log
    assert not [d for d in m.status_json()["domains"]], m.status_json()


def dev_csr(cn, dns=(), ips=(), email=None):
    import ipaddress
    key = new_key()
    alt = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(a))
                                              for a in ips]
    if email:
        alt.append(x509.RFC822Name(email))
    from cryptography.hazmat.primitives import hashes
    from test_upload import _name
    csr = (x509.CertificateSigningRequestBuilder().subject_name(_name(cn))
           .add_extension(x509.SubjectAlternativeName(alt), critical=False)
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM)


def issued_for(m, domain, key, source):
    def issued():
        leaf = h.pem_certs(m.read(domain, "cert.pem"))[0]
        st = m.status_json(domain)
        return leaf if h.spki(leaf) == h.spki(key) and st["source"] == source else None
    return h.wait_for(issued, 20, "a certificate of %s for the CSR's key" % domain)


@pytest.mark.timeout(90)
def test_csr_for_development_names(certfs, tmp_path):
    m = certfs()
    for name, dns, ips in (("127.0.0.1", [], ["127.0.0.1"]), ("::1", [], ["::1"]),
                           ("intranet", ["intranet"], []), ("localhost", ["localhost"], [])):
        ok("mkdir -p '%s'" % m.path(name))
        key, csr = dev_csr(name, dns, ips)
        f = files(tmp_path, request_csr=csr)
        ok("cp %s '%s'" % (f["request_csr"], m.path(name, "request.csr")))
        leaf = issued_for(m, name, key, "local")
        assert sans(leaf) == (dns, ips), (name, sans(leaf))
        assert "privkey.pem" not in os.listdir(m.path(name))
    # Email and URI names stay refused, whatever the issuer.
    _, csr = dev_csr("localhost", ["localhost"], email="dev@localhost")
    f = files(tmp_path, mail_csr=csr)
    fails("cp %s %s" % (f["mail_csr"], m.path("localhost", "request.csr")), "Invalid argument")
    assert "CSR asks for an email address" in last_error(m, "localhost")
    # A self-signed certificate is signed by its own key, which a CSR keeps
    # with the user: the self-signed issuer says so instead of serving a
    # certificate for a key of its own.
    m2 = certfs(config="[certfs]\nissuer = selfsigned\n")
    ok("mkdir %s" % m2.path("10.0.0.1"))
    m2.wait_state("10.0.0.1", "valid", "selfsigned", min_generation=1)
    before = snapshot(m2, "10.0.0.1")
    _, csr = dev_csr("10.0.0.1", ips=["10.0.0.1"])
    f = files(tmp_path, ss_csr=csr)
    fails("cp %s %s" % (f["ss_csr"], m2.path("10.0.0.1", "request.csr")), "Invalid argument")
    assert ("issuer selfsigned cannot issue for a CSR (the key stays with you): give 10.0.0.1 "
            "issuer local or acme") in last_error(m2, "10.0.0.1"), last_error(m2, "10.0.0.1")
    assert_unchanged(m2, "10.0.0.1", before)


@pytest.mark.timeout(60)
def test_csr_development_names_refused_for_acme(certfs, tmp_path):
    m = certfs(config=ACME_DOWN)
    ok("mkdir %s" % m.path(D))
    before = m.status_json(D)
    for name, dns, ips in (("127.0.0.1", [D], ["127.0.0.1"]), ("intranet", [D, "intranet"], [])):
        _, csr = dev_csr(name, dns, ips)
        f = files(tmp_path, dev_csr=csr)
        fails("cp %s %s" % (f["dev_csr"], m.path(D, "request.csr")), "Invalid argument")
        err = last_error(m)
        assert ("request.csr: CSR name: '%s' is a development name (single label, localhost "
                "or IP address) that an ACME CA does not issue" % name) in err, err
    st = m.status_json(D)
    assert st["generation"] == before["generation"] and st["source"] == "selfsigned", st


# ---------------------------------------------------------------- 9. placeholders


@pytest.mark.timeout(60)
def test_placeholder_renewed_while_issuer_fails(certfs, tmp_path):
    conf, _, deploy_log = hooks(tmp_path)
    m = certfs(config=ACME_DOWN + conf, clock=0)
    ok("mkdir %s" % m.path(D))
    st = m.wait_state(D, "error")
    assert st["source"] == "selfsigned" and st["generation"] == 0, st
    first = h.pem_certs(m.read(D, "cert.pem"))[0]
    end = h.cert_not_after(first).timestamp()
    # Past two thirds of its life the placeholder is renewed, as any
    # certificate would be; the issuer is still failing.
    m.set_clock(end - 86400 - datetime.datetime.now().timestamp())

    def renewed():
        leaf = h.pem_certs(m.read(D, "cert.pem"))[0]
        return leaf if h.cert_not_after(leaf).timestamp() > end else None

    leaf = h.wait_for(renewed, 10, "a new placeholder")
    st = m.status_json(D)
    assert st["source"] == "selfsigned" and st["days_left"] >= 6, st
    assert h.key_matches_cert(h.load_key(m.read(D, "privkey.pem")), leaf)
    h.wait_for(lambda: deploys(deploy_log), 10, "the deploy hook for the new placeholder")
    # Never served expired: a week later still a valid placeholder.
    m.set_clock(end + 7 * 86400 - datetime.datetime.now().timestamp())
    h.wait_for(lambda: m.status_json(D)["days_left"] >= 0, 10, "a placeholder in its validity")


@pytest.mark.timeout(60)
def test_state_issuing_then_valid(certfs):
    m = certfs(config="[certfs]\nissuer = selfsigned\n")
    ok("mkdir %s" % m.path(D))
    # The placeholder is served at once; the issuer's certificate follows.
    st = m.wait_state(D, "valid", "selfsigned", min_generation=1)
    assert st.get("last_error") is None
    m2 = certfs(config=ACME_DOWN)
    ok("mkdir %s" % m2.path(D))
    st = m2.status_json(D)
    assert st["state"] in ("issuing", "error") and st["generation"] == 0, st
    assert st["state"] != "valid"
    line = m2.read("status", mode="r").split()
    assert line[:3] in ([D, "issuing", "selfsigned"], [D, "error", "selfsigned"]), line
