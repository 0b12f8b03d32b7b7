"""Figures for the credentials engine that bench/run.py does not take, against moto behind the
counting proxy:

  1. latency of one refresh (AssumeRole) against moto, from the daemon's own histogram, for 1 role
     shared by --secrets secrets with credentials of 15 min refreshed 14 min ahead (one refresh a
     minute), and the AssumeRole calls counted at the proxy over the window;
  2. resident memory added per role: 1 role vs 101 distinct roles (1 secret each), VmRSS after 5 s.

(AssumeRole calls per hour and per credential lifetime, at every N, are in bench/run.py.)

usage: python bench/credentials.py BINARY [--window SECONDS] [--secrets N] [--json OUT]
Not a test: it prints figures and never fails on their values.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (ACCOUNT, Stack, admin_client, create_role, create_secrets, start_daemon, status_kib, stop,  # noqa: E402
                    wait_http, write_external_id)


def metric(text, prefix):
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return None


def run(binary, cfg, stack, seconds):
    """Runs the daemon through the stack's proxy; counts calls from readiness for `seconds`."""
    p, admin = start_daemon(binary, cfg, stack.proxy)
    try:
        wait_http(f"{admin}/readyz", timeout=180, proc=p)
        stack.counter.reset()
        started = time.time()
        rss_ready = status_kib(p.pid, "VmRSS")
        time.sleep(seconds)
        with urllib.request.urlopen(f"{admin}/metrics") as r:
            text = r.read().decode()
        return {"rss_kib": rss_ready, "rss_kib_end": status_kib(p.pid, "VmRSS"), "window_s": round(time.time() - started, 1),
                "calls": stack.counter.counts(), "metrics": text}
    finally:
        stop(p)


def write_config(path, roles, secrets, work):
    """`roles`: {name: extra YAML lines}; `secrets`: [(name, secretId, role)]."""
    ext = os.path.join(work, "external-id")
    lines = ["region: us-east-1", "roles:"]
    for name, (arn, extra) in roles.items():
        lines += [f"  {name}:", f"    roleArn: {arn}", f"    externalIdFile: {ext}"] + [f"    {x}" for x in extra]
    lines.append("secrets:")
    for name, secret_id, role in secrets:
        lines.append(f"  - {{name: {name}, secretId: {secret_id}, role: {role}, refreshInterval: 1h, "
                     f"targets: [{{file: {{dir: {work}/out/{os.path.basename(path)}/{name}}}}}]}}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--window", type=float, default=300)
    ap.add_argument("--secrets", type=int, default=1000)
    ap.add_argument("--json")
    a = ap.parse_args()
    stack = Stack("credentials").wait()
    work = tempfile.mkdtemp(prefix="secret-ferry-bench-creds-")
    try:
        write_external_id(work)
        role = create_role(stack.moto)
        # at least 101: the memory figure gives 101 roles a secret each
        create_secrets(admin_client(stack.moto), "bench/", max(a.secrets, 101), 200)
        results = {}

        # 1: one role, many secrets, a refresh every minute.
        cfg = write_config(os.path.join(work, "one-role.yaml"), {"r": (role, ["duration: 15m", "refreshBefore: 14m"])},
                           [(f"s{i}", f"bench/s{i}", "r") for i in range(a.secrets)], work)
        r = run(a.binary, cfg, stack, a.window)
        count = metric(r["metrics"], 'secret_ferry_assume_role_duration_seconds_count{role="r"}')
        total = metric(r["metrics"], 'secret_ferry_assume_role_duration_seconds_sum{role="r"}')
        results["one_role"] = {
            "secrets": a.secrets, "window_s": r["window_s"], "assume_role_calls": r["calls"].get("AssumeRole", 0),
            "get_secret_value_calls": r["calls"].get("GetSecretValue", 0),
            "assume_role_mean_ms": round(1000 * total / count, 1) if count else None,
            "assume_role_count_in_histogram": count, "rss_kib": r["rss_kib"],
        }

        # 2: memory per role: 1 role + 1 secret, then 101 distinct roles with 1 secret each.
        def roles_config(n):
            roles = {f"r{i}": (f"arn:aws:iam::{ACCOUNT}:role/Bench{i}", []) for i in range(n)}
            return write_config(os.path.join(work, f"roles-{n}.yaml"), roles,
                                [(f"s{i}", f"bench/s{i}", f"r{i}") for i in range(n)], work)
        one = run(a.binary, roles_config(1), stack, 5)
        many = run(a.binary, roles_config(101), stack, 5)
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
        stack.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
