"""Figures for the credentials engine, against moto behind the counting proxy:

  1. AssumeRole calls for 1 role shared by 1,000 secrets, over a window, with credentials
     that live 15 min and are refreshed 14 min ahead (one refresh a minute), and the
     hourly rate that implies for that setting and for the defaults (1 h, 5 min ahead);
  2. latency of one refresh (AssumeRole) against moto, from the daemon's own histogram;
  3. resident memory added per role: 1 role vs 101 distinct roles (1 secret each).

usage: python bench/credentials.py BINARY [--window SECONDS] [--json OUT]
Not a test: it prints figures and never fails on their values.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from skeleton import ACCOUNT, counts, env_for, free_port, status_kib, wait_http  # noqa: E402

import boto3  # noqa: E402


def admin(endpoint):
    plain = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    c = boto3.client("sts", **plain).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/admin", RoleSessionName="bench")["Credentials"]
    return dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=c["AccessKeyId"],
                aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])


def metric(text, prefix):
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return None


def run(binary, cfg, proxy, admin_port, seconds, sample=None):
    p = subprocess.Popen([binary, "run", "--config", cfg, "--listen", f"127.0.0.1:{admin_port}"],
                         env=env_for(proxy), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{admin_port}/readyz", timeout=180)
        counts(proxy, reset=True)
        started = time.time()
        rss_ready = status_kib(p.pid, "VmRSS")
        time.sleep(seconds)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics") as r:
            text = r.read().decode()
        return {"rss_kib": rss_ready, "rss_kib_end": status_kib(p.pid, "VmRSS"), "window_s": round(time.time() - started, 1),
                "calls": counts(proxy), "metrics": text}
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--window", type=float, default=300)
    ap.add_argument("--secrets", type=int, default=1000)
    ap.add_argument("--json")
    a = ap.parse_args()
    moto_port, proxy_port = free_port(), free_port()
    procs = [subprocess.Popen([os.environ.get("MOTO_SERVER", "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([sys.executable, os.path.join(HERE, "counting_proxy.py"), str(proxy_port), str(moto_port)])]
    work = tempfile.mkdtemp(prefix="secret-ferry-bench-creds-")
    try:
        moto, proxy = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{proxy_port}"
        wait_http(f"{moto}/moto-api/data.json")
        wait_http(f"{proxy}/__counts")
        adm = admin(moto)
        sm = boto3.client("secretsmanager", **adm)
        for i in range(a.secrets):
            sm.create_secret(Name=f"bench/s{i}", SecretString=json.dumps({"k": f"v{i}"}))
        ext = os.path.join(work, "external-id")
        with open(ext, "w") as f:
            f.write("bench-external-id")
        results = {}

        # 1 + 2: one role, 1,000 secrets, a refresh every minute.
        lines = ["region: us-east-1", "roles:", "  r:", f"    roleArn: arn:aws:iam::{ACCOUNT}:role/Bench",
                 f"    externalIdFile: {ext}", "    duration: 15m", "    refreshBefore: 14m", "secrets:"]
        for i in range(a.secrets):
            lines += [f"  - name: s{i}", f"    secretId: bench/s{i}", "    role: r", "    refreshInterval: 1h",
                      "    targets:", "      - file:", f"          dir: {work}/out/s{i}"]
        cfg = os.path.join(work, "one-role.yaml")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = run(a.binary, cfg, proxy, free_port(), a.window)
        assume = r["calls"].get("AssumeRole", 0)
        per_hour = assume * 3600 / r["window_s"]
        count = metric(r["metrics"], 'secret_ferry_assume_role_duration_seconds_count{role="r"}')
        total = metric(r["metrics"], 'secret_ferry_assume_role_duration_seconds_sum{role="r"}')
        results["one_role"] = {
            "secrets": a.secrets, "window_s": r["window_s"], "assume_role_calls": assume,
            "get_secret_value_calls": r["calls"].get("GetSecretValue", 0),
            "assume_role_per_hour_at_15m_14m": round(per_hour, 1),
            "assume_role_per_hour_at_defaults_1h_5m": round(3600 / (55 * 60), 2),
            "assume_role_mean_ms": round(1000 * total / count, 1) if count else None,
            "assume_role_count_in_histogram": count,
            "rss_kib": r["rss_kib"],
        }

        # 3: memory per role: 1 role + 1 secret, then 101 distinct roles with 1 secret each.
        def roles_config(n):
            lines = ["region: us-east-1", "roles:"]
            for i in range(n):
                lines += [f"  r{i}:", f"    roleArn: arn:aws:iam::{ACCOUNT}:role/Bench{i}", f"    externalIdFile: {ext}"]
            lines.append("secrets:")
            for i in range(n):
                lines += [f"  - name: s{i}", f"    secretId: bench/s{i}", f"    role: r{i}", "    refreshInterval: 1h",
                          "    targets:", "      - file:", f"          dir: {work}/mem{n}/s{i}"]
            path = os.path.join(work, f"roles-{n}.yaml")
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            return path
        one = run(a.binary, roles_config(1), proxy, free_port(), 5)
        many = run(a.binary, roles_config(101), proxy, free_port(), 5)
        results["memory"] = {
            "rss_kib_1_role": one["rss_kib_end"], "rss_kib_101_roles": many["rss_kib_end"],
            "kib_per_role": round((many["rss_kib_end"] - one["rss_kib_end"]) / 100, 1),
            "assume_role_calls_101_roles_startup_excluded": many["calls"].get("AssumeRole", 0),
        }
        print(json.dumps(results, indent=2))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        for pr in procs:
            pr.terminate()


if __name__ == "__main__":
    main()
