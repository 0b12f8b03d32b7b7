"""Shared plumbing for the bench scripts (run.py, credentials.py; baseline.py stands alone on purpose).

Everything here runs against moto, the local AWS stand-in, on loopback:

- `Stack`: one moto server and one counting proxy in front of it (`counting_proxy.py`), started on
  free ports; `CountingProxy` starts extra proxies when several processes must be counted apart.
- the AWS fixtures the benches share: an admin client (moto lets anyone assume
  `arn:aws:iam::111111111111:role/admin`), a cross-account role in account 111111111111 whose
  trust policy requires the ExternalId, and JSON secrets of a chosen size;
- config writers for the daemon (YAML) and the baseline (JSON);
- process probes: VmRSS / VmHWM from /proc/PID/status, utime + stime from /proc/PID/stat, and
  the same CPU time at nanosecond resolution (`CpuMeter`).

Nothing here judges a figure.
"""
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REGION = "us-east-1"
# The "secrets" account: it owns the secrets and the role the daemon assumes.
ACCOUNT = "111111111111"
# moto's default account: what the daemon's base credentials ("testing") belong to.
BASE_ACCOUNT = "123456789012"
EXTERNAL_ID = "bench-external-id"
ROLE_NAME = "BenchRole"


def log(msg):
    """Progress goes to stderr so that stdout carries only the results."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tail(path, n=5):
    """The last lines of a log file, on one line (for error messages)."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.rstrip() for line in f if line.strip()]
        return " | ".join(lines[-n:])[-600:]
    except (OSError, TypeError):
        return ""


def wait_http(url, timeout=30, proc=None, log_path=None):
    """Waits for a 200 from `url`; gives up early if `proc` exits (quoting the end of `log_path`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered: {tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {url}")


def status_kib(pid, field):
    """VmRSS, VmHWM, ... of a live process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time (user + system) a process spends from now until `stop()`, at nanosecond resolution.

    utime and stime in /proc/PID/stat count 10 ms ticks: over a short window, or divided by a few
    hundred secret-polls, that resolution is coarser than the figure. The run time in
    /proc/PID/task/TID/schedstat is the same quantity in nanoseconds, but per live thread, so a
    sampler thread reads every thread every `period` seconds and keeps each thread's last value:
    a thread that exits loses at most its last `period` (tokio's blocking threads idle 10 s before
    they exit). The tick count over the same window is kept as a cross-check.
    """

    def __init__(self, pid, period=0.25):
        self.pid, self.period = pid, period
        self.last = {}
        self.ticks0 = cpu_seconds(pid)
        self._sample()
        self.first = dict(self.last)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self):
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    self.last[tid] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # the thread exited between listdir and open

    def _run(self):
        while not self._done.wait(self.period):
            self._sample()

    def stop(self):
        """{"cpu_s": from schedstat, "cpu_s_ticks": utime+stime from /proc/PID/stat}."""
        self._done.set()
        self._thread.join()
        self._sample()
        try:
            ticks = round(cpu_seconds(self.pid) - self.ticks0, 3)
        except OSError:
            ticks = None
        ns = 0
        for tid, v in self.last.items():
            start = self.first.get(tid, 0)
            ns += v - start if v >= start else v  # a reused thread id: a new thread
        return {"cpu_s": ns / 1e9, "cpu_s_ticks": ticks}


def percentile(samples, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(samples)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def summary_ms(samples):
    return {"samples": len(samples), "median_ms": round(statistics.median(samples), 2),
            "p99_ms": round(percentile(samples, 99), 2), "min_ms": round(min(samples), 2),
            "max_ms": round(max(samples), 2)}


def moto_server():
    """$MOTO_SERVER, else the bench/test virtualenv's, else whatever is on PATH."""
    if os.environ.get("MOTO_SERVER"):
        return os.environ["MOTO_SERVER"]
    venv = os.path.expanduser("~/.cache/secret-ferry-venv/bin/moto_server")
    if os.path.exists(venv):
        return venv
    found = shutil.which("moto_server")
    if not found:
        raise SystemExit("moto_server not found: run `. scripts/venv.sh; ensure_venv_only moto boto3` or set MOTO_SERVER")
    return found


