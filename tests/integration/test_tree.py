# SPDX-License-Identifier: MIT
"""The mounted tree, as a user sees it: mkdir a domain, read its files with
cat, openssl and python3-cryptography, check modes, sizes and names."""

import datetime
import errno
import json
import os
import re
import stat
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

import certfs_harness as h

D = "example.com"


def rfc3339(s):
    assert isinstance(s, str), s
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", s), s
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def serial_matches(s, n):
    if isinstance(s, int):
        return s == n
    t = s.replace(":", "").strip()
    try:
        if int(t, 16) == n:
            return True
    except ValueError:
        pass
    return t.isdigit() and int(t) == n


def hex_matches(s, raw):
    return s.replace(":", "").lower() == raw.hex()


def ls(path):
    return sorted(os.listdir(path))


@pytest.mark.timeout(60)
def test_mkdir_then_cat_fullchain(mounted):
    os.mkdir(mounted.path(D))
    # A placeholder is served at once, so a web server can start.
    first = subprocess.run(["cat", mounted.path(D, "fullchain.pem")],
                           capture_output=True, check=True).stdout
    assert h.pem_certs(first), "no certificate right after mkdir"
    st = mounted.status_json(D)
    assert st["state"] in ("issuing", "valid"), st
    assert st["source"] in ("selfsigned", "local"), st
    st = mounted.wait_state(D, state="valid", source="local")
    chain = h.pem_certs(mounted.read(D, "fullchain.pem"))
    assert len(chain) >= 2, "local CA: leaf plus intermediate expected"
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert D in san.get_values_for_type(x509.DNSName)


@pytest.mark.timeout(60)
def test_openssl_verify_against_ca(mounted):
    mounted.mkdir(D)
    ca = mounted.path("ca.pem")
    ca_certs = h.pem_certs(mounted.read("ca.pem"))
    assert len(ca_certs) == 1
    assert ca_certs[0].issuer == ca_certs[0].subject, "ca.pem is the self-signed root"
    for leaf in ("fullchain.pem", "cert.pem"):
        r = h.openssl("verify", "-CAfile", ca, "-untrusted", mounted.path(D, "chain.pem"),
                      "-purpose", "sslserver", "-verify_hostname", D,
                      mounted.path(D, leaf))
        assert b": OK" in r.stdout, r.stdout
    # Without the intermediates the leaf does not verify: chain.pem matters.
    r = h.openssl("verify", "-CAfile", ca, mounted.path(D, "cert.pem"), check=False)
    assert r.returncode != 0


@pytest.mark.timeout(60)
def test_files_agree(mounted):
    mounted.mkdir(D)
    full = h.pem_certs(mounted.read(D, "fullchain.pem"))
    leaf = h.pem_certs(mounted.read(D, "cert.pem"))
    chain = h.pem_certs(mounted.read(D, "chain.pem"))
    assert len(leaf) == 1
    assert full == leaf + chain, "fullchain.pem must be cert.pem then chain.pem"
    # Each certificate is signed by the next; the last by the root.
    root = h.pem_certs(mounted.read("ca.pem"))[0]
    for child, parent in zip(full, full[1:] + [root]):
        assert child.issuer == parent.subject
        h.check_signed_by(child, parent)


@pytest.mark.timeout(60)
def test_privkey_pkcs8_matches_cert(mounted):
    mounted.mkdir(D)
    key_pem = mounted.read(D, "privkey.pem")
    blocks = h.pem_blocks(key_pem)
    assert [b[0] for b in blocks] == ["PRIVATE KEY"], "PKCS#8 'BEGIN PRIVATE KEY' expected"
    key = h.load_key(key_pem)
    leaf = h.pem_certs(mounted.read(D, "cert.pem"))[0]
    assert h.key_matches_cert(key, leaf)
    # The openssl CLI agrees.
    pub_from_key = h.openssl("pkey", "-in", mounted.path(D, "privkey.pem"), "-pubout").stdout
    pub_from_cert = h.openssl("x509", "-in", mounted.path(D, "cert.pem"), "-noout",
                              "-pubkey").stdout
    assert pub_from_key == pub_from_cert


