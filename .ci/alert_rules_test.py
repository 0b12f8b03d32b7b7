#!/usr/bin/env python3
"""The chart's alert rules, tested with the real Prometheus rule engine (`promtool test rules`) on
the series the daemon exports.

Input: the JSON written by the `alert_scrapes` integration test (two scrapes of the daemon's
metrics registry per alert condition and `metrics.perSecretSeries` mode, and the alerts the
condition must raise). For each chart shape (controller with leader election, sidecar) the
PrometheusRule is rendered with the real Helm library; `promtool check rules` validates it as
rendered. Each (case, mode) becomes a promtool test group: every series of the second scrape, with
the namespace and pod labels Prometheus adds, held for 40 one-minute steps -- counters grow by
what they grew between the scrapes, `_timestamp_seconds` gauges are rebased to promtool's clock
and move on by one step per step only if they moved between the scrapes (a secret that kept
syncing) -- and at 25 minutes exactly the case's alerts fire, every other alert is silent.

`promtool check metrics` lints the exposition of every mode.

Annotations are templates for people, not logic: the tested copy of the rules drops them (promtool
would otherwise need each rendered text); `check rules` still parses them.

    python3 .ci/alert_rules_test.py SCRAPES.json --promtool /usr/bin/promtool
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts/secret-ferry"
NAMESPACE = "ci"
RELEASE = "ci"
POD = "ci-secret-ferry-5d8f7c9b4-x2k9q"
STEPS = 40
EVAL_AT = "25m"
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$')

SHAPES = {
    # name: (values overrides, whether the controller-only alerts exist)
    "controller": ({"controller": {"replicas": 2}}, True),
    "sidecar": ({"mode": "sidecar", "rbac": {"create": False}}, False),
}


def base_values() -> dict:
    return yaml.safe_load((CHART / "ci/controller-all-values.yaml").read_text())


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render_rules(overrides: dict) -> dict:
    values = merge(base_values(), overrides)
    with helm.Chart.load(str(CHART)) as ch:
        rendered = ch.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    for path, text in rendered.items():
        for doc in yaml.safe_load_all(text) if path.endswith(".yaml") else []:
            if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule":
                return {"groups": doc["spec"]["groups"]}
    raise SystemExit(f"no PrometheusRule rendered with {overrides}")


def parse(text: str) -> tuple[dict[str, str], dict[str, float]]:
    """Types by family and values by series (`name{labels}`) of one exposition."""
    types, values = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = LINE.match(line)
            if not m:
                raise SystemExit(f"cannot parse the exposition line {line!r}")
            values[(m.group(1) + (m.group(2) or ""))] = float(m.group(3))
    return types, values


def kind_of(series: str, types: dict[str, str]) -> str:
    name = series.split("{", 1)[0]
    if name in types:
        return types[name]
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return "counter" if types.get(base) == "histogram" else "gauge"


def with_target_labels(series: str) -> str:
    extra = f'namespace="{NAMESPACE}",pod="{POD}"'
    if "{" in series:
        name, rest = series.split("{", 1)
        return f"{name}{{{extra},{rest}"
    return f"{series}{{{extra}}}"


def number(v: float) -> str:
    return repr(round(v, 6))


def input_series(case: dict) -> list[dict]:
    (t1, s1), (t2, s2) = [(s["time"], s["text"]) for s in case["scrapes"]]
    types, first = parse(s1)
    types2, second = parse(s2)
    types.update(types2)
    out = []
    for series, v2 in sorted(second.items()):
        v1 = first.get(series, v2)
        kind = kind_of(series, types)
        if kind == "counter":
            values = f"{number(v1)}+{number(max(v2 - v1, 0))}x{STEPS}"
        elif series.split("{", 1)[0].endswith("_timestamp_seconds") and v2 > 0:
            # Rebased so that the second scrape is promtool's time 0.
            start = v2 - t2
            values = f"{number(start)}+60x{STEPS}" if v2 != v1 else f"{number(start)}x{STEPS}"
        else:
            values = f"{number(v2)}x{STEPS}"
        out.append({"series": with_target_labels(series), "values": values})
    return out


def tested_rules(rules: dict) -> dict:
    stripped = json.loads(json.dumps(rules))
    for group in stripped["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return stripped


def alerts_of(rules: dict) -> dict[str, dict]:
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def expected_labels(rule: dict, subject: dict) -> dict:
    labels = dict(subject)
    # `(sum(...) or vector(0)) == 0` keeps no label at all; every other rule keeps the target's.
    if "vector(0)" not in rule["expr"]:
        labels.update({"namespace": NAMESPACE, "pod": POD})
    labels.update({k: str(v) for k, v in rule.get("labels", {}).items()})
    return labels


def test_groups(cases: list[dict], rules: dict, controller: bool) -> list[dict]:
    alerts = alerts_of(rules)
    groups = []
    for case in cases:
        if case["controller_only"] and not controller:
            continue
        expected: dict[str, list] = {name: [] for name in alerts}
        for e in case["expected"]:
            if e["alert"] not in alerts:
                raise SystemExit(f"case {case['case']}: the rules have no alert {e['alert']}")
            expected[e["alert"]].append({"exp_labels": expected_labels(alerts[e["alert"]], e["labels"])})
        groups.append({
            "name": f"{case['case']} ({case['mode']})",
            "interval": "1m",
            "input_series": input_series(case),
            "alert_rule_test": [
                {"alertname": name, "eval_time": EVAL_AT, "exp_alerts": exp}
                for name, exp in sorted(expected.items())
            ],
        })
    return groups


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scrapes", type=Path)
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--metrics-answer", type=Path, required=True,
                    help="a /metrics answer of a running daemon, for promtool check metrics")
    args = ap.parse_args()
    cases = json.loads(args.scrapes.read_text())
    modes = sorted({c["mode"] for c in cases})
    failed = False
    # `promtool check metrics` (naming, units, types): the running daemon's answer, and the
    # registry's in every mode with the most series (the stale case's second scrape).
    answers = [("a running daemon's /metrics", args.metrics_answer.read_text())]
    answers += [(f"mode {c['mode']}", c["scrapes"][1]["text"]) for c in cases if c["case"] == "stale"]
    for what, text in answers:
        lint = subprocess.run([args.promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        if lint.returncode != 0 or lint.stdout.strip() or lint.stderr.strip():
            print(f"alert-rules: promtool check metrics ({what}) is not clean:\n{lint.stdout}{lint.stderr}")
            failed = True
        else:
            print(f"alert-rules: promtool check metrics ({what}): clean ({len(text)} bytes)")
    with tempfile.TemporaryDirectory(prefix="secret-ferry-alerts-") as tmp:
        for shape, (overrides, controller) in SHAPES.items():
            rules = render_rules(overrides)
            rendered = Path(tmp, f"{shape}-rules.yaml")
            rendered.write_text(yaml.safe_dump(rules, sort_keys=False))
            check = subprocess.run([args.promtool, "check", "rules", str(rendered)], capture_output=True, text=True)
            if check.returncode != 0:
                print(f"alert-rules: promtool check rules ({shape}) failed:\n{check.stdout}{check.stderr}")
                failed = True
                continue
            tested = Path(tmp, f"{shape}-tested-rules.yaml")
            tested.write_text(yaml.safe_dump(tested_rules(rules), sort_keys=False))
            groups = test_groups(cases, rules, controller)
            test = Path(tmp, f"{shape}-test.yaml")
            test.write_text(yaml.safe_dump({"rule_files": [tested.name], "evaluation_interval": "1m",
                                            "tests": groups}, sort_keys=False))
            run = subprocess.run([args.promtool, "test", "rules", str(test)], capture_output=True, text=True, cwd=tmp)
            # The test can fail: the same groups with the stale case's alerts expected silent
            # must not pass.
            wrong = json.loads(json.dumps(groups))
            for g in wrong:
                if g["name"].startswith("stale "):
                    for t in g["alert_rule_test"]:
                        t["exp_alerts"] = []
            bad = Path(tmp, f"{shape}-wrong-test.yaml")
            bad.write_text(yaml.safe_dump({"rule_files": [tested.name], "evaluation_interval": "1m",
                                           "tests": wrong}, sort_keys=False))
            if subprocess.run([args.promtool, "test", "rules", str(bad)], capture_output=True, cwd=tmp).returncode == 0:
                print(f"alert-rules: {shape}: a wrong expectation passed too: the test cannot fail")
                failed = True
            n_alerts = len(alerts_of(rules))
            if run.returncode != 0:
                print(f"alert-rules: promtool test rules ({shape}) failed:\n{run.stdout}{run.stderr}")
                failed = True
            else:
                print(f"alert-rules: {shape}: {len(groups)} cases x {n_alerts} alerts pass "
                      f"(metrics modes {', '.join(modes)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
