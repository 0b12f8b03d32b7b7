"""The secret-ferry benchmark (issue 9): one command, one table, secret-ferry next to a naive baseline.

usage: python bench/run.py [--binary PATH] [--sizes 10,100,1000,10000] [--value-bytes 200,4096]
                           [--soak SECONDS] [--smoke] [--out bench/results/run-DATE]

Writes OUT.json (every raw figure) and OUT.md (the table, with the machine and settings) and prints
the table. Without --binary it builds the release binary first (`cargo build --release` into
$HOME/.cache/secret-ferry/target-release). Not a test: a figure outside its target is reported,
never fatal. The exit status is 1 only if a figure could not be measured (the harness is broken).
--smoke: N = 10, 200-byte values, windows of a few seconds, no Kubernetes figure; for CI, to keep
the harness working. Its figures are not worth reading (on a debug binary many targets read "no"),
so instead of the table it prints one line, `smoke: every figure measured (N figures)`, and writes
nothing unless --out is given (the table and the JSON are still built, so that they keep working).
It exits 1, listing them, if a figure could not be measured; it leaves nothing behind in /tmp.

Everything runs on loopback against moto (the AWS stand-in):

- Stacks: one moto server + counting proxy (bench/counting_proxy.py) per value size, holding a
  cross-account role (account 111111111111, trust policy requiring an ExternalId) and, for each
  N, N JSON secrets of that size under `n{N}/`; and a small moto (a handful of secrets) for the
  latency figures. moto finds a secret by scanning all of them, so a moto holding 11,110 secrets
  answers slower; keeping latency figures on a small moto keeps that out of them.
- moto floor: raw HTTP GetSecretValue and AssumeRole on a keep-alive connection, straight to moto
  and through the counting proxy (median and p99 of --floor-samples calls after 5 warm-ups).
- Binary: os.path.getsize, and whether the ELF has symbol or debug sections.
- Start → first file: `run --once`, 1 secret, direct to the small moto; the file is polled every
  0.5 ms; median of k runs; compared with moto's floor (AssumeRole + GetSecretValue medians).
- Start → all files: `run --once` with N secrets, until it exits 0 (every file checked after).
- Calls per poll and CPU per strategy (first value size only: calls do not depend on it): a daemon
  per N and strategy (batch, list, get; get up to --max-get) at refreshInterval 1h; after /readyz,
  --polls polls started with POST /refresh, each counted at the proxy until the expected calls
  arrived and 0.3 s passed quietly; utime+stime (ns resolution) over those polls ÷ (polls × N).
- Soak: a daemon per N and value size (auto strategy, i.e. batch; the role at its defaults) at
  --soak-interval, each behind its own counting proxy; a daemon per N whose role credentials
  (15 min) are refreshed every --credential-period seconds, so that the window sees refreshes; an
  idle daemon (1 secret at 1h); the baseline. All start one after the other; once all are ready a
  common window of --soak seconds runs. RSS (VmRSS / VmHWM) at readiness and at the end; CPU
  (utime+stime at ns resolution, see common.CpuMeter) over the window ÷ (polls × N), polls counted
  at the proxy; AssumeRole calls per hour (window) and per credential lifetime (since the start).
- Rotation → disk: 10 secrets at refreshInterval 1s on the small moto; each of --rotations
  PutSecretValue calls comes after a random 0–1 s pause (so rotations land anywhere in the poll
  cycle) and is timed until the new bytes are in the file (polled every 2 ms).
- Kubernetes: `cargo test --test it kube_bench::controller_rss -- --ignored --nocapture` with the binary
  under test (1,000 Kubernetes Secrets against the in-repo API emulator), its JSON line parsed.
- Baseline (bench/baseline.py, per fetch a fresh AssumeRole, a client, GetSecretValue and a file
  write) at N = --baseline-secrets: the same first-file, all-files, soak and rotation runs, measured
  the same way; ratios are daemon ÷ baseline at the same N.
"""
import argparse
import http.client
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.parse
import urllib.request

try:
    import boto3  # noqa: F401
except ImportError:
    # Run from a plain `python`: switch to the bench/test virtualenv, which has boto3 and moto.
    VENV_PY = os.path.expanduser("~/.cache/secret-ferry-venv/bin/python")
    if os.path.exists(VENV_PY) and os.path.realpath(sys.executable) != os.path.realpath(VENV_PY):
        os.execv(VENV_PY, [VENV_PY] + sys.argv)
    raise SystemExit("boto3 is missing: run `. scripts/venv.sh; ensure_venv_only moto boto3` and use ~/.cache/secret-ferry-venv/bin/python")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import (EXTERNAL_ID, HERE, REGION, ROOT, CpuMeter, Stack, admin_client, admin_credentials,  # noqa: E402
                    create_role, create_secrets, daemon_env, elf_stripped, env_for, log, machine, moto_server, percentile,
                    secret_value, start_daemon, status_kib, stop, summary_ms, tail, wait_http, write_baseline_config,
                    write_daemon_config, write_external_id)

# Secrets Manager operation each strategy polls with, and how many secrets one call covers.
# GET /metrics per measured daemon, for the scrape figures.
SCRAPES = 20
OPERATION = {"batch": "BatchGetSecretValue", "list": "ListSecrets", "get": "GetSecretValue"}
PER_CALL = {"batch": 20, "list": 100, "get": 1}
ABBREV = {"BatchGetSecretValue": "BGSV", "ListSecrets": "LS", "GetSecretValue": "GSV", "AssumeRole": "AR"}
BILLABLE = ("BatchGetSecretValue", "ListSecrets", "GetSecretValue")  # STS calls are free
RATE = 1000  # apiRateLimit for every daemon: high enough that the budget does not pace the figures
MIB = 1024


class Unmeasured(Exception):
    """A figure that is not in the results: `failed` (an error: the harness is broken) or skipped."""

    def __init__(self, reason, failed=True):
        super().__init__(reason)
        self.reason, self.failed = reason, failed