def _pfx_check(mounted, password):
    data = mounted.read(D, "cert.pfx")
    key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    leaf = h.pem_certs(mounted.read(D, "cert.pem"))[0]
    chain = h.pem_certs(mounted.read(D, "chain.pem"))
    assert cert == leaf
    assert h.key_matches_cert(key, leaf)
    assert list(extra) == chain
    pw = "pass:" + (password or b"").decode()
    out = h.openssl("pkcs12", "-in", mounted.path(D, "cert.pfx"), "-passin", pw,
                    "-nodes").stdout
    assert out.count(b"BEGIN CERTIFICATE") == 1 + len(chain)
    assert b"BEGIN PRIVATE KEY" in out
    info = h.openssl("pkcs12", "-in", mounted.path(D, "cert.pfx"), "-passin", pw,
                     "-nodes", "-info")
    assert b"MAC" in info.stderr + info.stdout
    wrong = h.openssl("pkcs12", "-in", mounted.path(D, "cert.pfx"), "-passin",
                      "pass:definitely-wrong", "-nodes", check=False)
    assert wrong.returncode != 0, "a wrong password must not open the PKCS#12"


@pytest.mark.timeout(60)
def test_pfx_empty_password(mounted):
    mounted.mkdir(D)
    _pfx_check(mounted, None)


@pytest.mark.timeout(60)
def test_pfx_configured_password(certfs):
    m = certfs(config="[certfs]\npfx_password = s3cret-Pfx\n")
    m.mkdir(D)
    _pfx_check(m, b"s3cret-Pfx")
    r = h.openssl("pkcs12", "-in", m.path(D, "cert.pfx"), "-passin", "pass:", "-nodes",
                  check=False)
    assert r.returncode != 0, "the empty password must not open a protected PKCS#12"


@pytest.mark.timeout(60)
def test_bundle_order(mounted):
    mounted.mkdir(D)
    bundle = mounted.read(D, "bundle.pem")
    blocks = h.pem_blocks(bundle)
    labels = [b[0] for b in blocks]
    full = h.pem_blocks(mounted.read(D, "fullchain.pem"))
    assert labels == ["PRIVATE KEY"] + ["CERTIFICATE"] * len(full), labels
    assert blocks[0][1].strip() == mounted.read(D, "privkey.pem").strip()
    assert [b[1].strip() for b in blocks[1:]] == [b[1].strip() for b in full]
    key = h.load_key(blocks[0][1])
    leaf = x509.load_pem_x509_certificate(blocks[1][1])
    assert h.key_matches_cert(key, leaf)


@pytest.mark.timeout(60)
def test_bundle_read_at_any_offset(certfs, tmp_path):
    """bundle.pem is served as its two pieces, key then chain: reads of any
    size at any offset, across the boundary and past the end, give the bytes
    of key + fullchain, on the main and on the serving mount."""
    m, serve = h.serving_mount(certfs, tmp_path)
    m.mkdir(D)
    h.wait_for(lambda: os.path.exists(os.path.join(serve, D, "bundle.pem")), 10,
               "the domain on the serving mount")
    key = m.read(D, "privkey.pem")
    want = key + m.read(D, "fullchain.pem")
    for p in (m.path(D, "bundle.pem"), os.path.join(serve, D, "bundle.pem")):
        assert os.stat(p).st_size == len(want), p
        for piece in (1, 7, 100, 4096):
            fd = os.open(p, os.O_RDONLY)
            try:
                assert _read_fd(fd, piece) == want, (p, piece)
            finally:
                os.close(fd)
        fd = os.open(p, os.O_RDONLY)
        try:
            for off in (0, 1, len(key) - 3, len(key), len(key) + 5, len(want) - 1,
                        len(want), len(want) + 10):
                for n in (1, 16, len(want) + 100):
                    assert os.pread(fd, n, off) == want[off:off + n], (p, off, n)
        finally:
            os.close(fd)


def _read_fd(fd, piece):
    parts = []
    while True:
        b = os.read(fd, piece)
        if not b:
            return b"".join(parts)
        parts.append(b)


