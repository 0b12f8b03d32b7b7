#!/usr/bin/env python3
"""How long `secret-ferry validate` takes for a config of N secrets (issue 18: a config of 100,000
secrets is validated in bounded time, with no quadratic step), and its peak RSS. Prints one line
per N; with --name-length, every secret name (and so its id and target path) is that long, to show
that a long name changes the figure by its length only.

    python3 bench/validate_scale.py --binary target/release/secret-ferry --sizes 1000,10000,100000
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def config(n: int, name_length: int) -> str:
    lines = ["region: us-east-1", "roles:",
             "  shared: {roleArn: 'arn:aws:iam::111111111111:role/R', externalIdFile: /run/ext}",
             "secrets:"]
    for i in range(n):
        name = f"s{i:06d}".ljust(name_length, "x")
        lines.append(f"  - {{name: {name}, secretId: app/{name}, role: shared, "
                     f"targets: [{{file: {{dir: /var/run/s/{name}}}}}]}}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--name-length", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in a.sizes.split(",")):
            path = Path(tmp, f"config-{n}.yaml")
            path.write_text(config(n, a.name_length))
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.monotonic()
            run = subprocess.run([a.binary, "validate", "--config", str(path)], capture_output=True, text=True)
            took = time.monotonic() - started
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if run.returncode != 0:
                print(f"validate failed for N={n}: {run.stderr[:500]}", file=sys.stderr)
                return 1
            print(f"N={n:>7} names of {a.name_length:>3}: {took:6.2f} s, "
                  f"{path.stat().st_size / 1e6:6.1f} MB of YAML, peak RSS {max(peak, before) / 1024:6.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