def poll_until(cond, timeout, step, what, proc=None, log_path=None):
    deadline = time.perf_counter() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {what}: {tail(log_path) if log_path else ''}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="secret-ferry-bench-")
        self.ext = write_external_id(self.work)
        self.r = {}
        self.failures = []
        self.stacks = {}
        self.small = None

    # -- bookkeeping --------------------------------------------------------------------------

    def attempt(self, path, fn, *args):
        """Runs one measurement; stores its result (or the error) at `path` in the results."""
        node = self.r
        for k in path[:-1]:
            node = node.setdefault(k, {})
        try:
            node[path[-1]] = fn(*args)
        except Exception as e:  # one broken figure must not lose the others
            msg = f"{type(e).__name__}: {e}"
            log(f"FAILED {'/'.join(path)}: {msg}")
            node[path[-1]] = {"error": msg}
            self.failures.append({"figure": "/".join(path), "error": msg})
        return node[path[-1]]

    def skip(self, path, reason):
        node = self.r
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = {"skipped": reason}

    def get(self, *path):
        """The figure at `path`, or Unmeasured saying why it is not there."""
        node = self.r
        for k in path + (None,):
            if isinstance(node, dict) and "error" in node:
                raise Unmeasured(f"failed: {node['error']}")
            if isinstance(node, dict) and "skipped" in node:
                raise Unmeasured(f"skipped: {node['skipped']}", failed=False)
            if k is None:
                return node
            if not isinstance(node, dict) or k not in node:
                raise Unmeasured("not measured: " + "/".join(map(str, path)))
            node = node[k]

    def logfile(self, name):
        return os.path.join(self.work, f"{name}.log")

    # -- setup --------------------------------------------------------------------------------

    def setup(self):
        a = self.a
        self.small = Stack("small")
        for size in a.value_bytes:
            self.stacks[size] = Stack(f"{size}B")
        for s in [self.small] + list(self.stacks.values()):
            s.wait()

        def fill_small():
            s = self.small
            s.role_arn = create_role(s.moto)
            sm = admin_client(s.moto)
            create_secrets(sm, "first/", 1, 200)
            create_secrets(sm, "rot/daemon/", 10, 200)
            create_secrets(sm, "rot/baseline/", 10, 200)

        def fill(size):
            s = self.stacks[size]
            s.role_arn = create_role(s.moto)
            sm = admin_client(s.moto)
            for n in a.sizes:
                t0 = time.time()
                create_secrets(sm, f"n{n}/", n, size)
                log(f"created {n:,} secrets of {size:,} B in {time.time() - t0:.1f} s")

        # One thread per moto: each server takes its creates one at a time, the servers in parallel.
        errors = []

        def guarded(fn, *args):
            try:
                fn(*args)
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=guarded, args=(fill_small,))]
        threads += [threading.Thread(target=guarded, args=(fill, size)) for size in a.value_bytes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def close(self):
        for s in [self.small] + list(self.stacks.values()):
            if s:
                s.close()
        shutil.rmtree(self.work, ignore_errors=True)

    # -- configs ------------------------------------------------------------------------------

    def daemon_config(self, name, stack, prefix, n, interval, **kw):
        out = os.path.join(self.work, "out", name)
        shutil.rmtree(out, ignore_errors=True)
        secrets = [(f"s{i}", f"{prefix}s{i}", os.path.join(out, f"s{i}")) for i in range(n)]
        cfg = write_daemon_config(os.path.join(self.work, f"{name}.yaml"), stack.role_arn, self.ext, secrets,
                                  interval, rate=RATE, **kw)
        return cfg, [os.path.join(d, "password") for _, _, d in secrets]

    def baseline_config(self, name, stack, prefix, n, interval_s):
        out = os.path.join(self.work, "out", name)
        shutil.rmtree(out, ignore_errors=True)
        secrets = [(f"{prefix}s{i}", os.path.join(out, f"s{i}.json")) for i in range(n)]
        cfg = write_baseline_config(os.path.join(self.work, f"{name}.json"), stack.role_arn, self.ext, secrets, interval_s)
        return cfg, [p for _, p in secrets]

    def baseline_cmd(self, cfg, once=False):
        return [sys.executable, os.path.join(HERE, "baseline.py"), "--config", cfg] + (["--once"] if once else [])

    # -- figures ------------------------------------------------------------------------------

    def moto_floor(self, stack, samples, secret_id="first/s0", ops=("GetSecretValue", "AssumeRole"),
                   vias=("direct", "proxy")):
        """Raw HTTP on one keep-alive connection: what moto (and the proxy) cost per call, with no SDK."""
        creds = admin_credentials(stack.moto)
        amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        # moto does not check signatures; it reads the access key (hence the account) from the header.
        auth = "AWS4-HMAC-SHA256 Credential={}/{}/" + REGION + "/{}/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
        requests = {
            "GetSecretValue": (json.dumps({"SecretId": secret_id}), {
                "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "secretsmanager.GetSecretValue",
                "X-Amz-Date": amz, "X-Amz-Security-Token": creds["SessionToken"],
                "Authorization": auth.format(creds["AccessKeyId"], amz[:8], "secretsmanager")}),
            "AssumeRole": (urllib.parse.urlencode({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": stack.role_arn,
                                                   "RoleSessionName": "floor", "ExternalId": EXTERNAL_ID}), {
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "X-Amz-Date": amz,
                "Authorization": auth.format("testing", amz[:8], "sts")}),
        }
        ports = {"direct": stack.moto_port, "proxy": stack.counter.port}
        out = {}
        for op in ops:
            body, headers = requests[op]
            out[op] = {}
            for via in vias:
                conn = http.client.HTTPConnection("127.0.0.1", ports[via], timeout=30)
                took = []
                for k in range(samples + 5):
                    t0 = time.perf_counter()
                    conn.request("POST", "/", body=body, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{op} answered {resp.status}")
                    if k >= 5:
                        took.append((time.perf_counter() - t0) * 1000)
                conn.close()
                out[op][via] = summary_ms(took)
        return out

    def loaded_floor(self, size, samples):
        """GetSecretValue straight to the moto holding a size's secrets (moto scans them per lookup)."""
        # The lookup time grows with the secret's position in moto's store: take one in the middle.
        n = self.a.sizes[-1]
        out = self.moto_floor(self.stacks[size], samples, f"n{n}/s{n // 2}", ops=("GetSecretValue",), vias=("direct",))
        return dict(out["GetSecretValue"]["direct"], secrets_in_moto=sum(self.a.sizes))

    def binary_figures(self):
        return {"path": self.a.binary, "bytes": os.path.getsize(self.a.binary), "stripped": elf_stripped(self.a.binary)}

    def first_file(self, who, runs):
        """Start → the first file, 1 secret, --once, direct to the small moto."""
        took = []
        for k in range(runs):
            if who == "daemon":
                cfg, paths = self.daemon_config("first-daemon", self.small, "first/", 1, "1h")
                cmd = [self.a.binary, "run", "--once", "--config", cfg]
            else:
                cfg, paths = self.baseline_config("first-baseline", self.small, "first/", 1, 3600)
                cmd = self.baseline_cmd(cfg, once=True)
            err = self.logfile(f"first-{who}-{k}")
            with open(err, "w") as ef:
                t0 = time.perf_counter()
                env = daemon_env(self.small.moto) if who == "daemon" else env_for(self.small.moto)
                p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=ef)
                try:
                    poll_until(lambda: os.path.exists(paths[0]), 60, 0.0005, "the first file", p, err)
                    took.append((time.perf_counter() - t0) * 1000)
                    if p.wait(timeout=60) != 0:
                        raise RuntimeError(f"--once exited {p.returncode}: {tail(err)}")
                finally:
                    stop(p)
        return summary_ms(took)

    def all_files(self, who, size, n, runs):
        """Start → all N files, --once: until the process exits 0; then every file is checked."""
        stack = self.stacks[size]
        took = []
        for k in range(runs):
            name = f"all-{who}-{size}-{n}"
            if who == "daemon":
                cfg, paths = self.daemon_config(name, stack, f"n{n}/", n, "1h")
                cmd = [self.a.binary, "run", "--once", "--config", cfg]
            else:
                cfg, paths = self.baseline_config(name, stack, f"n{n}/", n, 3600)
                cmd = self.baseline_cmd(cfg, once=True)
            err = self.logfile(name)
            with open(err, "w") as ef:
                t0 = time.perf_counter()
                env = daemon_env(stack.moto) if who == "daemon" else env_for(stack.moto)
                p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=ef)
                try:
                    rc = p.wait(timeout=self.a.timeout)
                except subprocess.TimeoutExpired:
                    stop(p)
                    raise RuntimeError(f"--once still running after {self.a.timeout} s")
                took.append(time.perf_counter() - t0)
            missing = sum(not os.path.exists(x) for x in paths)
            if rc != 0 or missing:
                raise RuntimeError(f"--once exited {rc} with {missing} of {n} files missing: {tail(err)}")
        return {"runs": len(took), "median_s": round(statistics.median(took), 3), "min_s": round(min(took), 3),
                "max_s": round(max(took), 3), "secrets": n, "value_bytes": size}

    def strategy_polls(self, size, n, strategy, polls):
        """Calls per poll by operation, CPU per secret per poll, for one fetch strategy."""
        stack = self.stacks[size]
        name = f"polls-{strategy}-{size}-{n}"
        cfg, _ = self.daemon_config(name, stack, f"n{n}/", n, "1h", strategy=strategy)
        err = self.logfile(name)
        with open(err, "w") as ef:
            t0 = time.time()
            p, admin = start_daemon(self.a.binary, cfg, stack.proxy, stderr=ef)
        try:
            wait_http(f"{admin}/readyz", timeout=self.a.timeout, proc=p, log_path=err)
            out = {"secrets": n, "value_bytes": size, "strategy": strategy, "first_sync_s": round(time.time() - t0, 2),
                   "rss_kib_after_first_sync": status_kib(p.pid, "VmRSS")}
            op, expected = OPERATION[strategy], math.ceil(n / PER_CALL[strategy])
            stack.counter.reset()
            meter, w0 = CpuMeter(p.pid), time.time()
            for _ in range(polls):
                before = stack.counter.counts().get(op, 0)
                urllib.request.urlopen(urllib.request.Request(f"{admin}/refresh", method="POST"), timeout=30).read()
                self.wait_calls(stack, op, before + expected, p)
            cpu = meter.stop()
            calls = stack.counter.counts()
            out.update(polls=polls, window_s=round(time.time() - w0, 2), calls=calls,
                       calls_per_poll={k: round(v / polls, 2) for k, v in sorted(calls.items())},
                       cpu_s=round(cpu["cpu_s"], 4), cpu_s_ticks=cpu["cpu_s_ticks"],
                       cpu_us_per_secret_per_poll=round(cpu["cpu_s"] / polls / n * 1e6, 2),
                       rss_kib_end=status_kib(p.pid, "VmRSS"), hwm_kib=status_kib(p.pid, "VmHWM"))
            out.update(self.scrapes(p, admin))
            return out
        finally:
            stop(p)

    def scrapes(self, p, admin, count=SCRAPES):
        """One /metrics answer's size, the daemon's CPU per scrape over `count` sequential scrapes,
        and how far its peak RSS rose above its RSS over them and over 10 scrapes at once (the peak is
        reset first through /proc/PID/clear_refs, so an earlier peak, the first sync's, hides nothing)."""
        with open(f"/proc/{p.pid}/clear_refs", "w") as f:
            f.write("5")
        hwm0 = status_kib(p.pid, "VmRSS")
        meter = CpuMeter(p.pid)
        sizes = [len(urllib.request.urlopen(f"{admin}/metrics", timeout=30).read()) for _ in range(count)]
        cpu = meter.stop()
        threads = [threading.Thread(target=lambda: urllib.request.urlopen(f"{admin}/metrics", timeout=30).read())
                   for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"scrape_bytes": max(sizes), "scrape_cpu_ms": round(cpu["cpu_s"] / count * 1e3, 3),
                "scrape_hwm_growth_kib": status_kib(p.pid, "VmHWM") - hwm0}

    def wait_calls(self, stack, op, expected, proc):
        """Until the proxy has seen `expected` calls of `op`, then until 0.3 s pass with no call at all."""
        poll_until(lambda: stack.counter.counts().get(op, 0) >= expected, self.a.timeout, 0.02,
                   f"{expected} {op} calls", proc)
        last = stack.counter.counts()
        while True:
            time.sleep(0.3)
            now = stack.counter.counts()
            if now == last:
                return
            last = now

    def soak(self):
        """Daemons (each N and size), an idle daemon and the baseline, side by side for one window."""
        a = self.a
        refresh_before = f"{15 * 60 - a.credential_period}s"
        started = []  # (results path, subject) of every process started

        def daemon(size, n, sts=False):
            """The role at its defaults (1 h credentials) for memory and CPU; with `sts`, credentials
            refreshed every --credential-period seconds, to count AssumeRole calls per lifetime."""
            stack = self.stacks[size]
            proxy = stack.new_proxy()  # its own proxy: counts this daemon alone
            name = f"soak-{'sts' if sts else size}-{n}"
            creds = {"duration": "15m", "refresh_before": refresh_before} if sts else {}
            cfg, _ = self.daemon_config(name, stack, f"n{n}/", n, f"{a.soak_interval}s", **creds)
            return self.subject(name, proxy, lambda ef: start_daemon(a.binary, cfg, proxy.url, stderr=ef))

        def idle():
            cfg, _ = self.daemon_config("soak-idle", self.small, "first/", 1, "1h")
            return self.subject("soak-idle", None, lambda ef: start_daemon(a.binary, cfg, self.small.moto, stderr=ef))

        def baseline(size):
            stack = self.stacks[size]
            proxy = stack.new_proxy()
            cfg, paths = self.baseline_config(f"soak-baseline-{size}", stack, f"n{a.baseline_secrets}/",
                                              a.baseline_secrets, a.soak_interval)

            def start(ef):
                p = subprocess.Popen(self.baseline_cmd(cfg), env=env_for(proxy.url), stdout=subprocess.DEVNULL, stderr=ef)
                return p, None
            return self.subject(f"soak-baseline-{size}", proxy, start, paths)

        plan = [(("soak", "daemon", str(size), str(n)), "daemon", size, n, lambda size=size, n=n: daemon(size, n))
                for size in a.value_bytes for n in a.sizes]
        plan += [(("soak", "sts", str(n)), "sts", a.value_bytes[0], n, lambda n=n: daemon(a.value_bytes[0], n, sts=True))
                 for n in a.sizes]
        plan += [(("soak", "baseline", str(size)), "baseline", size, a.baseline_secrets, lambda size=size: baseline(size))
                 for size in a.value_bytes]
        plan.append((("soak", "idle"), "idle", 200, 1, idle))
        # One after the other: a first sync of 10,000 secrets should not compete with another.
        for path, kind, size, n, make in plan:
            def up(path=path, make=make, kind=kind, size=size, n=n):
                subj = make()
                subj.kind, subj.size, subj.n = kind, size, n
                started.append((path, subj))
                subj.wait_ready(a.timeout)
                log(f"soak: {'/'.join(path[1:])} ready in {subj.ready_s} s")
                return None
            self.attempt(path, up)
        live = [(path, s) for path, s in started if s.ready_s is not None]
        log(f"soak: {len(live)} processes ready; common window of {a.soak:.0f} s")
        for _, s in live:
            s.meter = CpuMeter(s.proc.pid, period=0.5)
            s.counts0 = s.proxy.counts() if s.proxy else {}
        w0 = time.time()
        time.sleep(a.soak)
        window = time.time() - w0
        for path, s in live:
            self.attempt(path, self.soak_figures, s, window)
        for _, s in started:
            s.close()

    def subject(self, name, proxy, start, paths=None):
        """A process of the soak: `start(stderr file)` → (process, admin URL or None). Ready when its
        /readyz answers 200 or, for the baseline, when all its files exist."""
        err = self.logfile(name)
        ef = open(err, "w")
        t0 = time.time()
        proc, admin = start(ef)
        s = types.SimpleNamespace(proc=proc, proxy=proxy, log=err, started=t0, ready_s=None)

        def wait_ready(timeout):
            if admin:
                wait_http(f"{admin}/readyz", timeout=timeout, proc=proc, log_path=err)
            else:
                poll_until(lambda: all(os.path.exists(x) for x in paths), timeout, 0.05, "the first pass", proc, err)
            s.ready_s = round(time.time() - t0, 2)
            s.rss_ready, s.hwm_ready = status_kib(proc.pid, "VmRSS"), status_kib(proc.pid, "VmHWM")
            # RSS counts the binary's and libc's clean code pages too (shared, evictable);
            # RssAnon is the memory the process itself allocated.
            s.anon_ready = status_kib(proc.pid, "RssAnon")

        def close():
            stop(proc)
            ef.close()
        s.wait_ready, s.close = wait_ready, close
        return s

    def soak_figures(self, s, window):
        a = self.a
        meter = s.meter.stop()
        cpu = meter["cpu_s"]
        if s.proc.poll() is not None:
            raise RuntimeError(f"exited with {s.proc.returncode} during the window: {tail(s.log)}")
        out = {"secrets": s.n, "value_bytes": s.size, "ready_s": s.ready_s, "window_s": round(window, 1),
               "rss_kib_ready": s.rss_ready, "hwm_kib_ready": s.hwm_ready, "anon_kib_ready": s.anon_ready,
               "anon_kib_end": status_kib(s.proc.pid, "RssAnon"),
               "rss_kib_end": status_kib(s.proc.pid, "VmRSS"), "hwm_kib_end": status_kib(s.proc.pid, "VmHWM"),
               "cpu_s": round(cpu, 4), "cpu_s_ticks": meter["cpu_s_ticks"]}
        if not s.proxy:
            return out
        total = s.proxy.counts()
        calls = {k: v - s.counts0.get(k, 0) for k, v in total.items()}
        out.update(calls_in_window=calls, calls_since_start=total,
                   assume_role_per_hour=round(calls.get("AssumeRole", 0) * 3600 / window, 1))
        if s.kind == "sts":
            # Calls per credential: AssumeRole calls grouped into lifetimes, a call less than half a
            # refresh period after the previous one belonging to the same lifetime. Exactly one call
            # per lifetime gives 1.00, whatever the window's edges cut; a call per secret or a
            # duplicate refresh shows as more.
            times = s.proxy.times("AssumeRole")
            gaps = [t1 - t0 for t0, t1 in zip(times, times[1:])]
            lifetimes = 1 + sum(g >= a.credential_period / 2 for g in gaps) if times else 0
            if not lifetimes:
                raise RuntimeError("no AssumeRole call since the start")
            out.update(credential_period_s=a.credential_period, assume_role_since_start=len(times),
                       credential_lifetimes=lifetimes, assume_role_per_credential=round(len(times) / lifetimes, 2),
                       assume_role_gap_s=({"min": round(min(gaps), 2), "median": round(statistics.median(gaps), 2),
                                           "max": round(max(gaps), 2)} if gaps else None))
        if s.kind in ("daemon", "sts"):
            billable = {k: v for k, v in calls.items() if k in BILLABLE and v}
            if not billable:
                raise RuntimeError(f"no Secrets Manager call in the {window:.0f} s window")
            op = max(billable, key=billable.get)
            strategy = {v: k for k, v in OPERATION.items()}[op]
            polls = billable[op] / math.ceil(s.n / PER_CALL[strategy])
            out["strategy_seen"] = strategy
        else:
            # The baseline: one GetSecretValue per secret per pass.
            polls = calls.get("GetSecretValue", 0) / s.n
            if not polls:
                raise RuntimeError(f"no GetSecretValue in the {window:.0f} s window")
        out["polls"] = round(polls, 2)
        out["cpu_us_per_secret_per_poll"] = round(cpu / (polls * s.n) * 1e6, 2)
        out["calls_per_poll_per_1000"] = {k: round(v / polls * 1000 / s.n, 1) for k, v in sorted(calls.items())}
        return out

    def rotation(self, who, samples):
        """PutSecretValue → the new bytes in the file, 10 secrets at refreshInterval 1s."""
        n, stack = 10, self.small
        err = self.logfile(f"rotation-{who}")
        ef = open(err, "w")
        if who == "daemon":
            cfg, paths = self.daemon_config("rotation-daemon", stack, "rot/daemon/", n, "1s")
            p, admin = start_daemon(self.a.binary, cfg, stack.moto, stderr=ef)
            ready = lambda: wait_http(f"{admin}/readyz", timeout=60, proc=p, log_path=err)  # noqa: E731
            arrived = lambda path, marker: _read(path) == marker  # noqa: E731
        else:
            cfg, paths = self.baseline_config("rotation-baseline", stack, "rot/baseline/", n, 1)
            p = subprocess.Popen(self.baseline_cmd(cfg), env=env_for(stack.moto), stdout=subprocess.DEVNULL, stderr=ef)
            ready = lambda: poll_until(lambda: all(os.path.exists(x) for x in paths), 60, 0.05, "first pass", p, err)  # noqa: E731
            arrived = lambda path, marker: marker in (_read(path) or "")  # noqa: E731
        try:
            ready()
            sm = admin_client(stack.moto)
            prefix = f"rot/{who}/"
            took, late = [], 0
            rng = random.Random(9)
            for k in range(samples):
                i = k % n
                time.sleep(rng.uniform(0, 1.0))
                marker = f"rotated-{k}-{time.time_ns()}"
                sm.put_secret_value(SecretId=f"{prefix}s{i}", SecretString=secret_value(i, 200, password=marker))
                t0 = time.perf_counter()
                while not arrived(paths[i], marker):
                    if time.perf_counter() - t0 > 10:
                        late += 1
                        break
                    if p.poll() is not None:
                        raise RuntimeError(f"exited with {p.returncode}: {tail(err)}")
                    time.sleep(0.002)
                else:
                    took.append((time.perf_counter() - t0) * 1000)
            if late:
                raise RuntimeError(f"{late} of {samples} rotations not on disk within 10 s")
            return dict(summary_ms(took), interval_s=1, secrets=n, p50_ms=round(statistics.median(took), 1),
                        p99_ms=round(percentile(took, 99), 1))
        finally:
            stop(p)
            ef.close()

    def kubernetes(self):
        """tests/it/kube_bench.rs controller_rss, with the binary under test; its JSON line."""
        env = dict(os.environ, SECRET_FERRY_BIN=os.path.abspath(self.a.binary),
                   CARGO_TARGET_DIR=os.path.expanduser("~/.cache/secret-ferry/target"))
        env.setdefault("MOTO_SERVER", moto_server())
        cmd = ["cargo", "test", "--test", "it", "kube_bench::controller_rss", "--", "--ignored", "--nocapture"]
        log("kubernetes: " + " ".join(cmd))
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=self.a.kube_timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"cargo test did not finish in {self.a.kube_timeout} s")
        for line in done.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    figures = json.loads(line)
                except ValueError:
                    continue
                if "kube_requests_per_unchanged_poll" in figures:
                    figures["test_exit_status"] = done.returncode
                    return figures
        last = " | ".join((done.stderr + done.stdout).strip().splitlines()[-6:])[-800:]
        raise RuntimeError(f"no JSON figures in the output of cargo test (exit {done.returncode}): {last}")


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


