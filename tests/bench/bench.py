# SPDX-License-Identifier: MIT
"""certfs benchmark driver: mounts real certfs daemons, runs each benchmark
against them and against the same bytes on tmpfs (/dev/shm) in the same run,
and prints every figure beside its baseline, the ratio and the project's
target (met or missed). Nothing here asserts on timing: a missed target is
printed, not raised. Started by tests/bench/run.sh, which builds certfs and
the C load generator (readbench) first; run it with Debian's /usr/bin/python3
(python3-cryptography).

Every daemon serves a main (read-write) mount and a serving mount
(--serve), as the README tells servers to run it; read figures are taken on
the serving mount, with the main mount's beside them for comparison.

Order of the run (stores are reused so the slow part, issuing 10,000
certificates, happens once):
  store A (a few domains): 1 warm reads (unpinned, then pinned),
    2 cold read after rotation, 8 cert.pfx, 9 bind mounts, 5 rotation under
    load;
  store C: 6 local-CA issuance of 1,000 domains, 4 nginx -t on them,
    then grown to 10,000 domains for 7 start-up and memory and 3 ls -l.
Tables are printed in benchmark order at the end, then a summary.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

FSTYPE = "fuse.certfs"
ROOT_FILES = {"status", "status.json", "metrics", "ca.pem"}
POLL = 0.005
GROUPS = ("read", "ca", "memory")

T0 = time.monotonic()


class SkipGroup(Exception):
    """The rest of a block belongs to a group --only left out."""


def log(msg):
    sys.stderr.write("[%6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


class BenchError(Exception):
    pass


def wait_for(cond, timeout, what, interval=POLL):
    """Poll cond() until it returns a true value (returned) or the deadline
    passes (BenchError naming `what` and the last exception)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last = None
        except Exception as e:  # noqa: BLE001 - keep polling, report at the end
            last = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.0f s waiting for %s" % (timeout, what)
            if last is not None:
                msg += " (last error: %r)" % (last,)
            raise BenchError(msg)
        time.sleep(interval)


# ------------------------------------------------------------------ formatting

def f_rate(v):
    return "-" if v is None else "{:,.0f}/s".format(v)


def f_us(ns):
    if ns is None:
        return "-"
    us = ns / 1000.0
    if us >= 10000:
        return "%.1f ms" % (us / 1000.0)
    return "%.1f us" % us if us >= 10 else "%.2f us" % us


def f_s(s):
    if s is None:
        return "-"
    return "%.3f s" % s if s < 10 else "%.1f s" % s


def f_mib(kib):
    return "-" if kib is None else "%.1f MiB" % (kib / 1024.0)


def ratio(v, base):
    if v is None or base in (None, 0):
        return None
    return v / base


class Section:
    """One benchmark's table: rows of figure | measured | baseline | ratio |
    target, plus free-form notes (failures, context)."""

    def __init__(self, num, title, baseline_name):
        self.num = num
        self.title = title
        self.baseline_name = baseline_name
        self.rows = []
        self.notes = []
        self.targets = []  # (label, measured text, target text, met)

    def row(self, figure, measured, baseline="-", r=None, target="", met=None,
            summary=None):
        rtxt = "-" if r is None else "%.2fx" % r
        ttxt = target
        if target and met is not None:
            ttxt = "%s  %s" % (target, "met" if met else "MISSED")
        self.rows.append((figure, measured, baseline, rtxt, ttxt))
        if summary:
            self.targets.append((summary, rtxt if r is not None else measured,
                                 target, met))

    def note(self, text):
        self.notes.append(text)

    def render(self):
        out = ["", "== %d. %s ==" % (self.num, self.title)]
        if self.rows:
            hdr = ("figure", "measured", "baseline (%s)" % self.baseline_name,
                   "ratio", "target")
            rows = [hdr] + self.rows
            w = [max(len(r[i]) for r in rows) for i in range(5)]
            for k, r in enumerate(rows):
                out.append("  " + " | ".join(r[i].ljust(w[i]) for i in range(5)).rstrip())
                if k == 0:
                    out.append("  " + "-+-".join("-" * w[i] for i in range(5)))
        for n in self.notes:
            out.append("  note: " + n)
        return "\n".join(out)


# ------------------------------------------------------------------ processes

def unescape(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mount_types(path):
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            if len(lf) >= 5 and rf and unescape(lf[4]) == real:
                out.append(rf[0])
    return out


def lazy_unmount(path):
    for _ in range(8):
        if not mount_types(path):
            return
        r = subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Daemon:
    """One certfs daemon in the foreground and its mount. Use as a context
    manager: the mount is always taken down, even when a benchmark fails."""

    count = 0

    def __init__(self, ctx, store, mnt, pin=False, wait=True):
        """mnt is the main (read-write) mount; the serving mount (--serve)
        is mnt + "-serve", self.smnt: every daemon here serves both, as the
        README tells servers to run it."""
        self.ctx = ctx
        self.store, self.mnt, self.pin = store, mnt, pin
        self.smnt = mnt + "-serve"
        self.wait = wait
        self.proc = None
        Daemon.count += 1
        self.logpath = os.path.join(ctx.work, "daemon-%02d%s.log" % (
            Daemon.count, "-pinned" if pin else ""))
        self.t_exec = None
        self.label = "main + serving mount%s" % (", pinned" if pin else "")

    def argv(self):
        a = [self.ctx.certfs, "-f", "--store", self.store, "--serve", self.smnt]
        a.append(self.mnt)
        if self.pin:
            a = ["taskset", "-c", "0"] + a
        return a

    def start(self):
        for m in (self.mnt, self.smnt):
            os.makedirs(m, exist_ok=True)
            lazy_unmount(m)
        self.logf = open(self.logpath, "wb")
        self.t_exec = time.monotonic()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        if self.wait:
            self.wait_mounted()
        return self

    def check_alive(self):
        rc = self.proc.poll()
        if rc is not None:
            raise BenchError("certfs (%s) exited with status %d; log: %s"
                             % (self.label, rc, self.log_tail()))

    def wait_mounted(self, timeout=30):
        def ok():
            self.check_alive()
            return FSTYPE in mount_types(self.mnt) and FSTYPE in mount_types(self.smnt)
        wait_for(ok, timeout, "the %s at %s and %s" % (self.label, self.mnt, self.smnt))

    def log_tail(self, n=8):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-n:]) if lines else "(empty)"

    def stop(self):
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    rc = self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.ctx.problem("certfs (%s) did not exit within 20 s of SIGTERM; killed"
                                     % self.label)
                    self.proc.kill()
                    rc = self.proc.wait()
                if rc != 0:
                    self.ctx.problem("certfs (%s) exited with status %d after SIGTERM; log: %s"
                                     % (self.label, rc, self.log_tail()))
            else:
                self.ctx.problem("certfs (%s) had already exited (status %d); log: %s"
                                 % (self.label, self.proc.returncode, self.log_tail()))
        finally:
            lazy_unmount(self.smnt)
            lazy_unmount(self.mnt)
            self.logf.close()
            self.proc = None
            self.ctx.scan_log(self.logpath, self.label)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False