@pytest.mark.timeout(60)
def test_bundle_outlives_other_readers(mounted):
    """A bundle.pem reader still reading when another has closed keeps whole
    bytes, and an open after both are done gets the same bytes again."""
    mounted.mkdir(D)
    want = mounted.read(D, "privkey.pem") + mounted.read(D, "fullchain.pem")
    p = mounted.path(D, "bundle.pem")
    for _ in range(3):
        a = os.open(p, os.O_RDONLY)
        b = os.open(p, os.O_RDONLY)
        try:
            assert os.read(a, 7) == want[:7]
            os.close(a)
            a = -1
            assert _read_fd(b, 100) == want
        finally:
            for fd in (a, b):
                if fd >= 0:
                    os.close(fd)
        assert mounted.read(D, "bundle.pem") == want


@pytest.mark.timeout(60)
def test_status_json_fields(mounted):
    mounted.mkdir(D)
    st = mounted.status_json(D)
    leaf = h.pem_certs(mounted.read(D, "cert.pem"))[0]
    assert st["domain"] == D
    assert isinstance(st["names"], list) and D in st["names"]
    assert all(isinstance(n, str) for n in st["names"])
    assert st["state"] == "valid"
    assert st["source"] == "local"
    assert isinstance(st["issuer"], str) and st["issuer"]
    assert isinstance(st["serial"], (str, int))
    assert serial_matches(st["serial"], leaf.serial_number), (st["serial"], leaf.serial_number)
    assert rfc3339(st["not_before"]) == h.cert_not_before(leaf)
    assert rfc3339(st["not_after"]) == h.cert_not_after(leaf)
    assert isinstance(st["days_left"], int) and not isinstance(st["days_left"], bool)
    now = datetime.datetime.now(datetime.timezone.utc)
    expect = (h.cert_not_after(leaf) - now).days
    assert abs(st["days_left"] - expect) <= 1, (st["days_left"], expect)
    assert isinstance(st["key_type"], str) and st["key_type"]
    assert isinstance(st["fingerprint_sha256"], str)
    assert hex_matches(st["fingerprint_sha256"], h.fingerprint(leaf))
    assert isinstance(st["generation"], int) and st["generation"] >= 1
    assert st["last_error"] is None
    # When the managed certificate last landed: at or after the attempt that
    # made it, and kept across a restart (it is in the stored state).
    assert st["last_success"] and st["last_attempt"], st
    assert rfc3339(st["last_success"]) >= rfc3339(st["last_attempt"]), st
    assert abs((now - rfc3339(st["last_success"])).total_seconds()) < 600, st
    assert mounted.stop() == 0
    mounted.start()
    assert mounted.status_json(D)["last_success"] == st["last_success"]


@pytest.mark.timeout(60)
def test_status_text(mounted):
    mounted.mkdir(D)
    text = mounted.read(D, "status", mode="r")
    st = mounted.status_json(D)
    kv = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        k, sep, v = line.partition(":")
        assert sep, "not a 'key: value' line: %r" % line
        kv[k.strip()] = v.strip()
    assert kv.get("domain") == D, text
    assert kv.get("state") == "valid", text
    assert kv.get("source") == "local", text
    assert "not_after" in kv, text
    assert st["not_after"][:10] in kv["not_after"], text


