# SPDX-License-Identifier: MIT
"""A small HTTPS reverse proxy in front of Pebble, for ACME tests that need
answers Pebble does not give by itself.

AcmeProxy listens on loopback with its own TLS certificate (a CA made by
python3-cryptography through pebble_env.make_tls_ca; point the client's CA
bundle at `ca_bundle`, which holds the proxy's CA and Pebble's), forwards
every request to Pebble's ACME listener and rewrites Pebble's URLs in
headers and bodies so that the client only ever talks to the proxy.

Switches (plain attributes, safe to flip while it runs):
  rate_limit_new_order  answer newOrder with 429, a rateLimited problem
                        document and `Retry-After: retry_after`
  refuse_new_orders     a count: answer that many newOrders as
                        rate_limit_new_order does, then pass them on
  processing_hold       seconds: from the first finalize on, answer order
                        polls (and the finalize) with status "processing",
                        no certificate and `Retry-After: 0` for that long
  profiles              {name: description} added as the directory's
                        meta.profiles
  ari                   add "renewalInfo" to the directory and answer
                        GET renewalInfo/<id> (RFC 9773): a window in the
                        past for ids in `ari_due`, else one a month ahead,
                        with `Retry-After: ari_retry_after`
  freeze                a frozen CA: every request is read and then held,
                        never answered, until `thaw()` (or stop)
  freeze_after_new_order  freeze once a newOrder has been answered (so the
                        order exists and the client is mid-order)

It records what it saw: `requests` [(method, path)], `new_orders` (the
decoded JWS payloads of newOrder requests, answered or not), `ari_ids`
(the ids asked for in renewalInfo requests).
"""

import base64
import datetime
import http.client
import http.server
import json
import os
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pebble_env  # noqa: E402

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
              "te", "trailers", "transfer-encoding", "upgrade", "content-length"}
RENEWAL_INFO_PATH = "/certfs-test/renewal-info"


