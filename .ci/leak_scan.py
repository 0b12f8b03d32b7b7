#!/usr/bin/env python3
"""Leak scan: fails if any registered canary shows up in anything the daemon said.

The test harness (tests/it/common) registers every canary it makes up (secret values,
ExternalIds) and every credential secret moto issued through the proxy (session tokens,
secret keys) in HARNESS/canaries.txt, and captures what the daemon said -- logs of every
run, /metrics and /readyz answers, `check` output, Kubernetes Events, the tests' own
in-process logs -- under HARNESS/captures/. Any moto session token (fixed prefix) is a
leak too, registered or not.

Usage: leak_scan.py HARNESS_DIR      scan; exit 1 on a hit or an empty harness
       leak_scan.py --self-test      prove the scan finds planted leaks
"""
import json
import os
import sys
import tempfile

# moto's session tokens all start with this (moto/sts/utils.py).
TOKEN_PREFIX = b"FQoGZXIvYXdzEBYaD"
CANARY_MARK = b"canary-"


def load_canaries(harness):
    path = os.path.join(harness, "canaries.txt")
    if not os.path.exists(path):
        return set()
    with open(path, "rb") as f:
        return {line.rstrip(b"\n") for line in f if line.strip()}


def scan(harness):
    canaries = load_canaries(harness)
    marked = {c for c in canaries if c.startswith(CANARY_MARK)}
    other = canaries - marked
    lengths = sorted({len(c) for c in marked})
    captures = os.path.join(harness, "captures")
    files = sorted(os.listdir(captures)) if os.path.isdir(captures) else []
    hits, scanned = [], 0
    for name in files:
        with open(os.path.join(captures, name), "rb") as f:
            data = f.read()
        scanned += len(data)
        pos = data.find(CANARY_MARK)
        while pos != -1:
            for n in lengths:
                if data[pos : pos + n] in marked:
                    hits.append((name, data[pos : pos + n].decode(errors="replace")))
                    break
            pos = data.find(CANARY_MARK, pos + 1)
        for c in other:
            if c in data:
                hits.append((name, c[:12].decode(errors="replace") + "..."))
        if TOKEN_PREFIX in data:
            hits.append((name, "a moto session token"))
    kinds = {}
    for c in marked:
        label = c.decode(errors="replace").split("-")[1]
        kinds[label] = kinds.get(label, 0) + 1
    return {
        "canaries": len(canaries),
        "canaries_from_aws": len(other),
        "canary_labels": len(kinds),
        "capture_files": len(files),
        "bytes_scanned": scanned,
        "hits": len(hits),
    }, hits


def main(harness):
    summary, hits = scan(harness)
    print("leak scan: {canaries} canaries ({canaries_from_aws} issued by AWS), "
          "{capture_files} captures, {bytes_scanned} bytes, {hits} hits".format(**summary))
    for name, what in hits[:50]:
        print(f"  LEAK in {name}: {what}")
    if summary["canaries"] == 0 or summary["capture_files"] == 0:
        print("leak scan: nothing to scan -- the harness registered no canary or captured nothing")
        return 1
    figures = os.path.join(harness, "figures")
    os.makedirs(figures, exist_ok=True)
    with open(os.path.join(figures, "leak_scan.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return 1 if hits else 0


def self_test():
    """The scan must catch each kind of leak, and pass a clean harness."""
    cases = {
        "marked": (b"canary-value-1-00000000000000ab", b"log line canary-value-1-00000000000000ab end"),
        "aws": (b"AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd", b"key=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"),
        "token": (b"canary-unused-1-00000000000000cd", b"token " + TOKEN_PREFIX + b"xyz"),
        "clean": (b"canary-value-1-00000000000000ef", b"nothing to see: canary-value-1-000000000000"),
    }
    for name, (canary, text) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "captures"))
            with open(os.path.join(d, "canaries.txt"), "wb") as f:
                f.write(canary + b"\n")
            with open(os.path.join(d, "captures", "x.txt"), "wb") as f:
                f.write(text)
            _, hits = scan(d)
            want = 0 if name == "clean" else 1
            if len(hits) != want:
                print(f"leak scan self-test '{name}': {len(hits)} hits, want {want}")
                return 1
    print("leak scan self-test: ok")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
