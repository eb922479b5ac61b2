# SPDX-License-Identifier: MIT
"""ACME issuance benchmark: certfs against Debian's lego and uacme, same local
Pebble, same run.

    /usr/bin/python3 tests/bench/bench_acme.py [BUILDDIR] [--rounds N] [--domains N]
                                               [--workers N] [--keep]

Pebble 2.4 + pebble-challtestsrv run on loopback (tests/integration/pebble_env,
PEBBLE_VA_NOSLEEP=1, no authorization reuse). Timed:

  certfs  mkdir MOUNT/D -> DOMAIN/status.json says source "acme" (the Pebble
          certificate is served), http-01 through the built-in responder
          (--http01-listen on Pebble's http port). The account is registered
          by a warm-up domain first. 1 domain (median of --rounds) and
          --domains at once (all mkdirs, then until every one is served).
  lego    `lego --server URL --email x@example.test --accept-tos --http
          --http.port 127.0.0.1:PORT --domains D --path DIR run` with
          LEGO_CA_CERTIFICATES = Pebble's TLS CA, after a warm-up run that
          registered the account in DIR. 1 domain (median of --rounds) and
          --domains lego processes in parallel. Parallel processes cannot all
          bind Pebble's http port, so those use `--http.webroot` with one
          small threaded HTTP server serving the webroot on that port.
  uacme   `uacme -y -c DIR -a URL -t EC -h HOOK issue D` (Debian's uacme, when
          installed), its http-01 hook writing the webroot served as for
          lego, after `uacme new` registered the account in DIR. uacme has no
          CA bundle option (libcurl's built-in path), so each run sees
          Pebble's TLS CA added to the system bundle through a private bind
          mount (unshare -m) that only that process sees.

Requests per certificate: the requests Pebble's ACME listener logged during
the timed runs (warm-ups excluded), divided by the certificates issued.

Prints both, the ratio (lego / certfs, higher is better for certfs) and the
targets (1 domain < 0.1 s, 50 domains < 2 s). Timing never fails the run; a
failed issuance does (exit 1).
"""

import argparse
import functools
import http.server
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import pebble_env  # noqa: E402

LEGO = "/usr/bin/lego"
UACME = "/usr/bin/uacme"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
FSTYPE = "fuse.certfs"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import BenchError, log, wait_for  # noqa: E402


def mounted(path):
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            if len(lf) > 4 and rf and lf[4] == real and rf[0] == FSTYPE:
                return True
    return False


def lazy_unmount(path):
    for _ in range(4):
        if not mounted(path):
            return
        subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)


def find_certfs(builddir):
    cands = [builddir] if builddir else ["build", "build-main", "build-it", "builddir"]
    for d in cands:
        p = os.path.join(d if os.path.isabs(d) else os.path.join(ROOT, d), "daemon", "certfs")
        if os.access(p, os.X_OK):
            return p
    raise BenchError("no certfs binary in %s (build it first)" % ", ".join(cands))


def f_s(s):
    return "%.3f s" % s if s is not None else "-"


# ---------------------------------------------------------------- certfs