# -- the table ------------------------------------------------------------------------------------

def mib(kib):
    return f"{kib / MIB:.1f}"


def num(x, digits=1):
    """1234.5 → '1,234.5'; integers without decimals."""
    if isinstance(x, int) or float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.{digits}f}"


def by_op(calls):
    """{'BatchGetSecretValue': 50.0} → 'BGSV 50'."""
    return ", ".join(f"{ABBREV.get(k, k)} {num(v)}" for k, v in sorted(calls.items()) if v) or "none"


def billable(calls):
    return sum(v for k, v in calls.items() if k in BILLABLE)


class Table:
    """Rows of: figure, a cell per column, target, meets?, how measured. A cell is computed by a
    function; if the figure is not in the results it reads 'n/a (why)', and a failed one is counted."""

    def __init__(self, bench):
        self.b = bench
        self.a = bench.a
        self.rows = []
        self.unmeasured = []
        self.measured = 0  # cells that hold a figure
        self.skipped = 0  # cells left out on purpose (e.g. the Kubernetes figure in smoke mode)

    def cell(self, fn):
        try:
            value = fn()
        except Unmeasured as e:
            if e.failed:
                self.unmeasured.append(e.reason)
            else:
                self.skipped += 1
            return f"n/a ({_short(e.reason)})"
        self.measured += 1
        return value

    def add(self, figure, how, single=None, per_n=None, baseline=None, ratio=None, target="—", meets=None):
        row = {"figure": figure, "single": self.cell(single) if single else "",
               "per_n": {n: (self.cell(lambda n=n: per_n(n)) if per_n else "") for n in self.a.sizes},
               "baseline": self.cell(baseline) if baseline else "—",
               "ratio": self.cell(ratio) if ratio else "—", "target": target,
               "meets": _judge(meets) if meets else "—", "how": how}
        self.rows.append(row)

    def markdown(self):
        a = self.a
        head = (["figure", "single"] + [f"N={n:,}" for n in a.sizes] +
                [f"baseline (N={a.baseline_secrets:,})", "daemon:baseline", "target", "meets?", "how measured"])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = ([r["figure"], r["single"]] + [r["per_n"][n] for n in a.sizes] +
                     [r["baseline"], r["ratio"], r["target"], r["meets"], r["how"]])
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        return "\n".join(lines)


