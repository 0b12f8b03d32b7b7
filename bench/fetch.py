"""Figures for the fetch planner (issue 4), against the local AWS stand-in (moto):

  1. Secrets Manager calls per poll of N unchanged secrets, by operation, for each
     fetchStrategy (counted by a proxy in front of moto);
  2. CPU time per unchanged secret per poll (process utime+stime around polls started
     with POST /refresh, divided by polls x N);
  3. RSS (VmRSS after the first sync and after the polls, VmHWM) at each N;
  4. p50 / p99 from PutSecretValue to the new bytes on disk at refreshInterval 1s;
  5. moto's own floor: the median time of one GetSecretValue, straight to moto.

usage: python bench/fetch.py BINARY [--secrets 1000,10000] [--strategies batch,list,get]
                             [--polls 3] [--samples 100] [--json OUT]
Not a test: it prints figures and never fails on their values.
"""
import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from skeleton import HERE, counts, cpu_seconds, env_for, free_port, setup, status_kib, wait_http  # noqa: E402

OPERATION = {"batch": "BatchGetSecretValue", "list": "ListSecrets", "get": "GetSecretValue"}
PER_CALL = {"batch": 20, "list": 100, "get": 1}


def create_secrets(endpoint, n):
    """N secrets under their own prefix (`benchN/`), as a team's secrets would be, so that
    ListSecrets' name filter selects exactly them and not the other sizes' secrets."""
    sm = admin_client(endpoint)
    for i in range(n):
        sm.create_secret(Name=f"bench{n}/s{i}", SecretString=json.dumps(
            {"username": f"user{i}", "password": "p" * 40, "host": "db.example", "port": 5432}))