class Certfs:
    def __init__(self, binary, work, pebble, workers=None):
        self.work = work
        self.store = os.path.join(work, "store")
        self.mnt = os.path.join(work, "mnt")
        os.makedirs(self.mnt, exist_ok=True)
        self.conf = os.path.join(work, "certfs.conf")
        with open(self.conf, "w") as f:
            if workers:
                f.write("[certfs]\nworkers = %d\n" % workers)
        self.logpath = os.path.join(work, "certfs.log")
        self.argv = [binary, "-f", "-c", self.conf, "--store", self.store,
                     "--issuer", "acme", "--acme-directory", pebble.directory_url,
                     "--acme-ca-bundle", pebble.ca_pem,
                     "--http01-listen", "127.0.0.1:%d" % pebble.http_port, self.mnt]
        self.proc = None

    def start(self):
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise BenchError("certfs exited with %d: %s" % (self.proc.returncode,
                                                                self.log_tail()))
            return mounted(self.mnt)
        wait_for(up, 30, "the certfs mount", interval=0.01)
        return self

    def log_tail(self, n=10):
        try:
            with open(self.logpath, errors="replace") as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            lazy_unmount(self.mnt)
            self.logf.close()
            self.proc = None

    def served(self, name):
        with open(os.path.join(self.mnt, name, "status.json"), "rb") as f:
            st = json.loads(f.read())
        if st.get("source") == "acme":
            return True
        if st.get("last_error"):
            raise BenchError("%s: %s" % (name, st["last_error"]))
        return False

    def sources(self):
        with open(os.path.join(self.mnt, "status.json"), "rb") as f:
            doc = json.loads(f.read())
        return {d["domain"]: d for d in doc.get("domains", [])}

    def issue(self, names, timeout=120):
        """mkdir every name, then wait until all serve the ACME certificate.
        Returns the elapsed wall time."""
        t0 = time.monotonic()
        for n in names:
            os.mkdir(os.path.join(self.mnt, n))
        if len(names) == 1:
            wait_for(lambda: self.served(names[0]), timeout, "ACME certificate for " + names[0],
                     interval=0.001)
        else:
            pending = set(names)

            def done():
                srcs = self.sources()
                for n in list(pending):
                    d = srcs.get(n)
                    if d and d.get("source") == "acme":
                        pending.discard(n)
                return not pending
            try:
                wait_for(done, timeout, "ACME certificates for %d domains" % len(names),
                         interval=0.001)
            except BenchError:
                errs = {n: self.served(n) for n in sorted(pending)[:3]}
                raise BenchError("%d not served: %r; log: %s" % (len(pending), errs,
                                                                 self.log_tail()))
        return time.monotonic() - t0