# ------------------------------------------------------------------ tree helpers

def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def dom_generation(mnt, dom):
    j = json.loads(read_bytes(os.path.join(mnt, dom, "status.json")))
    if "generation" in j:
        return j["generation"], j.get("source")
    for d in j.get("domains", []):
        if d.get("domain") == dom:
            return d.get("generation"), d.get("source")
    raise BenchError("no generation in %s/status.json: %r" % (dom, j))


def root_sources(mnt):
    """{domain: source} from MOUNT/status (NAME STATE SOURCE NOT_AFTER DAYS_LEFT)."""
    out = {}
    for line in read_bytes(os.path.join(mnt, "status")).decode().splitlines():
        f = line.split()
        if len(f) >= 3 and not line.startswith("#") and f[0].upper() != "NAME":
            out[f[0]] = f[2]
    return out


def make_domains(mnt, names):
    for n in names:
        os.mkdir(os.path.join(mnt, n))


def wait_local(d, names, timeout):
    want = set(names)

    def ok():
        d.check_alive()
        src = root_sources(d.mnt)
        return all(src.get(n) == "local" for n in want)
    wait_for(ok, timeout, "%d domains to serve a local-CA certificate" % len(want),
             interval=0.05)


def list_domains(mnt):
    return [n for n in os.listdir(mnt) if not n.startswith(".") and n not in ROOT_FILES]


def pem_blocks(data):
    """PEM blocks of data as (label, bytes); None if anything else is in
    there (a torn or truncated file)."""
    text = data.decode("ascii", errors="replace")
    blocks = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END \1-----\r?\n?",
                        text)
    full = re.findall(r"-----BEGIN [A-Z0-9 ]+-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END [A-Z0-9 ]+-----\r?\n?",
                      text)
    rest = re.sub(r"-----BEGIN [A-Z0-9 ]+-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END [A-Z0-9 ]+-----\r?\n?",
                  "", text)
    if rest.strip() or not full or len(full) != len(blocks):
        return None
    return [(lbl, blk.encode()) for lbl, blk in zip(blocks, full)]