def config(work, role, n, strategy, interval, rate=10000):
    ext = os.path.join(work, "external-id")
    with open(ext, "w") as f:
        f.write("bench-external-id")
    lines = ["region: us-east-1", f"apiRateLimit: {rate}", f"fetchStrategy: {strategy}", "roles:", "  r:",
             f"    roleArn: {role}", f"    externalIdFile: {ext}", "secrets:"]
    for i in range(n):
        lines.append(f"  - {{name: s{i}, secretId: bench{n}/s{i}, role: r, refreshInterval: {interval}, "
                     f"targets: [{{file: {{dir: {work}/out-{strategy}-{n}/s{i}}}}}]}}")
    path = os.path.join(work, f"config-{strategy}-{n}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def wait_calls(proxy, op, expected, timeout=600):
    """Waits until the proxy has seen `expected` calls of `op` and then 0.3 s of quiet."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = counts(proxy)
        if c.get(op, 0) >= expected:
            time.sleep(0.3)
            return
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {expected} {op} calls")


def poll_figures(binary, work, role, proxy, n, strategy, polls):
    cfg = config(work, role, n, strategy, "1h")
    admin = free_port()
    p = subprocess.Popen([binary, "run", "--config", cfg, "--listen", f"127.0.0.1:{admin}"],
                         env=env_for(proxy), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = time.time()
        wait_http(f"http://127.0.0.1:{admin}/readyz", timeout=900)
        out = {"secrets": n, "strategy": strategy, "first_sync_s": round(time.time() - started, 2),
               "rss_kib_after_first_sync": status_kib(p.pid, "VmRSS")}
        op = OPERATION[strategy]
        expected = math.ceil(n / PER_CALL[strategy])
        counts(proxy, reset=True)
        cpu = 0.0
        for _ in range(polls):
            before = counts(proxy).get(op, 0)
            cpu0 = cpu_seconds(p.pid)
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{admin}/refresh", method="POST"))
            wait_calls(proxy, op, before + expected)
            cpu += cpu_seconds(p.pid) - cpu0
        calls = counts(proxy)
        out["calls_per_poll"] = {k: round(v / polls, 1) for k, v in sorted(calls.items())}
        out["cpu_us_per_secret_per_poll"] = round(cpu / polls / n * 1e6, 2)
        out["rss_kib_end"] = status_kib(p.pid, "VmRSS")
        out["hwm_kib"] = status_kib(p.pid, "VmHWM")
        return out
    finally:
        p.terminate()
        p.wait()


def rotation_latency(binary, work, role, moto, samples):
    """PutSecretValue → new bytes on disk, 10 secrets at refreshInterval 1s (auto → batch)."""
    n = 10
    cfg = config(work, role, n, "auto", "1s", rate=50)
    admin = free_port()
    p = subprocess.Popen([binary, "run", "--config", cfg, "--listen", f"127.0.0.1:{admin}"],
                         env=env_for(moto), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{admin}/readyz", timeout=60)
        sm = admin_client(moto)
        took = []
        for k in range(samples):
            i = k % n
            marker = f"rotated-{k}-{time.time_ns()}"
            path = os.path.join(work, f"out-auto-{n}", f"s{i}", "password")
            sm.put_secret_value(SecretId=f"bench{n}/s{i}", SecretString=json.dumps({"username": f"user{i}", "password": marker}))
            t0 = time.perf_counter()
            deadline = t0 + 10
            while time.perf_counter() < deadline:
                try:
                    with open(path) as f:
                        if f.read() == marker:
                            break
                except OSError:
                    pass
                time.sleep(0.002)
            took.append((time.perf_counter() - t0) * 1000)
        took.sort()
        return {"samples": samples, "interval_s": 1, "p50_ms": round(statistics.median(took), 1),
                "p99_ms": round(took[min(len(took) - 1, math.ceil(0.99 * len(took)) - 1)], 1), "max_ms": round(took[-1], 1)}
    finally:
        p.terminate()
        p.wait()


def admin_client(endpoint):
    plain = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    c = boto3.client("sts", **plain).assume_role(RoleArn="arn:aws:iam::111111111111:role/admin", RoleSessionName="bench")["Credentials"]
    return boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=c["AccessKeyId"],
                        aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])


def moto_floor(moto):
    sm = admin_client(moto)
    took = []
    for _ in range(50):
        t0 = time.perf_counter()
        sm.get_secret_value(SecretId="bench10/s0")
        took.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(took), 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--secrets", default="1000,10000")
    ap.add_argument("--strategies", default="batch,list,get")
    ap.add_argument("--max-get", type=int, default=1000, help="largest N polled with `get` (one call per secret)")
    ap.add_argument("--polls", type=int, default=3)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--json")
    a = ap.parse_args()
    sizes = [int(s) for s in a.secrets.split(",")]
    moto_bin = os.environ.get("MOTO_SERVER", "moto_server")
    moto_port, proxy_port = free_port(), free_port()
    work = tempfile.mkdtemp(prefix="secret-ferry-bench-fetch-")
    procs = [subprocess.Popen([moto_bin, "-H", "127.0.0.1", "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([sys.executable, os.path.join(HERE, "counting_proxy.py"), str(proxy_port), str(moto_port)])]
    try:
        moto = f"http://127.0.0.1:{moto_port}"
        proxy = f"http://127.0.0.1:{proxy_port}"
        wait_http(f"{moto}/moto-api/data.json")
        wait_http(f"{proxy}/__counts")
        t0 = time.time()
        role = setup(moto, 0)
        for n in sorted(set(sizes + [10])):
            create_secrets(moto, n)
        results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
                   "binary": a.binary, "binary_bytes": os.path.getsize(a.binary),
                   "setup_s": round(time.time() - t0, 1), "moto_get_secret_value_ms": moto_floor(moto), "polls": []}
        for n in sizes:
            for strategy in a.strategies.split(","):
                if strategy == "get" and n > a.max_get:
                    continue
                figures = poll_figures(a.binary, work, role, proxy, n, strategy, a.polls)
                print(json.dumps(figures), flush=True)
                results["polls"].append(figures)
        results["rotation_to_disk"] = rotation_latency(a.binary, work, role, moto, a.samples)
        print(json.dumps(results, indent=2))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        for pr in procs:
            pr.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