def stop(proc, timeout=10):
    """Terminates a child we started and reaps it (kills it if it ignores SIGTERM)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class CountingProxy:
    """`counting_proxy.py` in front of a moto port: counts calls per operation."""

    def __init__(self, upstream_port):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "counting_proxy.py"), str(self.port), str(upstream_port)])

    def wait(self):
        wait_http(f"{self.url}/__counts", proc=self.proc)
        return self

    def counts(self):
        with urllib.request.urlopen(f"{self.url}/__counts") as r:
            return json.loads(r.read())

    def times(self, op):
        """Arrival times (Unix seconds) of every `op` call since the last reset."""
        with urllib.request.urlopen(f"{self.url}/__times?op={op}") as r:
            return json.loads(r.read())

    def reset(self):
        req = urllib.request.Request(f"{self.url}/__counts/reset", method="POST")
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def close(self):
        stop(self.proc)


def counts(proxy_url, reset=False):
    """Counts of the proxy at `proxy_url` (reset=True zeroes them)."""
    req = urllib.request.Request(f"{proxy_url}/__counts" + ("/reset" if reset else ""), method="POST" if reset else "GET")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


class Stack:
    """One moto server and a counting proxy in front of it. `moto` and `proxy` are endpoint URLs.

    Call `wait()` before use; several stacks can be started first and waited for together,
    because moto takes a second or two to import.
    """

    def __init__(self, name):
        self.name = name
        self.moto_port = free_port()
        self.moto = f"http://127.0.0.1:{self.moto_port}"
        self.moto_proc = subprocess.Popen([moto_server(), "-H", "127.0.0.1", "-p", str(self.moto_port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.counter = CountingProxy(self.moto_port)
        self.proxy = self.counter.url
        self.extra = []
        self.role_arn = None

    def wait(self):
        wait_http(f"{self.moto}/moto-api/data.json", proc=self.moto_proc)
        self.counter.wait()
        return self

    def new_proxy(self):
        """Another counting proxy to the same moto, to count one process on its own."""
        p = CountingProxy(self.moto_port)
        self.extra.append(p)
        return p.wait()

    def close(self):
        for p in self.extra + [self.counter]:
            p.close()
        stop(self.moto_proc)


def admin_credentials(endpoint):
    """Credentials of an admin in the secrets account (moto lets anyone assume its admin role)."""
    sts = boto3.session.Session().client("sts", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/admin", RoleSessionName="bench")["Credentials"]


def admin_client(endpoint, service="secretsmanager", creds=None):
    c = creds or admin_credentials(endpoint)
    # A session per client: boto3's default session is not safe to share between threads.
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=c["AccessKeyId"],
                        aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])


def create_role(endpoint, name=ROLE_NAME, external_id=EXTERNAL_ID):
    """The cross-account role: in the secrets account, trusting the base account with an ExternalId."""
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{BASE_ACCOUNT}:root"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]}
    iam = admin_client(endpoint, "iam")
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def secret_value(i, size, password=None):
    """A JSON object of exactly `size` bytes (at least ~110) that looks like database credentials;
    a `note` field pads it, so the secret has the same keys at every size."""
    doc = {"username": f"user{i:05d}", "password": password or f"pw-{i:05d}-" + "x" * 28,
           "host": f"db-{i:05d}.example.internal", "port": 5432, "note": ""}
    pad = size - len(json.dumps(doc))
    if pad > 0:
        doc["note"] = "n" * pad
    return json.dumps(doc)


def create_secrets(sm, prefix, n, size):
    """`prefix + s{i}` for i < n, one at a time: moto's server is not safe for concurrent writes."""
    for i in range(n):
        sm.create_secret(Name=f"{prefix}s{i}", SecretString=secret_value(i, size))


def write_external_id(work):
    path = os.path.join(work, "external-id")
    with open(path, "w") as f:
        f.write(EXTERNAL_ID)
    return path