def leaf_spki(fullchain):
    """DER SubjectPublicKeyInfo of the leaf (first certificate), or None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    blocks = pem_blocks(fullchain)
    if not blocks or blocks[0][0] != "CERTIFICATE":
        return None
    try:
        certs = [x509.load_pem_x509_certificate(b) for _, b in blocks]
    except ValueError:
        return None
    return certs[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_spki(privkey):
    from cryptography.hazmat.primitives import serialization
    blocks = pem_blocks(privkey)
    if not blocks or len(blocks) != 1:
        return None
    try:
        k = serialization.load_pem_private_key(blocks[0][1], password=None)
    except (ValueError, TypeError):
        return None
    return k.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# ------------------------------------------------------------------ the run

class Ctx:
    def __init__(self, args):
        self.args = args
        self.certfs = os.path.abspath(args.certfs)
        self.readbench = os.path.abspath(args.readbench)
        self.work = tempfile.mkdtemp(prefix="certfs-bench.", dir=args.workdir)
        self.shm = tempfile.mkdtemp(prefix="certfs-bench.", dir="/dev/shm")
        self.problems = []
        self.sections = {}
        self.seen_logs = set()

    def problem(self, text):
        log("PROBLEM: " + text)
        self.problems.append(text)

    def scan_log(self, path, label):
        try:
            with open(path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return
        for marker in ("AddressSanitizer", "runtime error:", "Segmentation", "assert"):
            if marker in text and (path, marker) not in self.seen_logs:
                self.seen_logs.add((path, marker))
                self.problem("certfs (%s) log mentions %r: %s" % (label, marker, path))

    def section(self, num, title, baseline_name):
        s = Section(num, title, baseline_name)
        self.sections[num] = s
        return s

    def rb(self, *argv, pin=False, timeout=600):
        cmd = [self.readbench] + [str(a) for a in argv]
        if pin:
            cmd = ["taskset", "-c", "0"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0 and not r.stdout.strip():
            raise BenchError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                    r.stderr.strip()[-500:]))
        out = {}
        for tok in r.stdout.split():
            k, _, v = tok.partition("=")
            if "," in v or k == "ns":
                out[k] = [int(x) for x in v.split(",") if x]
            else:
                try:
                    out[k] = float(v) if "." in v else int(v)
                except ValueError:
                    out[k] = v
        out["_rc"] = r.returncode
        out["_stderr"] = r.stderr
        return out


def run_guarded(ctx, sec, fn, *a):
    """Run one benchmark part; a failure becomes a note in its table."""
    try:
        fn(*a)
    except Exception as e:  # noqa: BLE001 - report and go on with the others
        log("FAILED in %d. %s: %s" % (sec.num, sec.title, e))
        sec.note("FAILED: %s" % e)
        if ctx.args.verbose:
            traceback.print_exc()


# ---- 1. warm reads

WARM_ROUNDS = 3


def warm_reads(ctx, res, pin, views):
    """views: [(mount label, path)], the tmpfs baseline first. Each figure
    is the median of WARM_ROUNDS runs, the views taking turns (rotated each
    round), so that other work on a shared CPU weighs on the baseline and
    the mount alike rather than on whichever ran at a busy moment."""
    mode = "pinned" if pin else "unpinned"
    each = ctx.args.duration / WARM_ROUNDS
    for threads in (1, 2):
        runs = {label: [] for label, _ in views}
        for rnd in range(WARM_ROUNDS):
            for label, path in views[rnd % len(views):] + views[:rnd % len(views)]:
                r = ctx.rb("read", path, each, threads, ctx.args.warmup, pin=pin)
                if r.get("size_changes") or r.get("errors"):
                    ctx.problem("warm read of %s (%s %s, %d threads): %s size changes, "
                                "%s errors" % (path, label, mode, threads,
                                               r.get("size_changes"), r.get("errors")))
                runs[label].append(r)
        for label, _ in views:
            rs = sorted(runs[label], key=lambda x: x["ops_per_s"])
            r = rs[len(rs) // 2]
            res[(label, mode, threads)] = r
            log("  %s/%s %d thread(s): %s ops/s p50 %s (runs: %s)" % (
                label, mode, threads, f_rate(r.get("ops_per_s")), f_us(r.get("p50_ns")),
                ", ".join(f_rate(x["ops_per_s"]) for x in runs[label])))


def table_warm(sec, res, size, duration):
    sec.title += " (%s bytes)" % size
    for mode in ("serve", "main"):
        for pin in ("unpinned", "pinned"):
            for threads in (1, 2):
                r = res.get((mode, pin, threads))
                b = res.get(("tmpfs", pin, threads))
                if r is None:
                    continue
                lbl = "%s %s %dT" % (mode, pin, threads)
                rr = ratio(r["ops_per_s"], b and b["ops_per_s"])
                # the target is for the mount servers read; main is for comparison
                tgt = mode == "serve"
                sec.row(lbl + " ops/s", f_rate(r["ops_per_s"]),
                        f_rate(b and b["ops_per_s"]), rr, ">= 0.75x tmpfs" if tgt else "",
                        None if rr is None or not tgt else rr >= 0.75,
                        summary="1. warm read ops/s, " + lbl)
                for p in ("p50", "p99"):
                    k = p + "_ns"
                    sec.row(lbl + " " + p, f_us(r[k]), f_us(b and b[k]),
                            ratio(r[k], b and b[k]))
    sec.note("ops = open + read to EOF + close, the median of %d runs of %.2g s (each "
             "after a warm-up), tmpfs and the mounts taking turns; 'pinned': daemon "
             "and reader on CPU 0 (taskset -c 0), baseline pinned too; 'serve' is the "
             "serving mount (--serve), 'main' the read-write mount, both of the same "
             "daemon" % (WARM_ROUNDS, duration / WARM_ROUNDS))


# ---- 2. cold read after rotation

def rotate(d, dom, timeout=30):
    """echo renew > DOMAIN/status; wait until status.json's generation changes.
    Returns (seconds it took, new generation)."""
    g0, _ = dom_generation(d.mnt, dom)
    t0 = time.monotonic()
    with open(os.path.join(d.mnt, dom, "status"), "w") as f:
        f.write("renew\n")

    def changed():
        d.check_alive()
        g, _ = dom_generation(d.mnt, dom)
        return g != g0 and g
    g = wait_for(changed, timeout, "a new generation of %s (was %s)" % (dom, g0), interval=0.002)
    return time.monotonic() - t0, g


def bench_cold(ctx, sec, d, dom, reps, root, label):
    path = os.path.join(root, dom, "fullchain.pem")
    cold, warm, rot = [], [], []
    prev = read_bytes(path)
    unchanged = 0
    for _ in range(reps):
        secs, _ = rotate(d, dom)
        rot.append(secs)
        r = ctx.rb("once", path, 30)
        cold.append(r["ns"][0])
        warm.extend(r["ns"][5:])
        cur = read_bytes(path)
        if cur == prev:
            unchanged += 1
        prev = cur
    if unchanged:
        ctx.problem("cold read: fullchain.pem unchanged after %d of %d generation changes"
                    % (unchanged, reps))
    cm, wm = statistics.median(cold), statistics.median(warm)
    sec.row("%s: first open+read after rotation, median of %d" % (label, reps), f_us(cm),
            f_us(wm), ratio(cm, wm), summary="2. cold read after rotation vs warm, " + label)
    sec.row("%s: same, max" % label, f_us(max(cold)), f_us(max(warm)),
            ratio(max(cold), max(warm)))
    sec.row("%s: renew -> new generation in status.json (median)" % label,
            f_s(statistics.median(rot)))


# ---- 8. cert.pfx

def bench_pfx(ctx, sec, doms, root, label):
    cold, warm1 = [], []
    for dom in doms:
        r = ctx.rb("once", os.path.join(root, dom, "cert.pfx"), 10)
        cold.append(r["ns"][0])
        warm1.extend(r["ns"][1:])
    path = os.path.join(root, doms[0], "cert.pfx")
    w = ctx.rb("read", path, 1, 1, 0.2)
    base_path = os.path.join(ctx.shm, "cert.pfx")
    shutil.copyfile(path, base_path)
    b = ctx.rb("read", base_path, 1, 1, 0.2)
    cm = statistics.median(cold)
    sec.row("%s: first read of cert.pfx, median of %d fresh domains" % (label, len(doms)),
            f_us(cm), f_us(w["p50_ns"]), ratio(cm, w["p50_ns"]),
            summary="8. cert.pfx first read vs warm, %s" % label)
    sec.row("%s: first read of cert.pfx, max" % label, f_us(max(cold)))
    sec.row("%s: warm read of cert.pfx, p50" % label, f_us(w["p50_ns"]), f_us(b["p50_ns"]),
            ratio(w["p50_ns"], b["p50_ns"]))
    sec.row("%s: warm read of cert.pfx, p99" % label, f_us(w["p99_ns"]), f_us(b["p99_ns"]),
            ratio(w["p99_ns"], b["p99_ns"]))
    sec.row("%s: warm cert.pfx ops/s" % label, f_rate(w["ops_per_s"]), f_rate(b["ops_per_s"]),
            ratio(w["ops_per_s"], b["ops_per_s"]), summary="8. warm cert.pfx ops/s vs tmpfs, %s" % label)


# ---- 5. rotation under load

def reader_main(argv):
    """--reader DIR STOPFILE READYFILE ORDER THREADS: THREADS threads each read
    a pair (fullchain.pem and privkey.pem, separate open/read/close each, in
    ORDER: chain-first or key-first) in a loop until STOPFILE exists; the
    first finished pair creates READYFILE. Prints counts as JSON."""
    import threading
    dom_dir, stop, ready, order, nthreads = argv[0], argv[1], argv[2], argv[3], int(argv[4])
    fc_path = os.path.join(dom_dir, "fullchain.pem")
    pk_path = os.path.join(dom_dir, "privkey.pem")
    lock = threading.Lock()
    tot = {"pairs": 0, "mismatched": 0, "torn": 0, "errors": 0, "size_differs": 0,
           "examples": []}
    deadline = time.monotonic() + 900  # never outlive a driver that died

    def rd(p):
        fd = os.open(p, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
        return b"".join(chunks), size

    def worker():
        cache_fc, cache_pk = {}, {}
        n = mismatched = torn = errors = size_differs = 0
        examples = []
        while (n == 0 or not os.path.exists(stop)) and time.monotonic() < deadline:
            try:
                if order == "key-first":
                    pk, pk_size = rd(pk_path)
                    fc, fc_size = rd(fc_path)
                else:
                    fc, fc_size = rd(fc_path)
                    pk, pk_size = rd(pk_path)
            except OSError as e:
                errors += 1
                if len(examples) < 3:
                    examples.append("read: %r" % e)
                if errors > 1000:
                    break
                continue
            n += 1
            if n == 1:
                with lock:
                    if not os.path.exists(ready):
                        open(ready, "w").close()
            if fc not in cache_fc:
                cache_fc[fc] = leaf_spki(fc)
            if pk not in cache_pk:
                cache_pk[pk] = key_spki(pk)
            a, b = cache_fc[fc], cache_pk[pk]
            # Torn: not complete PEM. fstat's size is counted apart: on the
            # main mount it describes the next open (see the README).
            t = (a is None) + (b is None)
            torn += t
            size_differs += (len(fc) != fc_size) + (len(pk) != pk_size)
            if t == 0 and a != b:
                mismatched += 1
                if len(examples) < 3:
                    examples.append("pair %d (%s): privkey.pem is not the chain's key"
                                    % (n, order))
            if len(cache_fc) > 512:
                cache_fc.clear()
            if len(cache_pk) > 512:
                cache_pk.clear()
        with lock:
            tot["pairs"] += n
            tot["mismatched"] += mismatched
            tot["torn"] += torn
            tot["errors"] += errors
            tot["size_differs"] += size_differs
            tot["examples"] += examples[:3 - len(tot["examples"])] if len(tot["examples"]) < 3 else []

    ths = [threading.Thread(target=worker) for _ in range(nthreads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    if tot["size_differs"]:
        tot["examples"].append("fstat size differed from the bytes read %d time(s)"
                               % tot["size_differs"])
    print(json.dumps(tot))
    return 0


ROTATION_SHAPES = (("2 processes", 2, 1), ("1 process x 4 threads", 1, 4),
                   ("100 processes", 100, 1))


def bench_rotation(ctx, sec, d, dom, root, label, shape, order, min_rot, max_seconds):
    """Readers of shape (name, processes, threads) read pairs of dom below
    root in order while the driver renews dom through the main mount: at
    least min_rot rotations (or max_seconds, whichever comes first), once
    every reader has read a pair. Counts, not timings."""
    name, nproc, nthreads = shape
    dom_dir = os.path.join(root, dom)
    tmp = tempfile.mkdtemp(prefix="readers.", dir=ctx.work)
    stop = os.path.join(tmp, "stop")
    readers = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--reader",
                                 dom_dir, stop, os.path.join(tmp, "ready.%d" % i), order,
                                 str(nthreads)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(nproc)]
    rotations, rot_times, wall = 0, [], 0.0
    try:
        def all_ready():
            for p in readers:
                if p.poll() is not None:
                    raise BenchError("a reader exited early (%d)" % p.returncode)
            return sum(1 for f in os.listdir(tmp) if f.startswith("ready.")) == nproc
        wait_for(all_ready, 300, "%d reader processes to read a first pair" % nproc,
                 interval=0.05)
        t0 = time.monotonic()
        while rotations < min_rot and time.monotonic() - t0 < max_seconds:
            secs, _ = rotate(d, dom)
            rotations += 1
            rot_times.append(secs)
        wall = time.monotonic() - t0
    finally:
        open(stop, "w").close()
        outs, failed = [], None
        for p in readers:
            try:
                o, e = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                o, e = p.communicate()
            if p.returncode != 0:
                failed = "reader failed (%d): %s" % (p.returncode, e.strip()[-500:])
            else:
                outs.append(json.loads(o))
        shutil.rmtree(tmp, ignore_errors=True)
        if failed:
            raise BenchError(failed)
    pairs = sum(o["pairs"] for o in outs)
    mism = sum(o["mismatched"] for o in outs)
    torn = sum(o["torn"] for o in outs)
    errs = sum(o["errors"] for o in outs)
    sized = sum(o.get("size_differs", 0) for o in outs)
    lbl = "%s, %s, %s" % (label, name, order)
    sec.row("%s: pairs / rotations (%.1f s)" % (lbl, wall),
            "{:,} / {}".format(pairs, rotations), target=">= %d rotations" % min_rot,
            met=rotations >= min_rot)
    sec.row("%s: mismatched pairs" % lbl, str(mism), target="0", met=(mism == 0),
            summary="5. mismatched pairs, " + lbl)
    sec.row("%s: torn files" % lbl, str(torn), target="0", met=(torn == 0),
            summary="5. torn files, " + lbl)
    if errs:
        sec.row("%s: read errors" % lbl, str(errs), target="0", met=False)
    if sized:
        sec.row("%s: fstat size != bytes read" % lbl, str(sized))
    examples = [ex for o in outs for ex in o["examples"]]
    for ex in examples[:3]:
        sec.note("reader (%s): %s" % (lbl, ex))
    if len(examples) > 3:
        sec.note("reader (%s): and %d more like these" % (lbl, len(examples) - 3))
    if mism or torn or errs:
        ctx.problem("rotation under load (%s): %d mismatched pairs, %d torn files, "
                    "%d read errors" % (lbl, mism, torn, errs))
    return rot_times


# ---- 9. bind mounts

def bench_bind(ctx, sec, d, dom, reps):
    """Bind mounts of one file of the main mount and of the domain's directory
    of both mounts; after each renewal, the time from the new generation
    showing in status.json until each bind serves the new fullchain.pem.
    Each view is polled by its own thread (5 ms), as a server would re-read."""
    import threading
    bdir = tempfile.mkdtemp(prefix="bind.", dir=ctx.work)
    views = []  # (label, bind target, path read)
    fsrc = os.path.join(d.mnt, dom, "fullchain.pem")
    ftgt = os.path.join(bdir, "cert.pem")
    open(ftgt, "w").close()
    views.append(("main, one file (mount --bind FILE)", fsrc, ftgt, ftgt))
    for lbl, root in (("main", d.mnt), ("serve", d.smnt)):
        tgt = os.path.join(bdir, "dir-" + lbl)
        os.mkdir(tgt)
        views.append(("%s, domain directory" % lbl, os.path.join(root, dom), tgt,
                      os.path.join(tgt, "fullchain.pem")))
    mounted = []
    try:
        for _, src, tgt, _ in views:
            subprocess.run(["mount", "--bind", src, tgt], check=True, capture_output=True)
            mounted.append(tgt)
        times = {v[0]: [] for v in views}
        for _ in range(reps):
            before = {v[0]: read_bytes(v[3]) for v in views}
            seen = {}
            evt = threading.Event()

            def poll(v):
                evt.wait()
                end = time.monotonic() + 30
                while time.monotonic() < end:
                    if read_bytes(v[3]) != before[v[0]]:
                        seen[v[0]] = time.monotonic()
                        return
                    time.sleep(0.005)
            ths = [threading.Thread(target=poll, args=(v,)) for v in views]
            for t in ths:
                t.start()
            try:
                g0, _ = dom_generation(d.mnt, dom)
                with open(os.path.join(d.mnt, dom, "status"), "w") as f:
                    f.write("renew\n")
                evt.set()
                wait_for(lambda: dom_generation(d.mnt, dom)[0] != g0, 60,
                         "a new generation of %s" % dom, interval=0.002)
                t_pub = time.monotonic()
            finally:
                evt.set()
                for t in ths:
                    t.join()
            for v in views:
                if v[0] not in seen:
                    raise BenchError("%s never showed the renewal (30 s)" % v[0])
                times[v[0]].append(max(0.0, seen[v[0]] - t_pub))
        for v in views:
            t = times[v[0]]
            sec.row("%s: renewal visible, median of %d" % (v[0], reps),
                    f_s(statistics.median(t)))
            sec.row("%s: renewal visible, max" % v[0], f_s(max(t)), target="<= 1 s",
                    met=max(t) <= 1.0, summary="9. bind mount sees a renewal (max), " + v[0])
        sec.note("time from the new generation appearing in status.json (polled every "
                 "2 ms) until a thread re-reading fullchain.pem through the bind every "
                 "5 ms gets the new bytes; 0 means before status.json showed it")
    finally:
        for tgt in reversed(mounted):
            subprocess.run(["umount", "-l", tgt], capture_output=True)
        shutil.rmtree(bdir, ignore_errors=True)


# ---- 6. local-CA issuance

def bench_issuance(ctx, sec, d, names):
    t0 = time.monotonic()
    make_domains(d.mnt, names)
    t_mkdir = time.monotonic() - t0
    wait_local(d, names, timeout=max(120, len(names) * 0.2))
    t_all = time.monotonic() - t0
    sec.row("mkdir of %s domains (the loop itself)" % "{:,}".format(len(names)), f_s(t_mkdir))
    sec.row("mkdir -> all serve a local-CA certificate", f_s(t_all), target="<= 2 s",
            met=t_all <= 2.0 if len(names) >= 1000 else None,
            summary="6. local CA, %s domains" % "{:,}".format(len(names)))
    sec.row("certificates/s", f_rate(len(names) / t_all), summary="6. local CA certificates/s")
    sec.note("'all local' is judged by polling MOUNT/status every 50 ms")


# ---- 4. nginx -t

def nginx_conf(prefix, root, names, port):
    lines = ["worker_processes 1;", "pid %s/nginx.pid;" % prefix,
             "error_log %s/error.log;" % prefix, "events { worker_connections 64; }",
             "http {", "  access_log off;"]
    for n in names:
        lines += ["  server {", "    listen 127.0.0.1:%d ssl;" % port,
                  "    server_name %s;" % n,
                  "    ssl_certificate %s/%s/fullchain.pem;" % (root, n),
                  "    ssl_certificate_key %s/%s/privkey.pem;" % (root, n), "  }"]
    lines.append("}")
    os.makedirs(prefix, exist_ok=True)
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def nginx_t(conf, prefix):
    t0 = time.monotonic()
    r = subprocess.run(["nginx", "-t", "-q", "-c", conf, "-p", prefix,
                        "-e", os.path.join(prefix, "error.log")],
                       capture_output=True, text=True, timeout=300)
    t = time.monotonic() - t0
    if r.returncode != 0:
        raise BenchError("nginx -t -c %s failed: %s" % (conf, (r.stderr or r.stdout).strip()[-400:]))
    return t


def bench_nginx(ctx, sec, root, names, label, tmpfs_conf, tmpfs_prefix, runs, store_times):
    prefix = os.path.join(ctx.work, "nginx-" + label)
    conf = nginx_conf(prefix, root, names, 18443)
    nginx_t(conf, prefix)  # warm-up (first one may read cold)
    nginx_t(tmpfs_conf, tmpfs_prefix)
    m, b = [], []
    for _ in range(runs):  # alternate so drift hits both alike
        m.append(nginx_t(conf, prefix))
        b.append(nginx_t(tmpfs_conf, tmpfs_prefix))
    store_times.extend(b)
    mm, bm = statistics.median(m), statistics.median(b)
    r = ratio(mm, bm)
    sec.row("%s: nginx -t, %s server blocks, median of %d" % (label, "{:,}".format(len(names)), runs),
            f_s(mm), f_s(bm), r, "<= 1.05x tmpfs" if label == "serve" else "",
            r <= 1.05 if label == "serve" else None,
            summary="4. nginx -t, %s domains, %s" % ("{:,}".format(len(names)), label))


# ---- 7. start-up and memory, 3. ls -l

def bench_startup(ctx, sec7, d, n_expected, label):
    """d was created with wait=False and started just now. Serving means: stat
    of MOUNT/status succeeds and a listdir of the root returns every domain. A
    listing that stays short for 5 s while the mount is up is reported as
    such instead of waited out."""
    deadline = time.monotonic() + 120
    t_status = None
    last_n, last_change = -1, time.monotonic()
    while True:
        d.check_alive()
        now = time.monotonic()
        try:
            os.stat(os.path.join(d.mnt, "status"))
            if t_status is None:
                t_status = now - d.t_exec
            n = len(list_domains(d.mnt))
        except OSError:
            n = -1
        if n >= n_expected:
            t = time.monotonic() - d.t_exec
            break
        if n != last_n:
            last_n, last_change = n, now
        if (t_status is not None and now - last_change > 5) or now > deadline:
            t = None
            break
        time.sleep(0.002)
    nn = "{:,}".format(n_expected)
    rss0 = rss_kib(d.proc.pid)
    if t is None:
        ctx.problem("%s: the root lists %d of %d domains (MOUNT/status became readable "
                    "%.3f s after exec; the listing stayed at %d for 5 s)"
                    % (d.label, last_n, n_expected, t_status or -1, last_n))
        sec7.row("%s: exec -> MOUNT/status readable" % label, f_s(t_status))
        sec7.row("%s: exec -> root lists %s domains" % (label, nn),
                 "never (%s listed)" % "{:,}".format(last_n), target="<= 2 s", met=False,
                 summary="7. start-up, %s" % label)
    else:
        sec7.row("%s: exec -> MOUNT/status readable" % label, f_s(t_status))
        sec7.row("%s: exec -> root lists %s domains" % (label, nn), f_s(t),
                 target="<= 2 s", met=t <= 2.0, summary="7. start-up, %s" % label)
    sec7.row("%s: daemon RSS after start" % label, f_mib(rss0), target="<= 64 MiB",
             met=rss0 <= 64 * 1024, summary="7. RSS after start, %s" % label)
    return t, rss0


def bench_readall(ctx, sec7, d, root, label, copy_to):
    """Reads every file of every domain named in MOUNT/status (not the
    listing, so a short listing does not shorten the walk) below root."""
    names = sorted(root_sources(d.mnt))
    namesfile = os.path.join(ctx.work, "names-%s.txt" % label)
    with open(namesfile, "w") as f:
        f.write("\n".join(names) + "\n")
    r = ctx.rb("readall", root, copy_to or "-", 2, namesfile)
    if r.get("errors"):
        ctx.problem("%s: reading every file: %s errors: %s" % (d.label, r["errors"],
                                                               r["_stderr"].strip()[-600:]))
    rss1 = rss_kib(d.proc.pid)
    t = r["ns"][0] / 1e9
    sec7.row("%s: read every file of %s domains once (2 threads, %s files)"
             % (label, "{:,}".format(r.get("domains", 0)), "{:,}".format(r.get("files", 0))),
             f_s(t), target="<= 20 s", met=t <= 20.0,
             summary="7. read every file once, %s" % label)
    sec7.row("%s: daemon RSS after reading every file" % label, f_mib(rss1),
             target="<= 64 MiB", met=rss1 <= 64 * 1024,
             summary="7. RSS after reading everything, %s" % label)


def time_ls(path, runs):
    env = dict(os.environ, LC_ALL="C")
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        r = subprocess.run(["ls", "-l", "--color=never", path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=env, timeout=300)
        out.append(time.monotonic() - t0)
        if r.returncode != 0:
            raise BenchError("ls -l %s: %s" % (path, r.stderr.decode(errors="replace")[-300:]))
    return out


def bench_ls(ctx, sec, root, label, tree, n):
    lm = time_ls(root, 4)
    lb = time_ls(tree, 4)
    sm = ctx.rb("scan", root, 3)
    sb = ctx.rb("scan", tree, 3)
    # a listing shorter than the copy's makes the mount look faster than it is
    complete = sm.get("entries") == sb.get("entries")
    wm, wb = statistics.median(lm[1:]), statistics.median(lb[1:])
    r = ratio(wm, wb)
    nn = "{:,}".format(n)
    if complete:
        sec.row("%s: ls -l of %s domains, warm (median of runs 2-4)" % (label, nn), f_s(wm),
                f_s(wb), r, "<= 1.5x tmpfs", r <= 1.5,
                summary="3. ls -l, %s domains, %s" % (nn, label))
    else:
        sec.row("%s: ls -l of %s domains, warm (median of runs 2-4)" % (label, nn),
                "%s (%s entries)" % (f_s(wm), "{:,}".format(sm.get("entries", 0))),
                "%s (%s entries)" % (f_s(wb), "{:,}".format(sb.get("entries", 0))), r,
                "<= 1.5x tmpfs", False, summary="3. ls -l, %s domains, %s" % (nn, label))
        sec.note("%s: the mount's root lists %s entries, the tmpfs copy %s: the ratio is not "
                 "comparable and the target is counted as missed"
                 % (label, sm.get("entries"), sb.get("entries")))
    a, b = statistics.median(sm["ns"][1:]) / 1e9, statistics.median(sb["ns"][1:]) / 1e9
    sec.row("%s: readdir+stat of root and every domain's files, warm (%s entries)"
            % (label, "{:,}".format(sm.get("files", 0) + sm.get("entries", 0))),
            f_s(a), f_s(b), ratio(a, b), summary="3. readdir+stat scan, %s" % label)
    sec.row("%s: readdir+stat scan, first run" % label, f_s(sm["ns"][0] / 1e9),
            f_s(sb["ns"][0] / 1e9), ratio(sm["ns"][0], sb["ns"][0]))
    if sm.get("files") != sb.get("files"):
        sec.note("%s: the scan found %s files below the mount's root, %s below the tmpfs "
                 "copy's" % (label, sm.get("files"), sb.get("files")))


def verify_pair(ctx, mnt, dom):
    fc = read_bytes(os.path.join(mnt, dom, "fullchain.pem"))
    pk = read_bytes(os.path.join(mnt, dom, "privkey.pem"))
    a, b = leaf_spki(fc), key_spki(pk)
    if a is None or b is None or a != b:
        ctx.problem("%s: fullchain.pem and privkey.pem do not parse or do not match" % dom)
        return False
    return True


# ------------------------------------------------------------------ main

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        return reader_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--certfs", required=True)
    ap.add_argument("--readbench", required=True)
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per warm-read figure")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--domains", type=int, default=10000, help="domains for 3 and 7")
    ap.add_argument("--ca-domains", type=int, default=1000, help="domains for 6 and 4")
    ap.add_argument("--cold-reps", type=int, default=20)
    ap.add_argument("--pfx-domains", type=int, default=50)
    ap.add_argument("--rotations", type=int, default=30,
                    help="renewals per rotation-under-load row")
    ap.add_argument("--rotate-seconds", type=float, default=60.0,
                    help="at most this long per rotation-under-load row")
    ap.add_argument("--bind-reps", type=int, default=5, help="renewals in benchmark 9")
    ap.add_argument("--nginx-runs", type=int, default=5)
    ap.add_argument("--workdir", default="/var/tmp",
                    help="where stores and mountpoints go (a disk, like a real store)")
    ap.add_argument("--only", action="append", choices=GROUPS,
                    help="run only this group of benchmarks (repeatable): read = store A "
                    "(1, 2, 5, 8, 9), ca = 6 and 4, memory = 7 and 3")
    ap.add_argument("--keep", action="store_true", help="keep the stores and logs")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench.py: needs root (FUSE mounts)", file=sys.stderr)
        return 1
    for p in (args.certfs, args.readbench):
        if not os.access(p, os.X_OK):
            print("bench.py: %s is not executable" % p, file=sys.stderr)
            return 1
    if args.ca_domains > args.domains:
        args.domains = args.ca_domains
    args.groups = set(args.only or GROUPS)
    ctx = Ctx(args)
    log("work dir %s, tmpfs baselines in %s" % (ctx.work, ctx.shm))
    try:
        run_all(ctx)
    except KeyboardInterrupt:
        ctx.problem("interrupted")
    finally:
        print_report(ctx)
        if not args.keep:
            shutil.rmtree(ctx.work, ignore_errors=True)
        else:
            log("kept %s" % ctx.work)
        shutil.rmtree(ctx.shm, ignore_errors=True)
    return 0


def run_all(ctx):
    a = ctx.args
    s1 = ctx.section(1, "Warm open+read+close of fullchain.pem", "tmpfs")
    s2 = ctx.section(2, "Cold first read after a new generation (main mount)",
                     "warm read")
    s3 = ctx.section(3, "ls -l and readdir+stat of %s domains" % "{:,}".format(a.domains), "tmpfs")
    s4 = ctx.section(4, "nginx -t with %s domains" % "{:,}".format(a.ca_domains), "tmpfs")
    s5 = ctx.section(5, "Rotation under load (renewals; counts)", "-")
    s6 = ctx.section(6, "Local-CA issuance", "-")
    s7 = ctx.section(7, "Start-up and memory, %s domains" % "{:,}".format(a.domains), "-")
    s8 = ctx.section(8, "cert.pfx first and warm read", "see rows")
    s8.note("baseline of 'first read' rows: the warm read on the same mount; of warm rows: tmpfs")
    s9 = ctx.section(9, "Bind mounts seeing a renewal", "-")

    if "read" in a.groups:
        run_store_a(ctx, s1, s2, s5, s8, s9)
    if "ca" in a.groups or "memory" in a.groups:
        run_store_c(ctx, s3, s4, s6, s7)


def run_store_a(ctx, s1, s2, s5, s8, s9):
    a = ctx.args
    storeA = os.path.join(ctx.work, "storeA")
    mntA = os.path.join(ctx.work, "mntA")
    dom, rot = "bench.example.test", "rotate.example.test"
    pfx_main = ["pfx%02d.main.example.test" % i for i in range(a.pfx_domains)]
    pfx_serve = ["pfx%02d.serve.example.test" % i for i in range(a.pfx_domains)]
    res = {}
    size = "?"
    log("store A: %d domains" % (2 + 2 * a.pfx_domains))
    try:
        with Daemon(ctx, storeA, mntA) as d:
            make_domains(mntA, [dom, rot] + pfx_main + pfx_serve)
            wait_local(d, [dom, rot] + pfx_main + pfx_serve, 120)
            verify_pair(ctx, d.mnt, dom)
            verify_pair(ctx, d.smnt, dom)
            fc = os.path.join(mntA, dom, "fullchain.pem")
            sfc = os.path.join(d.smnt, dom, "fullchain.pem")
            base = os.path.join(ctx.shm, "fullchain.pem")
            shutil.copyfile(fc, base)
            size = os.path.getsize(base)
            log("1. warm reads, unpinned")
            run_guarded(ctx, s1, warm_reads, ctx, res, False,
                        [("tmpfs", base), ("serve", sfc), ("main", fc)])
            log("2. cold reads after rotation")
            run_guarded(ctx, s2, bench_cold, ctx, s2, d, dom, a.cold_reps, d.mnt, "main")
            log("8. cert.pfx")
            run_guarded(ctx, s8, bench_pfx, ctx, s8, pfx_serve, d.smnt, "serve")
            run_guarded(ctx, s8, bench_pfx, ctx, s8, pfx_main, d.mnt, "main")
            log("9. bind mounts")
            run_guarded(ctx, s9, bench_bind, ctx, s9, d, rot, a.bind_reps)
            for shape in ROTATION_SHAPES:
                for order in ("chain-first", "key-first"):
                    for label, root in (("serve", d.smnt), ("main", d.mnt)):
                        log("5. rotation under load: %s, %s, %s" % (label, shape[0], order))
                        run_guarded(ctx, s5, bench_rotation, ctx, s5, d, rot, root, label,
                                    shape, order, a.rotations, a.rotate_seconds)
        with Daemon(ctx, storeA, mntA, pin=True) as d:
            log("1. warm reads, pinned")
            run_guarded(ctx, s1, warm_reads, ctx, res, True,
                        [("tmpfs", base), ("serve", sfc), ("main", fc)])
    except Exception as e:  # noqa: BLE001
        log("store A: %s" % e)
        for s in (s1, s2, s5, s8, s9):
            s.note("FAILED: %s" % e)
    finally:
        table_warm(s1, res, size, a.duration)
    s2.note("baseline: warm reads of the same file in the same process right after "
            "(reads 6-30), median; main mount only: a fresh thread on the serving mount "
            "gets the previous generation for 500 ms after a rotation (see the README)")
    s5.note("each row: readers of that shape read fullchain.pem and privkey.pem (separate "
            "open/read/close each) in that order below that mount while the domain is renewed "
            "through the main mount, from the moment every reader has read a pair; at least "
            "%d renewals or %.0f s" % (a.rotations, a.rotate_seconds))



def run_store_c(ctx, s3, s4, s6, s7):
    a = ctx.args
    # ---------------- store C: 1,000 then 10,000 domains
    storeC = os.path.join(ctx.work, "storeC")
    mntC = os.path.join(ctx.work, "mntC")
    ca_names = ["d%05d.bench.test" % i for i in range(a.ca_domains)]
    all_names = ["d%05d.bench.test" % i for i in range(a.domains)]
    try:
        with Daemon(ctx, storeC, mntC) as d:
            log("6. local-CA issuance of %d domains" % a.ca_domains)
            bench_issuance(ctx, s6, d, ca_names)
            for n in ca_names[:: max(1, len(ca_names) // 10)]:
                verify_pair(ctx, d.mnt, n)
                verify_pair(ctx, d.smnt, n)
            if "ca" not in a.groups:
                raise SkipGroup()
            tree = os.path.join(ctx.shm, "nginx-tree")
            for n in ca_names:
                os.makedirs(os.path.join(tree, n))
                for fn in ("fullchain.pem", "privkey.pem"):
                    shutil.copyfile(os.path.join(mntC, n, fn), os.path.join(tree, n, fn))
            tprefix = os.path.join(ctx.work, "nginx-tmpfs")
            tconf = nginx_conf(tprefix, tree, ca_names, 18443)
            btimes = []
            for label, root in (("serve", d.smnt), ("main", d.mnt)):
                log("4. nginx -t, %s" % label)
                run_guarded(ctx, s4, bench_nginx, ctx, s4, root, ca_names, label, tconf,
                            tprefix, a.nginx_runs, btimes)
        s4.note("each mount run alternates with a tmpfs run (same files copied to /dev/shm); "
                "one warm-up run each first; the target is for the serving mount")
    except SkipGroup:
        pass
    except Exception as e:  # noqa: BLE001
        log("store C (1,000): %s" % e)
        for s in (s4, s6):
            s.note("FAILED: %s" % e)
    if "memory" not in a.groups:
        return

    try:
        rest = all_names[a.ca_domains:]
        if rest:
            with Daemon(ctx, storeC, mntC) as d:
                log("growing store C to %d domains" % a.domains)
                t0 = time.monotonic()
                make_domains(mntC, rest)
                wait_local(d, all_names, max(300, len(rest) * 0.2))
                t = time.monotonic() - t0
                s7.note("setting up: %s more domains issued through the mount in %.1f s "
                        "(%.0f certificates/s)" % ("{:,}".format(len(rest)), t, len(rest) / t))
    except Exception as e:  # noqa: BLE001
        log("store C (%d): %s" % (a.domains, e))
        for s in (s3, s7):
            s.note("FAILED: %s" % e)
        return
    tree = os.path.join(ctx.shm, "tree")
    try:
        log("7. start-up")
        with Daemon(ctx, storeC, mntC, wait=False) as d:
            bench_startup(ctx, s7, d, a.domains, "main + serve")
            d.wait_mounted()
            for n in all_names[:: max(1, len(all_names) // 20)]:
                verify_pair(ctx, d.smnt, n)
            # the serving mount first (what servers read), then the main mount
            # on the same daemon: RSS is the daemon's, after both
            for label, root in (("serve", d.smnt), ("main", d.mnt)):
                log("7. reading every file, %s" % label)
                bench_readall(ctx, s7, d, root, label, None if os.path.exists(tree) else tree)
            for label, root in (("serve", d.smnt), ("main", d.mnt)):
                log("3. ls -l and scan, %s" % label)
                run_guarded(ctx, s3, bench_ls, ctx, s3, root, label, tree, a.domains)
    except Exception as e:  # noqa: BLE001
        log("store C (%d): %s" % (a.domains, e))
        for s in (s3, s7):
            s.note("FAILED: %s" % e)
    s7.note("one daemon serving both mounts; every file read through the serving mount, "
            "then through the main mount; RSS is the daemon's VmRSS after each")
    s3.note("baseline: every readable file of every domain copied to /dev/shm "
            "(and the root's files); ls runs with LC_ALL=C")


def print_report(ctx):
    print("certfs benchmarks (%s, %d CPUs, kernel %s)" % (
        time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), os.uname().release))
    for num in sorted(ctx.sections):
        print(ctx.sections[num].render())
    print("\n== Summary ==")
    targets = [t for n in sorted(ctx.sections) for t in ctx.sections[n].targets]
    if targets:
        w = max(len(t[0]) for t in targets)
        wm = max(len(t[1]) for t in targets)
        wt = max(len(t[2]) for t in targets)
        for label, measured, target, met in targets:
            verdict = "" if met is None else ("met" if met else "MISSED")
            print(("  %-*s  %-*s  %-*s  %s" % (w, label, wm, measured, wt, target,
                                               verdict)).rstrip())
        judged = [t for t in targets if t[3] is not None]
        print("  targets met: %d of %d" % (sum(1 for t in judged if t[3]), len(judged)))
    if ctx.problems:
        print("\n== Problems seen ==")
        for p in ctx.problems:
            print("  - " + p)
    else:
        print("  no daemon problems seen")
    print("  total time %.0f s" % (time.monotonic() - T0))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
