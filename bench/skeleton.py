"""Figures for the walking skeleton, against the local AWS stand-in (moto):

  1. RSS of the daemon after syncing 100 secrets (VmRSS and VmHWM);
  2. time from process start to the first file on disk, one secret, `--once` and daemon;
  3. AWS calls made in a window (default 600 s) by 100 secrets sharing one role,
     counted by a proxy in front of moto: AssumeRole and GetSecretValue.

usage: python bench/skeleton.py BINARY [--window SECONDS] [--json OUT]
Not a test: it prints figures and never fails on their values.
"""
import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ACCOUNT = "111111111111"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {url}")


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def setup(endpoint, n):
    plain = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    c = boto3.client("sts", **plain).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/admin", RoleSessionName="bench")["Credentials"]
    admin = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=c["AccessKeyId"],
                 aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
             "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "bench-external-id"}}}]}
    role = boto3.client("iam", **admin).create_role(RoleName="BenchRole", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    sm = boto3.client("secretsmanager", **admin)
    for i in range(n):
        sm.create_secret(Name=f"bench/s{i}", SecretString=json.dumps({"username": f"user{i}", "password": "p" * 40, "host": "db.example", "port": 5432}))
    return role


def config(work, role, n, interval):
    ext = os.path.join(work, "external-id")
    with open(ext, "w") as f:
        f.write("bench-external-id")
    lines = ["region: us-east-1", "roles:", "  r:", f"    roleArn: {role}", f"    externalIdFile: {ext}", "secrets:"]
    for i in range(n):
        lines += [f"  - name: s{i}", f"    secretId: bench/s{i}", "    role: r", f"    refreshInterval: {interval}",
                  "    targets:", "      - file:", f"          dir: {work}/out/s{i}"]
    path = os.path.join(work, f"config-{n}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def env_for(endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn")
    return env


def counts(proxy, reset=False):
    req = urllib.request.Request(f"{proxy}/__counts" + ("/reset" if reset else ""), method="POST" if reset else "GET")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def time_to_first_file(binary, cfg, endpoint, first_file, once):
    shutil.rmtree(os.path.dirname(os.path.dirname(first_file)), ignore_errors=True)
    args = [binary, "run", "--config", cfg] + (["--once"] if once else ["--listen", f"127.0.0.1:{free_port()}"])
    start = time.perf_counter()
    p = subprocess.Popen(args, env=env_for(endpoint), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(first_file):
        if p.poll() is not None and not os.path.exists(first_file):
            raise SystemExit("daemon exited before writing")
        time.sleep(0.0005)
    took = time.perf_counter() - start
    if once:
        p.wait()
    else:
        p.terminate()
        p.wait()
    return took * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--window", type=float, default=600)
    ap.add_argument("--secrets", type=int, default=100)
    ap.add_argument("--json")
    a = ap.parse_args()
    moto_bin = os.environ.get("MOTO_SERVER", "moto_server")
    moto_port, proxy_port = free_port(), free_port()
    work = tempfile.mkdtemp(prefix="secret-ferry-bench-")
    procs = [subprocess.Popen([moto_bin, "-H", "127.0.0.1", "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([sys.executable, os.path.join(HERE, "counting_proxy.py"), str(proxy_port), str(moto_port)])]
    try:
        moto = f"http://127.0.0.1:{moto_port}"
        proxy = f"http://127.0.0.1:{proxy_port}"
        wait_http(f"{moto}/moto-api/data.json")
        wait_http(f"{proxy}/__counts")
        role = setup(moto, a.secrets)
        results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
                   "binary": a.binary, "binary_bytes": os.path.getsize(a.binary)}

        cfg1 = config(work, role, 1, "60s")
        first = os.path.join(work, "out", "s0", "password")
        for once in (True, False):
            samples = [time_to_first_file(a.binary, cfg1, proxy, first, once) for _ in range(7)]
            results["first_file_ms_once" if once else "first_file_ms_daemon"] = {
                "median": round(statistics.median(samples), 1), "min": round(min(samples), 1), "max": round(max(samples), 1)}

        cfgn = config(work, role, a.secrets, "60s")
        counts(proxy, reset=True)
        admin = free_port()
        p = subprocess.Popen([a.binary, "run", "--config", cfgn, "--listen", f"127.0.0.1:{admin}"],
                             env=env_for(proxy), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.time()
        wait_http(f"http://127.0.0.1:{admin}/readyz", timeout=120)
        ready_s = time.time() - started
        results["all_synced_s"] = round(ready_s, 3)
        results["rss_kib_after_first_sync"] = status_kib(p.pid, "VmRSS")
        cpu0 = cpu_seconds(p.pid)
        time.sleep(max(0.0, a.window - (time.time() - started)))
        results["window_s"] = round(time.time() - started, 1)
        results["rss_kib_end"] = status_kib(p.pid, "VmRSS")
        results["hwm_kib"] = status_kib(p.pid, "VmHWM")
        results["cpu_s_after_first_sync"] = round(cpu_seconds(p.pid) - cpu0, 3)
        results["aws_calls"] = counts(proxy)
        p.terminate()
        p.wait()
        results["secrets"] = a.secrets
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
