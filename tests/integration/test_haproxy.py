# SPDX-License-Identifier: MIT
"""A real haproxy serving TLS from the mount's crt-list: one line per
domain naming its bundle.pem; haproxy picks each domain's certificate by
SNI, and a reload after a renewal serves the new one."""

import os
import signal
import socket
import subprocess

import pytest

import certfs_harness as h
from test_nginx import served_leaf

HAPROXY = "/usr/sbin/haproxy"
DOMAINS = ("shop.example.com", "*.example.org")

CONF = """\
global
    pidfile {tmp}/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend tls
    bind 127.0.0.1:{port} ssl crt-list {mount}/crt-list
    http-request return status 200 content-type text/plain string "served by haproxy from certfs"
"""


@pytest.fixture
def haproxy(tmp_path):
    if not os.access(HAPROXY, os.X_OK):
        h.missing_prerequisite("haproxy is not installed (%s)" % HAPROXY)
    procs = []

    def start(mount, conf=CONF):
        port = h.free_port()
        text = conf.format(tmp=tmp_path, port=port, mount=mount)
        conf = tmp_path / "haproxy.cfg"
        conf.write_text(text)
        r = subprocess.run([HAPROXY, "-c", "-f", str(conf)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        # Master-worker in the foreground: SIGUSR2 reloads, as systemctl reload does.
        p = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(conf)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p)

        def listening():
            if p.poll() is not None:
                raise AssertionError("haproxy exited with %s: %s"
                                     % (p.returncode, p.stderr.read().decode(errors="replace")))
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", port)) == 0

        h.wait_for(listening, 15, "haproxy to listen on port %d" % port)
        return p, port

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def sni(domain):
    return "a" + domain[1:] if domain.startswith("*") else domain


def serial_of(m, domain):
    return h.pem_certs(m.read(domain, "fullchain.pem"))[0].serial_number


@pytest.mark.timeout(120)
def test_haproxy_crt_list_serves_every_domain_by_sni(certfs, haproxy):
    m = certfs()
    for d in DOMAINS:
        m.mkdir(d)
    lines = m.read("crt-list", mode="r").splitlines()
    assert lines == sorted("%s/%s/bundle.pem" % (m.mount, d) for d in DOMAINS), lines
    proc, port = haproxy(m.mount)
    for d in DOMAINS:
        assert served_leaf(m, port, sni(d)).serial_number == serial_of(m, d), d
    # Renew one domain and reload haproxy: the new certificate is served.
    before = m.status_json(DOMAINS[0])["generation"]
    m.renew(DOMAINS[0])
    m.wait_state(DOMAINS[0], state="valid", source="local", min_generation=before + 1)
    proc.send_signal(signal.SIGUSR2)
    want = serial_of(m, DOMAINS[0])
    h.wait_for(lambda: served_leaf(m, port, DOMAINS[0]).serial_number == want, 20,
               "haproxy to serve the renewed certificate after its reload")
    assert served_leaf(m, port, sni(DOMAINS[1])).serial_number == serial_of(m, DOMAINS[1])


CONF_DIR = CONF.replace("crt-list {mount}/crt-list", "crt {mount}/haproxy")


@pytest.mark.timeout(120)
def test_haproxy_crt_dir_view(certfs, haproxy, tmp_path):
    """`crt /run/certfs/haproxy`: one key+chain file per domain that has
    a key; haproxy loads the directory and picks by SNI."""
    m = certfs()
    for d in DOMAINS:
        m.mkdir(d)
    view = m.path("haproxy")
    assert sorted(os.listdir(view)) == sorted(d + ".pem" for d in DOMAINS)
    assert "haproxy" not in os.listdir(m.mount)
    for d in DOMAINS:
        assert m.read("haproxy", d + ".pem") == m.read(d, "bundle.pem"), d
        st = os.stat(os.path.join(view, d + ".pem"))
        assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
    with pytest.raises(FileNotFoundError):
        open(os.path.join(view, "missing.example.com.pem"), "rb")
    proc, port = haproxy(m.mount, conf=CONF_DIR)
    for d in DOMAINS:
        assert served_leaf(m, port, sni(d)).serial_number == serial_of(m, d), d
    # A renewal shows in the view at once; a reload serves it.
    before = m.status_json(DOMAINS[0])["generation"]
    m.renew(DOMAINS[0])
    m.wait_state(DOMAINS[0], state="valid", source="local", min_generation=before + 1)
    assert m.read("haproxy", DOMAINS[0] + ".pem") == m.read(DOMAINS[0], "bundle.pem")
    proc.send_signal(signal.SIGUSR2)
    want = serial_of(m, DOMAINS[0])
    h.wait_for(lambda: served_leaf(m, port, DOMAINS[0]).serial_number == want, 20,
               "haproxy to serve the renewed certificate after its reload")
