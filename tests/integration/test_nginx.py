# SPDX-License-Identifier: MIT
"""A real nginx serving TLS straight from the mount: ssl_certificate and
ssl_certificate_key point into MOUNT/DOMAIN; a renewal plus `nginx -s
reload` puts the new certificate on the wire."""

import os
import signal
import socket
import subprocess

import pytest
from cryptography import x509

import certfs_harness as h

D = "web.example.com"
NGINX = "/usr/sbin/nginx"

CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {domain};
        ssl_certificate {mount}/{domain}/fullchain.pem;
        ssl_certificate_key {mount}/{domain}/privkey.pem;
        location / {{ return 200 "served by nginx from certfs\\n"; }}
    }}
}}
"""


class Nginx:
    def __init__(self, tmp, mount, domain):
        self.tmp = tmp
        self.port = h.free_port()
        self.conf = os.path.join(tmp, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(tmp=tmp, port=self.port, mount=mount, domain=domain))
        self.base = [NGINX, "-p", tmp + "/", "-c", self.conf, "-e", tmp + "/error.log"]
        self.proc = None

    def log(self):
        try:
            with open(os.path.join(self.tmp, "error.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self):
        r = subprocess.run(self.base + ["-t"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        self.proc = subprocess.Popen(self.base, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited with %s: %s"
                                     % (self.proc.returncode, self.log()))
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        h.wait_for(listening, 15, "nginx to listen on port %d" % self.port)

    def reload(self):
        r = subprocess.run(self.base + ["-s", "reload"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr + self.log()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def nginx_factory(tmp_path):
    if not os.access(NGINX, os.X_OK):
        h.missing_prerequisite("nginx is not installed (%s)" % NGINX)
    made = []

    def make(mount, domain):
        d = tmp_path / ("nginx%d" % len(made))
        d.mkdir()
        n = Nginx(str(d), mount, domain)
        made.append(n)
        n.start()
        return n

    yield make
    for n in made:
        n.stop()


def curl(m, port, domain):
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", m.path("ca.pem"),
         "--resolve", "%s:%d:127.0.0.1" % (domain, port), "https://%s:%d/" % (domain, port)],
        capture_output=True, text=True)


def served_leaf(m, port, domain):
    r = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", domain,
         "-CAfile", m.path("ca.pem"), "-verify_return_error", "-verify_hostname", domain],
        input=b"", capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    certs = h.pem_certs(b"".join(b for _, b in h.pem_blocks(r.stdout)))
    assert certs, r.stdout
    return certs[0]


@pytest.mark.timeout(120)
def test_nginx_serves_from_mount_and_reloads(certfs, nginx_factory):
    m = certfs()
    st = m.mkdir(D)
    leaf = h.pem_certs(m.read(D, "cert.pem"))[0]
    n = nginx_factory(m.mount, D)

    r = curl(m, n.port, D)
    assert r.returncode == 0, r.stderr + n.log()
    assert "served by nginx from certfs" in r.stdout
    assert served_leaf(m, n.port, D).serial_number == leaf.serial_number

    m.renew(D)
    st = m.wait_state(D, state="valid", min_generation=st["generation"] + 1)
    new_leaf = h.pem_certs(m.read(D, "cert.pem"))[0]
    assert new_leaf.serial_number != leaf.serial_number
    # nginx keeps the old certificate until told to reload.
    assert served_leaf(m, n.port, D).serial_number == leaf.serial_number

    n.reload()
    h.wait_for(lambda: served_leaf(m, n.port, D).serial_number == new_leaf.serial_number,
               20, "nginx to serve the renewed certificate")
    r = curl(m, n.port, D)
    assert r.returncode == 0, r.stderr + n.log()
    assert "emerg" not in n.log()
    san = new_leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert D in san.get_values_for_type(x509.DNSName)


@pytest.mark.timeout(120)
def test_nginx_starts_on_placeholder(certfs, nginx_factory):
    """mkdir then start nginx at once: the self-signed placeholder (or the
    issued certificate, if it was quicker) lets nginx start."""
    m = certfs()
    os.mkdir(m.path(D))
    n = nginx_factory(m.mount, D)
    m.wait_state(D, state="valid", source="local")
    n.reload()
    leaf = h.pem_certs(m.read(D, "cert.pem"))[0]
    h.wait_for(lambda: served_leaf(m, n.port, D).serial_number == leaf.serial_number,
               20, "nginx to serve the issued certificate")
    # Old workers drain after a reload and may take one more connection.
    h.wait_for(lambda: curl(m, n.port, D).returncode == 0, 20,
               "curl to verify the issued certificate")