def _short(reason):
    return reason if len(reason) <= 140 else reason[:137] + "..."


def _judge(fn):
    """`fn` returns (ok, detail) pairs; 'yes' if all ok, 'no (details)', or 'n/a (why)'."""
    try:
        checks = fn()
    except Unmeasured as e:
        return f"n/a ({_short(e.reason)})"
    if not checks:
        return "n/a (no figure at a target N)"
    bad = [d for ok, d in checks if not ok]
    return "yes" if not bad else "no (" + "; ".join(bad) + ")"


def build_table(b):
    a, g, t = b.a, b.get, Table(b)
    nb = a.baseline_secrets
    first_size = a.value_bytes[0]
    size_label = {s: (f"{s // 1024} KiB" if s % 1024 == 0 else f"{s} B") for s in a.value_bytes}
    soak_how = (f"window {a.soak:.0f} s at refreshInterval {a.soak_interval}s (polls: {_polls_range(b)}), "
                f"after every process below was ready; auto strategy (→ batch); its own counting proxy")

    # Binary
    def binary():
        f = g("binary")
        return f"{f['bytes']:,} B ({f['bytes'] / 1048576:.1f} MiB)"

    def binary_meets():
        f = g("binary")
        if not f["stripped"]:
            raise Unmeasured("not a stripped binary", failed=False)
        return [(f["bytes"] <= 8_000_000, f"{f['bytes']:,} B > 8,000,000")]
    stripped = b.r.get("binary", {}).get("stripped")
    t.add("binary size", f"os.path.getsize of {a.binary}; stripped: {'yes' if stripped else 'no'}",
          single=binary, target="≤ 8 MB (8,000,000 B)", meets=binary_meets)

    # RSS
    def rss(f, end):
        anon = f.get("anon_kib_end" if end else "anon_kib_ready")
        return (f"{mib(f['rss_kib_end' if end else 'rss_kib_ready'])} / {mib(f['hwm_kib_end' if end else 'hwm_kib_ready'])} MiB"
                + (f" (anon {mib(anon)})" if anon is not None else ""))

    t.add("RSS idle (VmRSS / VmHWM; RssAnon)",
          f"1 secret ({size_label.get(200, '200 B')}) synced, then the {a.soak:.0f} s soak window with nothing due (refreshInterval 1h)",
          single=lambda: rss(g("soak", "idle"), True), target="≤ 6 MiB (VmRSS)",
          meets=lambda: [(g("soak", "idle")["rss_kib_end"] <= 6 * MIB, f"{mib(g('soak', 'idle')['rss_kib_end'])} > 6 MiB")])

    def rss_meets(size, end):
        key = "rss_kib_end" if end else "rss_kib_ready"
        checks = []
        for n, limit in ((100, 7), (10000, 16)):
            if n in a.sizes:
                v = g("soak", "daemon", str(size), str(n))[key]
                checks.append((v <= limit * MIB, f"N={n:,}: {mib(v)} > {limit} MiB"))
        return checks

    for end in (False, True):
        for size in a.value_bytes:
            label = "RSS after the first sync" if not end else f"RSS after {a.soak:.0f} s of polling"
            t.add(f"{label} (VmRSS / VmHWM; RssAnon), {size_label[size]} values",
                  ("at /readyz 200 (baseline: once its first pass wrote every file)" if not end else soak_how),
                  per_n=lambda n, size=size, end=end: rss(g("soak", "daemon", str(size), str(n)), end),
                  baseline=lambda size=size, end=end: rss(g("soak", "baseline", str(size)), end),
                  ratio=lambda size=size, end=end: _ratio(
                      g("soak", "daemon", str(size), str(nb))["rss_kib_end" if end else "rss_kib_ready"],
                      g("soak", "baseline", str(size))["rss_kib_end" if end else "rss_kib_ready"]),
                  target="≤ 7 MiB at N=100, ≤ 16 MiB at N=10,000 (VmRSS)",
                  meets=lambda size=size, end=end: rss_meets(size, end))

    # Start → first file
    def floor_ms():
        return (g("moto_floor", "small", "AssumeRole", "direct")["median_ms"] +
                g("moto_floor", "small", "GetSecretValue", "direct")["median_ms"])

    def first():
        f = g("first_file", "daemon")
        return (f"{f['median_ms']:.1f} ms ({f['min_ms']:.1f}–{f['max_ms']:.1f}); "
                f"{f['median_ms'] - floor_ms():+.1f} ms over moto's floor")
    t.add("start → first file on disk, 1 secret, `--once`",
          f"median (min–max) of {a.first_runs} runs, file polled every 0.5 ms, small moto, no proxy; "
          "moto's floor = AssumeRole + GetSecretValue raw-HTTP medians (rows below)",
          single=first,
          baseline=lambda: f"{g('first_file', 'baseline')['median_ms']:.1f} ms",
          ratio=lambda: _ratio(g("first_file", "daemon")["median_ms"], g("first_file", "baseline")["median_ms"]),
          target="≤ 15 ms over moto's floor",
          meets=lambda: [(g("first_file", "daemon")["median_ms"] - floor_ms() <= 15,
                          f"{g('first_file', 'daemon')['median_ms'] - floor_ms():.1f} ms over")])

    for size in a.value_bytes:
        t.add(f"start → all N files on disk, `--once`, {size_label[size]} values",
              f"until `--once` exits 0 (then every file checked); median of {a.all_runs} run(s) for N ≤ 1,000, "
              "1 above; direct to the moto holding the size's secrets",
              per_n=lambda n, size=size: _spread_s(g("all_files", "daemon", str(size), str(n))),
              baseline=lambda size=size: _spread_s(g("all_files", "baseline", str(size))),
              ratio=lambda size=size: _ratio(g("all_files", "daemon", str(size), str(nb))["median_s"],
                                             g("all_files", "baseline", str(size))["median_s"]))

    # Calls per poll per 1,000 unchanged secrets
    def base_calls():
        return g("soak", "baseline", str(first_size))["calls_per_poll_per_1000"]
    targets = {"batch": 50, "list": 10}
    for strategy in a.strategies:
        def per_n(n, strategy=strategy):
            f = g("polls", strategy, str(n))
            per = {k: v * 1000 / n for k, v in f["calls_per_poll"].items()}
            return f"{num(round(billable(per), 1))} ({by_op(per)})"

        def meets(strategy=strategy):
            checks = []
            for n in a.sizes:
                if n >= 1000:
                    f = g("polls", strategy, str(n))
                    v = billable({k: v * 1000 / n for k, v in f["calls_per_poll"].items()})
                    checks.append((v <= targets[strategy], f"N={n:,}: {num(round(v, 1))}"))
            return checks
        t.add(f"AWS calls per poll per 1,000 unchanged secrets, `{strategy}` (billable, by operation)",
              f"{a.polls} polls started with POST /refresh after the first sync ({size_label[first_size]} values), "
              "counted by operation at the proxy, × 1,000 / N; baseline: its soak window (AR = AssumeRole, free)",
              per_n=per_n,
              baseline=lambda: f"{num(billable(base_calls()))} ({by_op(base_calls())})",
              ratio=lambda strategy=strategy: _ratio(
                  billable({k: v * 1000 / nb for k, v in g("polls", strategy, str(nb))["calls_per_poll"].items()}),
                  billable(base_calls())),
              target=f"≤ {targets[strategy]} (at N ≥ 1,000)" if strategy in targets else "—",
              meets=meets if strategy in targets else None)

    # STS
    t.add("STS AssumeRole calls per role per credential",
          f"AssumeRole calls at the proxy from the daemon's start to the end of the soak ÷ credential lifetimes "
          f"(calls less than half a refresh period apart count as one lifetime; gap = time between calls); role "
          f"`duration: 15m`, `refreshBefore` 15m − {a.credential_period} s, i.e. a refresh every "
          f"{a.credential_period} s; a daemon per N ({size_label[first_size]} values) polling at refreshInterval "
          f"{a.soak_interval}s beside the soak daemons, its own proxy",
          per_n=lambda n: _per_credential(g("soak", "sts", str(n))),
          baseline=lambda: (lambda c: f"1 per fetch: AR ÷ GSV = {c.get('AssumeRole', 0) / c['GetSecretValue']:.2f}")(
              g("soak", "baseline", str(first_size))["calls_in_window"]),
          target="exactly 1",
          meets=lambda: [(g("soak", "sts", str(n))["assume_role_per_credential"] == 1,
                          f"N={n:,}: {g('soak', 'sts', str(n))['assume_role_per_credential']:.2f}")
                         for n in a.sizes])
    t.add("STS AssumeRole calls per hour per role",
          f"AssumeRole calls in the {a.soak:.0f} s soak window × 3,600 ÷ window, same daemons (a refresh every "
          f"{a.credential_period} s). At the defaults (1h, 5m) a refresh is due every 55 min: the soak daemons, "
          f"at the defaults, made {_default_ar(b)} AssumeRole calls in the window",
          per_n=lambda n: _per_hour(g("soak", "sts", str(n))["assume_role_per_hour"]),
          baseline=lambda: _per_hour(g("soak", "baseline", str(first_size))["assume_role_per_hour"]),
          ratio=lambda: _ratio(g("soak", "sts", str(nb))["assume_role_per_hour"],
                               g("soak", "baseline", str(first_size))["assume_role_per_hour"]))

    # CPU
    def cpu_meets(get):
        return [(get(n) <= 20, f"N={n:,}: {get(n):.1f} µs") for n in a.sizes]
    for size in a.value_bytes:
        def soak_cpu(n, size=size):
            return g("soak", "daemon", str(size), str(n))["cpu_us_per_secret_per_poll"]
        t.add(f"CPU per unchanged secret per poll, soak, {size_label[size]} values",
              soak_how + "; CPU time (utime+stime, ns resolution: CpuMeter) over the window ÷ (polls × N), polls "
              "counted at the proxy; baseline: ÷ its GetSecretValue calls",
              per_n=lambda n, f=soak_cpu: f"{f(n):.1f} µs",
              baseline=lambda size=size: f"{g('soak', 'baseline', str(size))['cpu_us_per_secret_per_poll']:,.0f} µs",
              ratio=lambda size=size, f=soak_cpu: _ratio(f(nb), g("soak", "baseline", str(size))["cpu_us_per_secret_per_poll"]),
              target="≤ 20 µs", meets=lambda f=soak_cpu: cpu_meets(f))
    for strategy in a.strategies:
        def poll_cpu(n, strategy=strategy):
            return g("polls", strategy, str(n))["cpu_us_per_secret_per_poll"]
        t.add(f"CPU per unchanged secret per poll, `{strategy}`, triggered polls",
              f"CPU time (utime+stime, ns resolution) from the first POST /refresh to the end of the last of {a.polls} polls (each ends "
              f"after 0.3 s without calls) ÷ (polls × N); {size_label[first_size]} values",
              per_n=lambda n, f=poll_cpu: f"{f(n):.1f} µs",
              baseline=lambda: f"{g('soak', 'baseline', str(first_size))['cpu_us_per_secret_per_poll']:,.0f} µs",
              ratio=lambda f=poll_cpu: _ratio(f(nb), g("soak", "baseline", str(first_size))["cpu_us_per_secret_per_poll"]),
              target="≤ 20 µs", meets=lambda f=poll_cpu: cpu_meets(f))

    # Scrapes (issue 18: the metrics budget), after the triggered polls of the first strategy
    scraped = a.strategies[0]
    t.add("`/metrics` size, every secret healthy",
          f"the largest of {SCRAPES} GET /metrics after the `{scraped}` polls; default metrics.perSecretSeries",
          per_n=lambda n: f"{g('polls', scraped, str(n))['scrape_bytes']:,} B",
          target="≤ 256 KiB at 10,000",
          meets=lambda: [(g("polls", scraped, str(n))["scrape_bytes"] <= 256 * 1024,
                          f"N={n:,}: {g('polls', scraped, str(n))['scrape_bytes']:,} B") for n in a.sizes])
    t.add("CPU of one scrape; peak RSS growth over the scrapes",
          f"CPU time (ns resolution) over {SCRAPES} sequential scrapes ÷ {SCRAPES}; VmHWM (reset through "
          "/proc/PID/clear_refs) after them and 10 parallel scrapes, minus VmRSS before",
          per_n=lambda n: (f"{g('polls', scraped, str(n))['scrape_cpu_ms']:.2f} ms; "
                           f"+{g('polls', scraped, str(n))['scrape_hwm_growth_kib']:,} KiB"),
          target="≤ 20 ms; ≤ 2 MiB",
          meets=lambda: [(g("polls", scraped, str(n))["scrape_cpu_ms"] <= 20
                          and g("polls", scraped, str(n))["scrape_hwm_growth_kib"] <= 2048,
                          f"N={n:,}") for n in a.sizes])

    # Rotation
    def rot(who):
        f = g("rotation", who)
        return f"{f['p50_ms']:,.0f} / {f['p99_ms']:,.0f} ms"
    t.add("PutSecretValue → new bytes on disk, p50 / p99",
          f"10 secrets at refreshInterval 1s (daemon: auto → batch), {a.rotations} rotations, each after a random "
          "0–1 s pause; file polled every 2 ms; small moto, no proxy",
          single=lambda: rot("daemon"), baseline=lambda: rot("baseline"),
          ratio=lambda: _ratio(g("rotation", "daemon")["p99_ms"], g("rotation", "baseline")["p99_ms"]) + " (p99)",
          target="p99 ≤ interval + 1 s = 2,000 ms",
          meets=lambda: [(g("rotation", "daemon")["p99_ms"] <= 2000, f"p99 {g('rotation', 'daemon')['p99_ms']:,.0f} ms")])

    # Kubernetes
    t.add("Kubernetes API requests per unchanged poll",
          "`cargo test --test it kube_bench::controller_rss -- --ignored --nocapture` with this binary: 1,000 Kubernetes "
          "Secrets against the in-repo API emulator, 3 polls via POST /refresh, requests logged by the emulator",
          single=lambda: num(g("kubernetes")["kube_requests_per_unchanged_poll"]),
          baseline=lambda: "n/a (files only)", target="0",
          meets=lambda: [(g("kubernetes")["kube_requests_per_unchanged_poll"] == 0, "not 0")])

    # moto's floor
    for op in ("GetSecretValue", "AssumeRole"):
        def floor(op=op):
            d, p = g("moto_floor", "small", op, "direct"), g("moto_floor", "small", op, "proxy")
            return (f"median {d['median_ms']:.1f} / {p['median_ms']:.1f} ms, "
                    f"p99 {d['p99_ms']:.1f} / {p['p99_ms']:.1f} ms")
        t.add(f"moto's floor: {op}, direct / through the counting proxy",
              f"raw HTTP on one keep-alive connection, {a.floor_samples} calls after 5 warm-ups, small moto",
              single=floor)

    def loaded():
        return "; ".join(f"{size_label[s]}: {g('moto_floor', 'loaded', str(s))['median_ms']:.1f} ms"
                         for s in a.value_bytes)
    t.add("moto's floor: GetSecretValue with a size's secrets loaded (median)",
          f"raw HTTP as above, straight to moto, {a.floor_samples} calls for secret N/2 of N={a.sizes[-1]:,}, moto holding {sum(a.sizes):,} secrets "
          "(moto scans every secret per lookup: this, not the daemon, paces the large-N runs)",
          single=loaded)
    return t