def b64url_decode(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def jws_payload(body):
    """The decoded JSON payload of a flattened JWS request body (None for
    POST-as-GET or anything unreadable)."""
    try:
        payload = json.loads(body)["payload"]
        if not payload:
            return None
        return json.loads(b64url_decode(payload))
    except (ValueError, KeyError, TypeError):
        return None


def ari_cert_id(cert):
    """RFC 9773 certificate identifier of a python3-cryptography certificate:
    base64url(AKI keyIdentifier) "." base64url(serial as DER INTEGER content)."""
    from cryptography import x509
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = cert.serial_number
    raw = serial.to_bytes((serial.bit_length() + 8) // 8, "big")  # keeps a leading 0
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    return "%s.%s" % (enc(aki.key_identifier), enc(raw))


def _rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class AcmeProxy:
    def __init__(self, workdir, pebble, retry_after=120):
        self.workdir = workdir
        self.pebble = pebble
        self.upstream = ("127.0.0.1", pebble.listen_port)
        self.rate_limit_new_order = False
        self.refuse_new_orders = 0
        self.retry_after = retry_after
        self.processing_hold = 0
        self.profiles = None
        self._hold_started = None
        self.ari = False
        self.ari_due = set()
        self._t0 = datetime.datetime.now(datetime.timezone.utc)
        self.ari_retry_after = 1
        self.freeze = False
        self.freeze_after_new_order = False
        self.frozen = 0
        self._thaw = threading.Event()
        self.requests = []
        self.new_orders = []
        self.ari_ids = []
        self.lock = threading.Lock()
        self.server = None
        self.thread = None
        self.port = None
        self.ca_bundle = None
        self._local = threading.local()

    # -- addresses
    @property
    def base(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def directory_url(self):
        return self.base + "/dir"

    def _upstream_bases(self):
        return ["https://127.0.0.1:%d" % self.pebble.listen_port,
                "https://localhost:%d" % self.pebble.listen_port]

    def rewrite(self, text):
        for b in self._upstream_bases():
            text = text.replace(b, self.base)
        return text

    # -- upstream
    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            ctx = ssl.create_default_context(cafile=self.pebble.ca_pem)
            c = http.client.HTTPSConnection(*self.upstream, context=ctx, timeout=30)
            self._local.conn = c
        return c

    def forward(self, method, path, headers, body):
        for attempt in range(2):
            c = self._conn()
            try:
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
                return r.status, r.getheaders(), data
            except (http.client.HTTPException, OSError):
                c.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def fresh_nonce(self):
        try:
            st, hdrs, _ = self.forward("HEAD", "/nonce-plz", {"Host": "127.0.0.1:%d" % self.port},
                                       None)
        except (http.client.HTTPException, OSError):
            return None
        for k, v in hdrs:
            if k.lower() == "replay-nonce":
                return v
        return None

    # -- lifecycle
    def start(self):
        d = os.path.join(self.workdir, "proxy-tls")
        os.makedirs(d, exist_ok=True)
        ca, cert, key = pebble_env.make_tls_ca(d)
        self.ca_bundle = os.path.join(self.workdir, "proxy-ca-bundle.pem")
        with open(self.ca_bundle, "wb") as out:
            for p in (ca, self.pebble.ca_pem):
                with open(p, "rb") as f:
                    out.write(f.read())
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                proxy._handle(self, "GET")

            def do_HEAD(self):
                proxy._handle(self, "HEAD")

            def do_POST(self):
                proxy._handle(self, "POST")

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        srv.daemon_threads = True
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        self.server = srv
        self.port = srv.server_address[1]
        self.thread = threading.Thread(target=srv.serve_forever, name="acme-proxy",
                                       daemon=True)
        self.thread.start()
        return self

    def thaw(self):
        """Stop freezing; held requests are dropped unanswered."""
        self.freeze = False
        self.freeze_after_new_order = False
        self._thaw.set()

    def stop(self):
        self._thaw.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- requests
    def count(self, path_suffix, method=None):
        with self.lock:
            return sum(1 for m, p in self.requests
                       if p.endswith(path_suffix) and (method is None or m == method))

    def count_prefix(self, path_prefix, method=None):
        with self.lock:
            return sum(1 for m, p in self.requests
                       if p.startswith(path_prefix) and (method is None or m == method))

    def _processing(self, path, hdrs, data):
        """While processing_hold runs: the order is still "processing"."""
        import time
        if not self.processing_hold or not (path.startswith("/finalize-order/") or
                                            path.startswith("/my-order/")):
            return hdrs, data
        with self.lock:
            if self._hold_started is None:
                if not path.startswith("/finalize-order/"):
                    return hdrs, data
                self._hold_started = time.monotonic()
            if time.monotonic() - self._hold_started > self.processing_hold:
                return hdrs, data
        try:
            doc = json.loads(data)
        except ValueError:
            return hdrs, data
        if doc.get("status") not in ("processing", "valid"):
            return hdrs, data
        doc["status"] = "processing"
        doc.pop("certificate", None)
        hdrs = [(k, v) for k, v in hdrs if k.lower() != "retry-after"] + [("Retry-After", "0")]
        return hdrs, json.dumps(doc).encode()

    def _send(self, h, status, headers, body):
        h.send_response(status)
        for k, v in headers:
            if k.lower() in HOP_BY_HOP:
                continue
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _handle(self, h, method):
        path = h.path
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else None
        with self.lock:
            self.requests.append((method, path))
        if self.freeze:
            with self.lock:
                self.frozen += 1
            self._thaw.wait(120)
            h.close_connection = True
            return

        if self.ari and method == "GET" and path.startswith(RENEWAL_INFO_PATH + "/"):
            cid = path[len(RENEWAL_INFO_PATH) + 1:]
            with self.lock:
                self.ari_ids.append(cid)
                due = cid in self.ari_due
            # A CA's window stays put between requests: counted from the
            # proxy's start, not from each request.
            now = self._t0
            if due:
                start, end = now - datetime.timedelta(hours=2), now - datetime.timedelta(hours=1)
            else:
                start, end = now + datetime.timedelta(days=30), now + datetime.timedelta(days=31)
            doc = json.dumps({"suggestedWindow": {"start": _rfc3339(start),
                                                  "end": _rfc3339(end)}}).encode()
            self._send(h, 200, [("Content-Type", "application/json"),
                                ("Retry-After", str(self.ari_retry_after))], doc)
            return

        if method == "POST" and path.startswith("/order-plz"):
            with self.lock:
                self.new_orders.append(jws_payload(body))
                refuse = self.rate_limit_new_order or self.refuse_new_orders > 0
                if self.refuse_new_orders > 0:
                    self.refuse_new_orders -= 1
            if refuse:
                problem = json.dumps({
                    "type": "urn:ietf:params:acme:error:rateLimited",
                    "detail": "too many new orders (test proxy)",
                    "status": 429}).encode()
                hdrs = [("Content-Type", "application/problem+json"),
                        ("Retry-After", str(self.retry_after))]
                nonce = self.fresh_nonce()
                if nonce:
                    hdrs.append(("Replay-Nonce", nonce))
                self._send(h, 429, hdrs, problem)
                return

        fwd = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            status, hdrs, data = self.forward(method, path, fwd, body)
        except (http.client.HTTPException, OSError) as e:
            self._send(h, 502, [("Content-Type", "text/plain")], ("proxy: %s\n" % e).encode())
            return
        if self.freeze_after_new_order and path.startswith("/order-plz") and status == 201:
            self.freeze = True
        hdrs = [(k, self.rewrite(v)) for k, v in hdrs]
        ctype = dict((k.lower(), v) for k, v in hdrs).get("content-type", "")
        if "json" in ctype or "pem" in ctype or path == "/dir":
            text = self.rewrite(data.decode("utf-8", "replace"))
            if (self.ari or self.profiles) and path == "/dir":
                try:
                    d = json.loads(text)
                    if self.ari:
                        d["renewalInfo"] = self.base + RENEWAL_INFO_PATH
                    if self.profiles:
                        d.setdefault("meta", {})["profiles"] = dict(self.profiles)
                    text = json.dumps(d, indent=2)
                except ValueError:
                    pass
            data = text.encode()
        if method == "POST" and status == 200:
            hdrs, data = self._processing(path, hdrs, data)
        self._send(h, status, hdrs, data)
