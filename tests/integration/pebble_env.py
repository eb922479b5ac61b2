# SPDX-License-Identifier: MIT
"""Pebble and pebble-challtestsrv on loopback, for the ACME tests.

Plain helpers, no pytest fixtures: make_tls_ca() creates a CA and a
listener certificate for Pebble (SAN localhost, 127.0.0.1) with
python3-cryptography, write_config() writes Pebble's JSON config, and
PebbleEnv starts `pebble -strict` plus `pebble-challtestsrv` on free ports,
waits for them with a deadline (polling the ports, never fixed sleeps),
fetches Pebble's roots from the management API and stops everything.
Debian's pebble package (2.4) ships /usr/bin/pebble and
/usr/bin/pebble-challtestsrv; which() finds them.
"""

import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def which(path):
    if os.access(path, os.X_OK):
        return path
    return shutil.which(os.path.basename(path))


def free_port():
    """A TCP port that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ipv6_loopback():
    """Can a socket be bound to ::1 here (IPv6 on the loopback)?"""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_udp_tcp_port(ipv6=False):
    """A port free for both TCP and UDP (challtestsrv's DNS listens on both),
    on 127.0.0.1 and, with ipv6, on ::1 too."""
    addrs = [(socket.AF_INET, "127.0.0.1")] + ([(socket.AF_INET6, "::1")] if ipv6 else [])
    for _ in range(50):
        port = free_port()
        try:
            for fam, addr in addrs:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(fam, kind) as s:
                        s.bind((addr, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port for DNS")


def make_tls_ca(directory):
    """CA + Pebble listener certificate. Returns (ca_pem, cert_pem, key_pem) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certfs test listener CA")])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tuple(os.path.join(directory, n) for n in ("ca.pem", "cert.pem", "key.pem"))
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(paths[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


def write_config(path, listen_port, mgmt_port, http_port, tls_port, cert, key,
                 eab_keys=None, eab_required=False, validity_seconds=None):
    """Pebble's config file. eab_keys: {kid: base64url HMAC key}."""
    cfg = {
        "listenAddress": "127.0.0.1:%d" % listen_port,
        "managementListenAddress": "127.0.0.1:%d" % mgmt_port,
        "certificate": cert,
        "privateKey": key,
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": bool(eab_required),
    }
    if eab_keys:
        cfg["externalAccountMACKeys"] = dict(eab_keys)
    if validity_seconds:
        cfg["certificateValidityPeriod"] = int(validity_seconds)
    with open(path, "w") as f:
        json.dump({"pebble": cfg}, f, indent=2)
    return path


def wait_port(port, deadline, proc=None, what="service"):
    """Poll until 127.0.0.1:port accepts TCP, the deadline passes or proc dies."""
    delay = 0.01
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with status %s before listening" % (what, proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("%s did not listen on port %d in time" % (what, port))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def stop_process(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class PebbleEnv:
    """Pebble + challtestsrv in workdir. Use start() and stop() (always)."""

    def __init__(self, workdir, nonce_reject=0, alternate_roots=0, eab_keys=None,
                 eab_required=False, validity_seconds=None, http_port=None):
        self.workdir = workdir
        self.nonce_reject = nonce_reject
        self.alternate_roots = alternate_roots
        self.eab_keys = eab_keys
        self.eab_required = eab_required
        self.validity_seconds = validity_seconds
        self.listen_port = free_port()
        self.mgmt_port = free_port()
        self.http_port = http_port or free_port()
        self.tls_port = free_port()
        # The fake DNS answers on ::1 too where it can (for IPv6 resolvers).
        self.dns_ipv6 = ipv6_loopback()
        self.dns_port = free_udp_tcp_port(self.dns_ipv6)
        self.chall_mgmt_port = free_port()
        self.pebble = None
        self.challtestsrv = None
        self.ca_pem = self.cert_pem = self.key_pem = None

    @property
    def directory_url(self):
        return "https://127.0.0.1:%d/dir" % self.listen_port

    @property
    def challtestsrv_url(self):
        return "http://127.0.0.1:%d" % self.chall_mgmt_port

    def log(self, name):
        path = os.path.join(self.workdir, name + ".log")
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start(self, timeout=20):
        deadline = time.monotonic() + timeout
        self.ca_pem, self.cert_pem, self.key_pem = make_tls_ca(self.workdir)
        config = write_config(os.path.join(self.workdir, "pebble.json"), self.listen_port,
                              self.mgmt_port, self.http_port, self.tls_port,
                              self.cert_pem, self.key_pem, self.eab_keys,
                              self.eab_required, self.validity_seconds)
        with open(os.path.join(self.workdir, "challtestsrv.log"), "wb") as log:
            self.challtestsrv = subprocess.Popen(
                [which(CHALLTESTSRV),
                 "-dns01", ",".join(["127.0.0.1:%d" % self.dns_port] +
                                    (["[::1]:%d" % self.dns_port] if self.dns_ipv6 else [])),
                 "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", "127.0.0.1:%d" % self.chall_mgmt_port,
                 "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        env = dict(os.environ)
        env.update({
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": str(self.nonce_reject),
            "PEBBLE_AUTHZREUSE": "0",
            "PEBBLE_ALTERNATE_ROOTS": str(self.alternate_roots),
        })
        with open(os.path.join(self.workdir, "pebble.log"), "wb") as log:
            self.pebble = subprocess.Popen(
                [which(PEBBLE), "-config", config,
                 "-dnsserver", "127.0.0.1:%d" % self.dns_port, "-strict"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.workdir)
        wait_port(self.chall_mgmt_port, deadline, self.challtestsrv, "pebble-challtestsrv")
        self.challtestsrv_post("/set-default-ipv4", {"ip": "127.0.0.1"})
        wait_port(self.listen_port, deadline, self.pebble, "pebble")
        wait_port(self.mgmt_port, deadline, self.pebble, "pebble management")
        return self

    def stop(self):
        stop_process(self.pebble)
        stop_process(self.challtestsrv)
        self.pebble = self.challtestsrv = None

    def challtestsrv_post(self, path, body):
        req = urllib.request.Request(self.challtestsrv_url + path,
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status

    def _mgmt_get(self, path):
        ctx = ssl.create_default_context(cafile=self.ca_pem)
        url = "https://127.0.0.1:%d%s" % (self.mgmt_port, path)
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
            return resp.read()

    def root_pem(self, index=0):
        """Pebble's root N (0 = default chain) as PEM bytes."""
        return self._mgmt_get("/roots/%d" % index)

    def write_root(self, index=0):
        path = os.path.join(self.workdir, "root%d.pem" % index)
        with open(path, "wb") as f:
            f.write(self.root_pem(index))
        return path

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


class PebbleFactory:
    """Start Pebbles with special settings in workdir; stop_all() at the end
    (a fixture's teardown)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.envs = []

    def start(self, **kw):
        d = os.path.join(str(self.workdir), "pebble%d" % len(self.envs))
        os.mkdir(d)
        env = PebbleEnv(d, **kw)
        self.envs.append(env)
        env.start()
        env.root_file = env.write_root(0)
        return env

    def stop_all(self):
        for env in self.envs:
            env.stop()