def _per_credential(f):
    gap = f["assume_role_gap_s"]
    return (f"{f['assume_role_per_credential']:.2f} ({f['assume_role_since_start']} calls / "
            f"{f['credential_lifetimes']} lifetimes" + (f"; median gap {gap['median']:g} s)" if gap else ")"))


def _spread_s(f):
    return f"{f['median_s']:.2f} s" + (f" ({f['min_s']:.2f}–{f['max_s']:.2f})" if f["runs"] > 1 else "")


def _per_hour(x):
    return num(round(x)) if x >= 100 else num(x)


def _default_ar(b):
    """AssumeRole calls the default-credential soak daemons made in the window, e.g. '0 (N=10), 0 (N=100)'."""
    daemons = b.r.get("soak", {}).get("daemon", {}).get(str(b.a.value_bytes[0]), {})
    seen = [f"{f['calls_in_window'].get('AssumeRole', 0)} (N={n})" for n, f in daemons.items()
            if isinstance(f, dict) and "calls_in_window" in f]
    return ", ".join(seen) or "n/a"


def _ratio(daemon, baseline):
    if not baseline:
        raise Unmeasured("baseline is 0", failed=False)
    return f"{daemon / baseline:.3g}"


def _polls_range(b):
    polls = [f.get("polls") for f in b.r.get("soak", {}).get("daemon", {}).get(str(b.a.value_bytes[0]), {}).values()
             if isinstance(f, dict) and "polls" in f]
    if not polls:
        return "n/a"
    lo, hi = min(polls), max(polls)
    return f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"