@pytest.mark.timeout(60)
def test_root_files_list_domain(mounted):
    mounted.mkdir(D)
    mounted.mkdir("www.example.org")
    st = mounted.status_json(D)

    lines = [ln for ln in mounted.read("status", mode="r").splitlines() if ln.strip()]
    rows = {ln.split()[0]: ln.split() for ln in lines}
    assert D in rows and "www.example.org" in rows, lines
    row = rows[D]
    assert len(row) == 5, row
    assert row[1] == "valid" and row[2] == "local", row
    assert row[3] == st["not_after"][:10], row
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", row[3])
    assert int(row[4]) == st["days_left"]

    root = mounted.status_json()
    assert isinstance(root["domains"], list)
    by = {d["domain"]: d for d in root["domains"]}
    assert set(by) == {D, "www.example.org"}
    for k in ("domain", "state", "source", "not_after", "days_left", "generation"):
        assert by[D][k] == st[k], k

    metrics = mounted.read("metrics", mode="r")
    m = re.search(r'^certfs_certificate_expiration_timestamp_seconds\{[^}]*domain="example\.com"'
                  r'[^}]*\}\s+(\S+)\s*$', metrics, re.M)
    assert m, metrics
    assert float(m.group(1)) == rfc3339(st["not_after"]).timestamp()
    assert re.search(r"^certfs_issuance_total(\{[^}]*\})?\s+\d", metrics, re.M), metrics
    assert re.search(r"^certfs_issuance_failures_total(\{[^}]*\})?\s+\d", metrics, re.M), metrics
    for ln in metrics.splitlines():
        assert ln == "" or ln.startswith("#") or re.match(
            r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?\s+\S+(\s+\d+)?$", ln), ln


@pytest.mark.timeout(60)
def test_exact_sizes(mounted):
    mounted.mkdir(D)
    generation_files = [mounted.path(D, n) for n in h.DOMAIN_FILES
                        if n not in ("status", "status.json")]
    snapshot_files = [mounted.path(n) for n in h.ROOT_FILES] + \
        [mounted.path(D, "status"), mounted.path(D, "status.json")]
    for p in generation_files + snapshot_files:
        size = os.stat(p).st_size
        with open(p, "rb") as f:
            fsize = os.fstat(f.fileno()).st_size
            data = f.read()
        # The open file's own size is exact for every file...
        assert len(data) == fsize, "%s: fstat says %d, read gave %d" % (p, fsize, len(data))
        assert fsize > 0, p
        # ... and a certificate file does not change between stat and open.
        if p in generation_files:
            assert size == fsize, "%s: stat says %d, read gave %d" % (p, size, len(data))
        # Reading in small pieces gives the same bytes.
        with open(p, "rb", buffering=0) as f:
            parts = []
            while True:
                b = f.read(7)
                if not b:
                    break
                parts.append(b)
        if p in generation_files:
            assert b"".join(parts) == data, p
    # ls -l shows the exact sizes too.
    r = subprocess.run(["ls", "-ln", mounted.path(D)], capture_output=True, text=True,
                       check=True)
    for ln in r.stdout.splitlines()[1:]:
        f = ln.split()
        if f[-1] in ("fullchain.pem", "privkey.pem", "cert.pfx"):
            assert int(f[4]) == len(mounted.read(D, f[-1])), ln


@pytest.mark.timeout(60)
def test_modes_and_owners(mounted):
    mounted.mkdir(D)
    dst = os.stat(mounted.path(D))
    assert stat.S_ISDIR(dst.st_mode)
    assert stat.S_IMODE(dst.st_mode) == 0o755
    assert (dst.st_uid, dst.st_gid) == (0, 0)
    for name in h.PUBLIC_FILES:
        st = os.stat(mounted.path(D, name))
        assert stat.S_ISREG(st.st_mode), name
        # status.json is never written: shown read-only.
        want = 0o444 if name == "status.json" else 0o644
        assert stat.S_IMODE(st.st_mode) == want, (name, oct(st.st_mode))
        assert (st.st_uid, st.st_gid) == (0, 0), name
    for name in h.KEY_FILES:
        st = os.stat(mounted.path(D, name))
        assert stat.S_ISREG(st.st_mode), name
        assert stat.S_IMODE(st.st_mode) == 0o600, (name, oct(st.st_mode))
        assert (st.st_uid, st.st_gid) == (0, 0), name
    # mtime: when the generation was made (not in the future, not ancient).
    now = datetime.datetime.now().timestamp()
    mt = os.stat(mounted.path(D, "fullchain.pem")).st_mtime
    assert now - 600 < mt <= now + 2


@pytest.mark.timeout(60)
def test_key_owner_group_mode_config(certfs):
    m = certfs(config="[certfs]\nkey_owner = 65534\nkey_group = 65534\nkey_mode = 0640\n")
    m.mkdir(D)
    for name in h.KEY_FILES:
        st = os.stat(m.path(D, name))
        assert (st.st_uid, st.st_gid) == (65534, 65534), name
        assert stat.S_IMODE(st.st_mode) == 0o640, (name, oct(st.st_mode))
    for name in h.PUBLIC_FILES:
        st = os.stat(m.path(D, name))
        assert (st.st_uid, st.st_gid) == (0, 0), name
        assert stat.S_IMODE(st.st_mode) == (0o444 if name == "status.json" else 0o644), name


BAD_NAMES = [
    "a..b",
    ".example.com",
    "-x.com",
    "x-.com",
    "ex_ample.com",
    "exa mple.com",
    "tab\tname.com",
    "nl\nname.com",
    "bell\x07.com",
    "caf\u00e9.com",
    "*.*.example.com",
    "www.*.example.com",
    "*example.com",
    "a" * 64 + ".com",
    ".".join(["a" * 60] * 5),  # 304 bytes
]


@pytest.mark.timeout(60)
def test_bad_names_refused(mounted):
    mounted.mkdir(D)
    before_ls = ls(mounted.mount)
    before_status = mounted.read("status")
    for name in BAD_NAMES:
        with pytest.raises(OSError) as ei:
            os.mkdir(mounted.path(name))
        # Over NAME_MAX (255) the kernel answers ENAMETOOLONG before us.
        allowed = (errno.EINVAL,) if len(name.encode()) <= 255 else (errno.EINVAL,
                                                                      errno.ENAMETOOLONG)
        assert ei.value.errno in allowed, (name, ei.value)
    # 254 bytes: under NAME_MAX, over the 253-byte DNS limit.
    long_name = ".".join(["a" * 62] * 4) + ".ab"
    assert len(long_name) == 254
    with pytest.raises(OSError) as ei:
        os.mkdir(mounted.path(long_name))
    assert ei.value.errno == errno.EINVAL
    assert ls(mounted.mount) == before_ls
    assert mounted.read("status") == before_status
    assert [d["domain"] for d in mounted.status_json()["domains"]] == [D]


@pytest.mark.timeout(60)
def test_longest_valid_name(mounted):
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(name) == 253
    os.mkdir(mounted.path(name))
    assert name in os.listdir(mounted.mount)
    mounted.wait_state(name, state="valid", source="local")


@pytest.mark.timeout(60)
def test_eexist(mounted):
    mounted.mkdir(D)
    with pytest.raises(FileExistsError):
        os.mkdir(mounted.path(D))
    with pytest.raises(FileExistsError):
        os.mkdir(mounted.path("EXAMPLE.com"))
    assert ls(mounted.mount).count(D) == 1


@pytest.mark.timeout(60)
def test_upper_case_folded(mounted):
    os.mkdir(mounted.path("UPPER.COM"))
    names = os.listdir(mounted.mount)
    assert "upper.com" in names
    assert "UPPER.COM" not in names
    st = mounted.wait_state("upper.com", state="valid", source="local")
    assert st["domain"] == "upper.com"


@pytest.mark.timeout(60)
def test_wildcard_dir(mounted):
    w = "*.example.com"
    os.mkdir(mounted.path(w))
    assert w in os.listdir(mounted.mount)
    st = mounted.wait_state(w, state="valid", source="local")
    assert st["domain"] == w
    leaf = h.pem_certs(mounted.read(w, "cert.pem"))[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert w in san.get_values_for_type(x509.DNSName)
    h.openssl("verify", "-CAfile", mounted.path("ca.pem"), "-untrusted",
              mounted.path(w, "chain.pem"), "-verify_hostname", "www.example.com",
              mounted.path(w, "cert.pem"))


@pytest.mark.timeout(60)
def test_rmdir_removes(mounted):
    mounted.mkdir(D)
    mounted.mkdir("other.example.com")
    os.rmdir(mounted.path(D))
    assert D not in os.listdir(mounted.mount)
    assert not os.path.exists(mounted.path(D, "fullchain.pem"))
    assert [d["domain"] for d in mounted.status_json()["domains"]] == ["other.example.com"]
    assert D not in mounted.read("status", mode="r").split()
    # rm -r works too.
    subprocess.run(["rm", "-r", mounted.path("other.example.com")], check=True)
    assert os.listdir(mounted.mount) and "other.example.com" not in os.listdir(mounted.mount)
    assert mounted.status_json()["domains"] == []
    # The name can be used again.
    mounted.mkdir(D)


@pytest.mark.timeout(60)
def test_ls_l(mounted):
    mounted.mkdir(D)
    r = subprocess.run(["ls", "-la", mounted.mount], capture_output=True, text=True,
                       check=True)
    assert D in r.stdout and "ca.pem" in r.stdout and "status.json" in r.stdout
    r = subprocess.run(["ls", "-la", mounted.path(D)], capture_output=True, text=True,
                       check=True)
    for name in h.DOMAIN_FILES:
        assert re.search(r"\s%s$" % re.escape(name), r.stdout, re.M), (name, r.stdout)
    r = subprocess.run(["ls", "-lR", mounted.mount], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["find", mounted.mount, "-type", "f"], capture_output=True,
                       text=True, check=True)
    assert mounted.path(D, "privkey.pem") in r.stdout.split("\n")


@pytest.mark.timeout(60)
def test_open_fd_keeps_generation(mounted):
    st = mounted.mkdir(D)
    gen = st["generation"]
    f_cert = open(mounted.path(D, "fullchain.pem"), "rb")
    f_key = open(mounted.path(D, "privkey.pem"), "rb")
    try:
        first = f_cert.read(10)
        old_cert = mounted.read(D, "fullchain.pem")
        old_key = mounted.read(D, "privkey.pem")
        mounted.renew(D)
        new = mounted.wait_state(D, state="valid", min_generation=gen + 1)
        # A new open sees the new generation at once.
        new_cert = mounted.read(D, "fullchain.pem")
        assert new_cert != old_cert
        assert mounted.read(D, "privkey.pem") != old_key
        assert h.pem_certs(new_cert)[0].fingerprint(h.hashes.SHA256()).hex() == \
            new["fingerprint_sha256"].replace(":", "").lower()
        # The open ones finish their own generation.
        assert first + f_cert.read() == old_cert
        assert f_key.read() == old_key
        f_cert.seek(0)
        assert f_cert.read() == old_cert
        # A name's attributes describe what a new open gets (the open file
        # still reads its own generation to the end; see README).
        assert os.stat(mounted.path(D, "fullchain.pem")).st_size == len(new_cert)
    finally:
        f_cert.close()
        f_key.close()
    assert h.key_matches_cert(h.load_key(mounted.read(D, "privkey.pem")),
                              h.pem_certs(mounted.read(D, "fullchain.pem"))[0])


@pytest.mark.timeout(60)
def test_status_json_parses_as_json(mounted):
    mounted.mkdir(D)
    for p in (mounted.path("status.json"), mounted.path(D, "status.json")):
        with open(p) as f:
            json.load(f)


def _served_after_valid(mount, name, out):
    """Poll status.json without pause until it says valid from the local CA,
    then read the files: they must hold the generation status named."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            st = h.status_json(mount, name)
        except (OSError, ValueError):
            continue
        if st.get("state") == "valid" and st.get("source") == "local":
            break
    else:
        out.append((name, "never valid"))
        return
    with open(os.path.join(mount, name, "privkey.pem"), "rb") as f:
        key = h.load_key(f.read())
    with open(os.path.join(mount, name, "fullchain.pem"), "rb") as f:
        leaf = h.pem_certs(f.read())[0]
    if not serial_matches(st["serial"], leaf.serial_number):
        out.append((name, "status named serial %s, fullchain.pem held %x"
                    % (st["serial"], leaf.serial_number)))
    elif not h.key_matches_cert(key, leaf):
        out.append((name, "privkey.pem does not match the certificate status named"))


@pytest.mark.timeout(120)
def test_status_valid_means_files_served(mounted):
    """Once status says valid, the files hold that generation: scripts (and
    this suite) wait on status and then read the key (no window between the
    state naming a generation and the mount serving it)."""
    bad = []
    for rnd in range(4):
        names = ["v%d-%d.example.com" % (rnd, i) for i in range(12)]
        threads = [threading.Thread(target=_served_after_valid, args=(mounted.mount, n, bad))
                   for n in names]
        for t in threads:
            t.start()
        for n in names:
            os.mkdir(mounted.path(n))
        for t in threads:
            t.join()
    assert not bad, bad