def run_clients(spawn, check, names, timeout):
    """Start one client process per name at once, wait for all (bounded),
    check each; returns the wall time."""
    t0 = time.monotonic()
    procs = [spawn(n) for n in names]
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(max(1, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    elapsed = time.monotonic() - t0
    for p in procs:
        check(p)
    return elapsed


# ---------------------------------------------------------------- lego

class Webroot:
    """A threaded static HTTP server for lego's --http.webroot."""

    def __init__(self, root, port):
        handler = functools.partial(_QuietHandler, directory=root)
        self.server = _Server(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Server(http.server.ThreadingHTTPServer):
    # 50 clients validated at once: the default backlog of 5 drops the CA's
    # connections, which then wait for SYN retransmits past its timeout.
    request_queue_size = 256


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


class Lego:
    def __init__(self, work, pebble):
        self.work = work
        self.pebble = pebble
        self.path = os.path.join(work, "lego")
        self.webroot = os.path.join(work, "webroot")
        os.makedirs(self.webroot, exist_ok=True)
        self.env = dict(os.environ, LEGO_CA_CERTIFICATES=pebble.ca_pem)
        self.nlog = 0

    def argv(self, name, webroot=False):
        a = [LEGO, "--server", self.pebble.directory_url, "--email", "x@example.test",
             "--accept-tos", "--http"]
        if webroot:
            a += ["--http.webroot", self.webroot]
        else:
            a += ["--http.port", "127.0.0.1:%d" % self.pebble.http_port]
        return a + ["--domains", name, "--path", self.path, "run"]

    def spawn(self, name, webroot=False):
        self.nlog += 1
        logf = open(os.path.join(self.work, "lego-%03d.log" % self.nlog), "wb")
        p = subprocess.Popen(self.argv(name, webroot), stdin=subprocess.DEVNULL,
                             stdout=logf, stderr=subprocess.STDOUT, env=self.env)
        p.logf = logf
        p.domain = name
        return p

    def check(self, p):
        p.logf.close()
        crt = os.path.join(self.path, "certificates", p.domain + ".crt")
        if p.returncode != 0 or not os.path.exists(crt):
            with open(p.logf.name, errors="replace") as f:
                tail = " | ".join(f.read().splitlines()[-6:])
            raise BenchError("lego for %s failed (%s): %s" % (p.domain, p.returncode, tail))

    def issue(self, names, webroot=False, timeout=300):
        return run_clients(lambda n: self.spawn(n, webroot), self.check, names, timeout)


# ---------------------------------------------------------------- uacme

UACME_HOOK = """#!/bin/sh
# uacme challenge hook: METHOD TYPE IDENT TOKEN AUTH; http-01 into the webroot.
[ "$2" = http-01 ] || exit 1
f="{root}/.well-known/acme-challenge/$4"
case "$1" in
begin) mkdir -p "${{f%/*}}" && printf '%s' "$5" > "$f" ;;
*) rm -f "$f" ;;
esac
"""


class Uacme:
    def __init__(self, work, pebble, webroot):
        self.work = work
        self.pebble = pebble
        self.confdir = os.path.join(work, "uacme")
        self.hook = os.path.join(work, "uacme-hook")
        with open(self.hook, "w") as f:
            f.write(UACME_HOOK.format(root=webroot))
        os.chmod(self.hook, 0o755)
        # The system bundle plus Pebble's TLS CA, bind-mounted over the
        # system bundle in a private mount namespace per run.
        self.bundle = os.path.join(work, "bundle.pem")
        with open(self.bundle, "wb") as out:
            for p in (SYSTEM_BUNDLE, pebble.ca_pem):
                if os.path.exists(p):
                    with open(p, "rb") as f:
                        out.write(f.read())
        self.nlog = 0

    def argv(self, *cmd):
        inner = [UACME, "-y", "-c", self.confdir, "-a", self.pebble.directory_url,
                 "-t", "EC", "-h", self.hook] + list(cmd)
        return ["unshare", "-m", "sh", "-c",
                'mount --bind "$0" %s && exec "$@"' % SYSTEM_BUNDLE, self.bundle] + inner

    def spawn(self, *cmd):
        self.nlog += 1
        logf = open(os.path.join(self.work, "uacme-%03d.log" % self.nlog), "wb")
        p = subprocess.Popen(self.argv(*cmd), stdin=subprocess.DEVNULL, stdout=logf,
                             stderr=subprocess.STDOUT)
        p.logf = logf
        p.domain = cmd[-1]
        return p

    def check(self, p, cert=True):
        p.logf.close()
        crt = os.path.join(self.confdir, p.domain, "cert.pem")
        if p.returncode != 0 or (cert and not os.path.exists(crt)):
            with open(p.logf.name, errors="replace") as f:
                tail = " | ".join(f.read().splitlines()[-6:])
            raise BenchError("uacme %s failed (%s): %s" % (p.domain, p.returncode, tail))

    def register(self):
        p = self.spawn("new", "x@example.test")
        p.wait(120)
        self.check(p, cert=False)

    def issue(self, names, timeout=300):
        return run_clients(lambda n: self.spawn("issue", n), self.check, names, timeout)


def pebble_requests(pebble):
    """Requests Pebble's ACME listener has handled so far (its log)."""
    return pebble.log("pebble").count("-> calling handler()")


# ---------------------------------------------------------------- main

def run_uacme(work, pebble, tag, args, res, reqs):
    """uacme's rounds, into res and reqs as the other clients'."""
    uw = os.path.join(work, "uacme-run")
    os.makedirs(os.path.join(uw, "webroot"), exist_ok=True)
    ua = Uacme(uw, pebble, os.path.join(uw, "webroot"))
    with Webroot(os.path.join(uw, "webroot"), pebble.http_port):
        ua.register()
        w = ua.issue(["warm-u-%s.example.test" % tag], timeout=120)
        log("uacme warm-up (1 domain after `new`): %.3f s" % w)
        r0 = pebble_requests(pebble)
        one = [ua.issue(["one-u%d-%s.example.test" % (i, tag)], timeout=120)
               for i in range(args.rounds)]
        res["uacme1"] = statistics.median(one)
        log("uacme 1 domain: %s" % ", ".join("%.3f" % x for x in one))
        res["uacmeN"] = ua.issue(["many-u%d-%s.example.test" % (i, tag)
                                  for i in range(args.domains)], timeout=300)
        log("uacme %d domains (parallel processes): %.3f s" % (args.domains, res["uacmeN"]))
        reqs["uacme"] = (pebble_requests(pebble) - r0) / (args.rounds + args.domains)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builddir", nargs="?", help="build directory with daemon/certfs")
    ap.add_argument("--rounds", type=int, default=3, help="1-domain rounds (median)")
    ap.add_argument("--domains", type=int, default=50, help="domains issued at once")
    ap.add_argument("--workers", type=int, default=0, help="certfs [certfs] workers")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        raise BenchError("needs root and /dev/fuse (it mounts certfs)")
    binary = find_certfs(args.builddir)
    for b in (pebble_env.PEBBLE, pebble_env.CHALLTESTSRV, LEGO):
        if not pebble_env.which(b):
            raise BenchError("%s is missing (apt install pebble lego)" % b)

    work = tempfile.mkdtemp(prefix="certfs-bench-acme-")
    pdir = os.path.join(work, "pebble")
    os.makedirs(pdir)
    pebble = pebble_env.PebbleEnv(pdir)
    tag = "%x" % os.getpid()
    res = {}
    reqs = {}
    try:
        with pebble:
            log("pebble on %s (http-01 port %d); certfs %s"
                % (pebble.directory_url, pebble.http_port, binary))
            # -- certfs
            fs = Certfs(binary, os.path.join(work, "certfs"), pebble, args.workers or None)
            os.makedirs(fs.work, exist_ok=True)
            fs.start()
            try:
                w = fs.issue(["warm-c-%s.example.test" % tag], timeout=60)
                log("certfs warm-up (account registration + 1 domain): %.3f s" % w)
                r0 = pebble_requests(pebble)
                one = [fs.issue(["one-c%d-%s.example.test" % (i, tag)], timeout=60)
                       for i in range(args.rounds)]
                res["certfs1"] = statistics.median(one)
                log("certfs 1 domain: %s" % ", ".join("%.3f" % x for x in one))
                res["certfsN"] = fs.issue(["many-c%d-%s.example.test" % (i, tag)
                                           for i in range(args.domains)], timeout=180)
                log("certfs %d domains: %.3f s" % (args.domains, res["certfsN"]))
                reqs["certfs"] = (pebble_requests(pebble) - r0) / (args.rounds + args.domains)
            finally:
                fs.stop()

            # -- lego (the port is free again)
            lg = Lego(os.path.join(work, "lego-run"), pebble)
            os.makedirs(lg.work, exist_ok=True)
            w = lg.issue(["warm-l-%s.example.test" % tag], timeout=120)
            log("lego warm-up (account registration + 1 domain): %.3f s" % w)
            r0 = pebble_requests(pebble)
            one = [lg.issue(["one-l%d-%s.example.test" % (i, tag)], timeout=120)
                   for i in range(args.rounds)]
            res["lego1"] = statistics.median(one)
            log("lego 1 domain: %s" % ", ".join("%.3f" % x for x in one))
            with Webroot(lg.webroot, pebble.http_port):
                res["legoN"] = lg.issue(["many-l%d-%s.example.test" % (i, tag)
                                         for i in range(args.domains)], webroot=True,
                                        timeout=300)
            log("lego %d domains (parallel processes): %.3f s" % (args.domains, res["legoN"]))
            reqs["lego"] = (pebble_requests(pebble) - r0) / (args.rounds + args.domains)

            # -- uacme (when installed); a failure there is reported, and the
            # figures measured so far are still printed.
            if pebble_env.which(UACME):
                try:
                    run_uacme(work, pebble, tag, args, res, reqs)
                except BenchError as e:
                    log("uacme: FAILED: %s" % e)
            else:
                log("uacme is not installed (apt install uacme): left out")
    finally:
        if args.keep:
            log("work directory kept: " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("1 domain (median of %d)" % args.rounds, res["certfs1"], res["lego1"],
         res.get("uacme1"), 0.1),
        ("%d domains at once" % args.domains, res["certfsN"], res["legoN"], res.get("uacmeN"),
         2.0 if args.domains == 50 else None),
    ]
    print("ACME issuance: mkdir -> Pebble certificate served (certfs) vs lego and uacme "
          "runs (same Pebble, PEBBLE_VA_NOSLEEP=1, account registered)")
    print("%-26s %10s %10s %10s %9s %9s %10s %s" % ("", "certfs", "lego", "uacme", "lego/cfs",
                                                    "uacme/cfs", "target", ""))
    for label, c, l, u, target in rows:
        met = "" if target is None else ("met" if c < target else "MISSED")
        print("%-26s %10s %10s %10s %8.1fx %8sx %10s %s"
              % (label, f_s(c), f_s(l), f_s(u), l / c if c else 0,
                 "%.1f" % (u / c) if u and c else "-",
                 "< %.1f s" % target if target else "-", met))
    print("Pebble requests per certificate (timed runs): %s"
          % ", ".join("%s %.1f" % (k, v) for k, v in reqs.items()))
    print("workers: %s; lego %d-domain run: %d processes, --http.webroot served by one "
          "threaded HTTP server" % (args.workers or "default", args.domains, args.domains))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        sys.stderr.write("bench_acme: %s\n" % e)
        sys.exit(1)