# -- main -------------------------------------------------------------------------------------------

def build_release():
    target = os.path.expanduser("~/.cache/secret-ferry/target-release")
    log(f"building the release binary (CARGO_TARGET_DIR={target}; a cold LTO build takes minutes)")
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT, env=dict(os.environ, CARGO_TARGET_DIR=target), check=True)
    return os.path.join(target, "release", "secret-ferry")


# -- scale: tests/it/scale.rs against the fast fake AWS ------------------------------------------

def scale_run(a, n, strategy):
    """One daemon of `n` secrets with `strategy`; the figures the test prints."""
    # "find": the N secrets are one `find` entry's discoveries (fetchStrategy left at auto).
    env = dict(os.environ, SECRET_FERRY_SCALE_BINARY=a.binary, SECRET_FERRY_SCALE_SECRETS=str(n),
               SECRET_FERRY_SCALE_STRATEGY="auto" if strategy == "find" else strategy,
               SECRET_FERRY_SCALE_FIND="1" if strategy == "find" else "0",
               SECRET_FERRY_SCALE_POLLS=str(a.scale_polls),
               CARGO_TARGET_DIR=os.path.expanduser("~/.cache/secret-ferry/target"))
    cmd = ["cargo", "test", "--test", "it", "scale::", "--", "--ignored", "--nocapture"]
    log(f"scale: N={n:,} {strategy}, {a.scale_polls} polls: " + " ".join(cmd))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=a.timeout)
    prefix = f"figures scale-{n}-{strategy}: "
    for line in done.stdout.splitlines():
        if line.startswith(prefix):
            figures = json.loads(line[len(prefix):])
            figures["test_exit_status"] = done.returncode
            return figures
    last = " | ".join((done.stderr + done.stdout).strip().splitlines()[-6:])[-800:]
    raise RuntimeError(f"no figures in the output of cargo test (exit {done.returncode}): {last}")