def write_daemon_config(path, role_arn, external_id_file, secrets, interval, strategy=None, rate=None,
                        duration=None, refresh_before=None):
    """secret-ferry YAML: one role (`r`), `secrets` = [(name, secretId, dir)], all at `interval`."""
    lines = [f"region: {REGION}"]
    if rate:
        lines.append(f"apiRateLimit: {rate}")
    if strategy:
        lines.append(f"fetchStrategy: {strategy}")
    lines += ["roles:", "  r:", f"    roleArn: {role_arn}", f"    externalIdFile: {external_id_file}"]
    if duration:
        lines.append(f"    duration: {duration}")
    if refresh_before:
        lines.append(f"    refreshBefore: {refresh_before}")
    lines.append("secrets:")
    for name, secret_id, out in secrets:
        lines.append(f"  - {{name: {name}, secretId: {secret_id}, role: r, refreshInterval: {interval}, "
                     f"targets: [{{file: {{dir: {out}}}}}]}}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_baseline_config(path, role_arn, external_id_file, secrets, interval_s):
    """baseline.py JSON: `secrets` = [(secretId, file)]."""
    with open(path, "w") as f:
        json.dump({"region": REGION, "roleArn": role_arn, "externalIdFile": external_id_file,
                   "refreshIntervalSeconds": interval_s,
                   "secrets": [{"secretId": s, "path": p} for s, p in secrets]}, f)
    return path


def env_for(endpoint):
    """The environment of a daemon or baseline under test: base credentials and the stand-in's URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_REGION=REGION, AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn")
    return env


def image_env(path=os.path.join(ROOT, "Dockerfile")):
    """The `ENV NAME=value` lines of the runtime image (the last stage of the Dockerfile)."""
    env = {}
    with open(path) as f:
        for line in f:
            if line.startswith("FROM "):
                env = {}
            elif line.startswith("ENV "):
                for pair in line.split()[1:]:
                    name, sep, value = pair.partition("=")
                    if not sep:
                        raise ValueError(f"{path}: only `ENV NAME=value` is understood: {line.strip()}")
                    env[name] = value
    return env


# What `daemon_env` adds; run.py --no-image-env empties it to measure the bare binary.
IMAGE_ENV = image_env()


def daemon_env(endpoint):
    """`env_for` plus the image's ENV lines: the daemon is measured as the image runs it."""
    env = env_for(endpoint)
    env.update(IMAGE_ENV)
    return env


def start_daemon(binary, config, endpoint, stderr=subprocess.DEVNULL):
    """`secret-ferry run` with its admin server on a free port; returns (process, admin URL)."""
    port = free_port()
    p = subprocess.Popen([binary, "run", "--config", config, "--listen", f"127.0.0.1:{port}"],
                         env=daemon_env(endpoint), stdout=subprocess.DEVNULL, stderr=stderr)
    return p, f"http://127.0.0.1:{port}"


def machine():
    """A description of the machine, with its load (these benches run on shared machines)."""
    model, mem = "?", "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
        with open("/proc/meminfo") as f:
            kib = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
            mem = f"{kib / 1048576:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {"arch": platform.machine(), "cores": os.cpu_count(), "cpu": model, "memory": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def elf_stripped(path):
    """True if the ELF file has no .symtab / .debug_* sections, None if it is not a 64-bit ELF."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return None
            order = "little" if head[5] == 1 else "big"
            shoff = int.from_bytes(head[0x28:0x30], order)
            shentsize = int.from_bytes(head[0x3A:0x3C], order)
            shnum = int.from_bytes(head[0x3C:0x3E], order)
            shstrndx = int.from_bytes(head[0x3E:0x40], order)
            f.seek(shoff + shstrndx * shentsize)
            sh = f.read(shentsize)
            f.seek(int.from_bytes(sh[0x18:0x20], order))
            names = f.read(int.from_bytes(sh[0x20:0x28], order))
    except OSError:
        return None
    return b".symtab\0" not in names and b".debug_info\0" not in names
