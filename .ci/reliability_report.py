#!/usr/bin/env python3
"""Prints the figures the reliability tests recorded (HARNESS/figures/*.json) as one
Markdown section per test, the raw material of docs/reliability.md.

Usage: reliability_report.py HARNESS_DIR [--markdown OUT]
"""
import json
import os
import sys


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    figures = os.path.join(argv[0], "figures")
    names = sorted(n for n in os.listdir(figures) if n.endswith(".json")) if os.path.isdir(figures) else []
    lines = ["# Reliability figures", ""]
    for name in names:
        with open(os.path.join(figures, name)) as f:
            data = json.load(f)
        lines.append(f"## {name[:-5]}")
        lines.append("")
        lines.append("```json")
        lines.append(json.dumps(data, indent=2, sort_keys=True))
        lines.append("```")
        lines.append("")
    text = "\n".join(lines)
    if len(argv) == 3 and argv[1] == "--markdown":
        with open(argv[2], "w") as f:
            f.write(text)
    print(f"reliability figures: {len(names)} sets in {figures}")
    for name in names:
        print(f"  {name[:-5]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