def scale_main(a):
    """RSS and CPU per secret at each N and strategy against the fast fake AWS; a table."""
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    runs, failures = [], []
    for n in a.scale:
        for strategy in a.scale_strategies:
            try:
                runs.append(scale_run(a, n, strategy))
            except Exception as e:  # one figure lost, not the run
                failures.append({"figure": f"scale {n} {strategy}", "error": str(e)})
                log(f"scale N={n} {strategy}: {e}")
    rows = ["| N | strategy | first sync | RSS after it | RSS after the polls (anonymous + file) | peak | CPU / secret / poll | calls / poll |",
            "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        calls = ", ".join(f"{round(v):,} {k}" for k, v in sorted(r["calls_per_poll"].items()) if v)
        rows.append(f"| {r['secrets']:,} | {r['strategy']} | {r['first_sync_secs']:.1f} s | "
                    f"{mib(r['rss_kib_after_first_sync'])} MiB | {mib(r['rss_kib_after_polls'])} MiB "
                    f"({mib(r.get('rss_anon_kib_after_polls', 0))} + {mib(r.get('rss_file_kib_after_polls', 0))}) | "
                    f"{mib(r['hwm_kib'])} MiB | {r['cpu_us_per_secret_per_poll']:.1f} µs | {calls or '0'} |")
    md = "\n".join([f"# secret-ferry at scale, {started}", "",
                     f"Release binary `{a.binary}` against the fast fake AWS (tests/it/common/fake_aws.rs), "
                     f"200 B values, one cross-account role, `refreshInterval: 60s`, the Dockerfile's ENV as in "
                     f"the image ({', '.join(f'{k}={v}' for k, v in common.image_env().items())}); {a.scale_polls} polls started with `POST /refresh` after the first sync, each "
                     f"waited for.", ""] + rows + [""])
    out = a.out or os.path.join(ROOT, "bench", "results", "scale-" + time.strftime("%Y-%m-%d"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump({"started": started, "binary": a.binary, "runs": runs, "failures": failures}, f, indent=2)
    with open(out + ".md", "w") as f:
        f.write(md)
    print(md)
    log(f"wrote {out}.json and {out}.md")
    if failures:
        sys.exit(1)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", help="secret-ferry binary to measure (default: build the release binary)")
    ap.add_argument("--sizes", default="10,100,1000,10000", help="N: secrets per daemon")
    ap.add_argument("--value-bytes", default="200,4096", help="secret sizes (JSON objects of this many bytes)")
    ap.add_argument("--soak", type=float, default=600, help="soak window, seconds")
    ap.add_argument("--soak-interval", type=int,
                    help="refreshInterval of the soak, seconds (default: 60, or a tenth of a shorter window)")
    ap.add_argument("--credential-period", type=int,
                    help="seconds between AssumeRole refreshes in the soak: duration 15m, refreshBefore 15m minus "
                         "this (default: like --soak-interval)")
    ap.add_argument("--strategies", default="batch,list,get")
    ap.add_argument("--max-get", type=int, default=1000, help="largest N polled with `get` (one call per secret)")
    ap.add_argument("--polls", type=int, default=5, help="triggered polls per strategy run")
    ap.add_argument("--rotations", type=int, default=100)
    ap.add_argument("--first-runs", type=int, default=7)
    ap.add_argument("--all-runs", type=int, default=3)
    ap.add_argument("--floor-samples", type=int, default=200)
    ap.add_argument("--baseline-secrets", type=int, help="N for the baseline (default 100 if measured, else the smallest N)")
    ap.add_argument("--timeout", type=int, default=1800, help="per start-up or poll, seconds")
    ap.add_argument("--kube-timeout", type=int, default=1800)
    ap.add_argument("--no-kube", action="store_true", help="skip the Kubernetes figure")
    ap.add_argument("--no-image-env", action="store_true",
                    help="run the daemon without the Dockerfile's ENV lines (MALLOC_ARENA_MAX), to measure their effect")
    ap.add_argument("--smoke", action="store_true", help="N=10, 200 B, a few seconds per window; for CI")
    ap.add_argument("--out", help="output path without extension (default bench/results/run-DATE)")
    ap.add_argument("--scale", help="only the scale figures at these N (e.g. 10000,100000), against the fast "
                                    "fake AWS (tests/it/scale.rs); written to bench/results/scale-DATE")
    ap.add_argument("--scale-strategies", default="auto",
                    help="fetch strategies of the scale figures; `find` reads the N secrets through one find entry")
    ap.add_argument("--scale-polls", type=int, default=60, help="polls after the first sync (60: an hour at 60s)")
    a = ap.parse_args(argv)
    if a.smoke:
        a.sizes, a.value_bytes = "10", "200"
        a.soak, a.soak_interval, a.credential_period = 3, 1, 2
        a.polls, a.rotations, a.first_runs, a.all_runs, a.floor_samples = 2, 2, 2, 1, 20
        a.timeout = 60
    # About ten polls and ten credential refreshes in the window, at most one a minute (the
    # daemon's default refreshInterval): enough to divide by, without a window of hours.
    tenth = max(1, min(60, int(a.soak // 10)))
    a.soak_interval = a.soak_interval or tenth
    a.credential_period = a.credential_period or max(2, tenth)
    a.sizes = sorted({int(x) for x in a.sizes.split(",")})
    a.value_bytes = [int(x) for x in a.value_bytes.split(",")]
    a.strategies = a.strategies.split(",")
    if a.baseline_secrets is None:
        a.baseline_secrets = 100 if 100 in a.sizes else a.sizes[0]
    if a.baseline_secrets not in a.sizes:
        ap.error("--baseline-secrets must be one of --sizes (ratios compare the same N)")
    if a.credential_period >= 15 * 60:
        ap.error("--credential-period must be under 15 minutes")
    if a.out is None and not a.smoke and not a.scale:  # a smoke run writes nothing unless asked to
        a.out = os.path.join(HERE, "results", time.strftime("run-%Y-%m-%d-%H%M"))
    return a


def main():
    a = parse_args()
    if a.scale:
        a.scale = [int(x) for x in a.scale.split(",")]
        a.scale_strategies = a.scale_strategies.split(",")
        if not a.binary:
            a.binary = build_release()
        a.binary = os.path.abspath(a.binary)
        return scale_main(a)
    if a.no_image_env:
        common.IMAGE_ENV.clear()
    t_start = time.time()
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    if not a.binary:
        a.binary = build_release()
    if not os.path.exists(a.binary):
        raise SystemExit(f"no binary at {a.binary}")
    a.binary = os.path.abspath(a.binary)
    b = Bench(a)
    b.r["machine"] = machine()
    b.r["image_env"] = dict(common.IMAGE_ENV)
    b.r["started"] = started
    b.r["settings"] = {k: v for k, v in vars(a).items()}
    try:
        log(f"setup: moto stacks for {a.value_bytes} B values, N = {a.sizes}")
        t0 = time.time()
        b.setup()
        b.r["setup_s"] = round(time.time() - t0, 1)
        b.attempt(("binary",), b.binary_figures)
        log("moto's floor")
        b.attempt(("moto_floor", "small"), b.moto_floor, b.small, a.floor_samples)
        for size in a.value_bytes:
            b.attempt(("moto_floor", "loaded", str(size)), b.loaded_floor, size, a.floor_samples)
        log("start → first file")
        for who in ("daemon", "baseline"):
            b.attempt(("first_file", who), b.first_file, who, a.first_runs)
        for size in a.value_bytes:
            for n in a.sizes:
                log(f"start → all files: N={n:,}, {size} B")
                b.attempt(("all_files", "daemon", str(size), str(n)), b.all_files, "daemon", size, n,
                          a.all_runs if n <= 1000 else 1)
            b.attempt(("all_files", "baseline", str(size)), b.all_files, "baseline", size, a.baseline_secrets,
                      a.all_runs if a.baseline_secrets <= 1000 else 1)
        size = a.value_bytes[0]
        for n in a.sizes:
            for strategy in a.strategies:
                if strategy == "get" and n > a.max_get:
                    b.skip(("polls", strategy, str(n)), f"`get` not run above N={a.max_get:,} (--max-get)")
                    continue
                log(f"polls: N={n:,}, {strategy}")
                b.attempt(("polls", strategy, str(n)), b.strategy_polls, size, n, strategy, a.polls)
        log("soak")
        b.soak()
        for who in ("daemon", "baseline"):
            log(f"rotation → disk: {who}")
            b.attempt(("rotation", who), b.rotation, who, a.rotations)
        if a.smoke:
            # The test builds and creates 1,000 secrets: far over the smoke budget.
            b.skip(("kubernetes",), "smoke")
        elif a.no_kube:
            b.skip(("kubernetes",), "--no-kube")
        else:
            b.attempt(("kubernetes",), b.kubernetes)
    finally:
        b.close()
    b.r["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    b.r["took_s"] = round(time.time() - t_start, 1)
    table = build_table(b)
    b.r["table"] = table.rows
    b.r["failures"] = b.failures + [{"figure": "table", "error": r} for r in table.unmeasured if
                                    not any(f["error"] in r for f in b.failures)]
    md = render(b, table)
    raw = json.dumps(b.r, indent=2, default=str)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out + ".json", "w") as f:
            f.write(raw)
        with open(a.out + ".md", "w") as f:
            f.write(md)
        log(f"wrote {a.out}.json and {a.out}.md in {b.r['took_s']:.0f} s")
    if not a.smoke:
        print(md)
    elif not b.r["failures"]:
        skipped = f"; {table.skipped} skipped" if table.skipped else ""
        print(f"smoke: every figure measured ({table.measured} figures{skipped}) in {b.r['took_s']:.0f} s")
    else:
        print(f"smoke: {len(b.r['failures'])} figure(s) could not be measured (listed on stderr)")
    if b.r["failures"]:
        log(f"{len(b.r['failures'])} figure(s) could not be measured:")
        for f in b.r["failures"]:
            log(f"  {f['figure']}: {f['error']}")
        sys.exit(1)


def render(b, table):
    a, m = b.a, b.r["machine"]
    return "\n".join([
        f"# secret-ferry bench, {b.r['started']}" + (" (smoke: not figures to quote)" if a.smoke else ""),
        "",
        f"- Machine: {m['arch']}, {m['cores']} cores ({m['cpu']}), {m['memory']}, Linux {m['kernel']}; "
        f"load average {m['loadavg']} at the start, {m['loadavg_end']} at the end.",
        f"- Binary: `{a.binary}`, run with the image's environment "
        f"({', '.join(f'`{k}={v}`' for k, v in b.r['image_env'].items()) or 'none'}; Dockerfile `ENV`). "
        f"The whole run took {b.r['took_s']:.0f} s (setup {b.r.get('setup_s', '?')} s).",
        f"- Workload: one cross-account role (account 111111111111, ExternalId) shared by N JSON secrets of "
        f"{', '.join(f'{s:,}' for s in a.value_bytes)} bytes; `apiRateLimit: {RATE}` so that the budget does not pace "
        f"the figures; moto {_moto_version()} on loopback, one server per value size plus a small one for latencies.",
        f"- Baseline: `bench/baseline.py` (per secret per interval: a fresh AssumeRole with the ExternalId, a new client, "
        f"GetSecretValue, a file write) at N = {a.baseline_secrets:,}. daemon:baseline = daemon ÷ baseline at the same "
        "N; below 1 the daemon uses less.",
        "- single: a figure not taken per N (its N is under “how measured”). Operations: BGSV = "
        "BatchGetSecretValue, LS = ListSecrets, GSV = GetSecretValue, AR = AssumeRole (STS, not billed).",
        "- A target is a report, not a pass/fail: figures on a shared machine are noisy.",
        "",
        table.markdown(),
        "",
    ] + ([f"Not measured ({len(b.r['failures'])}):", ""] + [f"- {f['figure']}: {f['error']}" for f in b.r["failures"]] + [""]
         if b.r["failures"] else []))


def _moto_version():
    """The version of the moto server the bench started (its own interpreter's package, which
    may differ from whatever moto this interpreter can import)."""
    python = os.path.join(os.path.dirname(moto_server()), "python")
    try:
        out = subprocess.run([python, "-c", "import moto; print(moto.__version__)"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
