#!/usr/bin/env bash
# The chart's alert rules tested with the real Prometheus rule engine: promtool (Debian's
# `prometheus` package, installed on first use) runs `check rules` on the rendered
# PrometheusRule and `test rules` on the series the daemon exports for each alert condition in
# every metrics.perSecretSeries mode (written by the alert_scrapes integration test). Also runs
# `promtool check metrics` on a real /metrics answer of a running daemon. See .ci/alert_rules_test.py.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
ensure_venv
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v promtool >/dev/null 2>&1; then
    echo "alert-rules: installing promtool (Debian package prometheus)" >&2
    log="$(mktemp)"
    as_root apt-get update -qq >"$log" 2>&1 || true
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >>"$log" 2>&1; then
        echo "alert-rules: apt-get install prometheus failed; its log: $log" >&2
        exit 1
    fi
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The scrapes of every alert condition, and a real /metrics answer of a running daemon
# (metrics_format writes it into the harness dir).
SECRET_FERRY_HARNESS_DIR="$work/harness" SECRET_FERRY_ALERT_SCRAPES="$work/scrapes.json" \
    cargo test --locked --test it -- --quiet alert_scrapes metrics_format
"$VENV/bin/python" .ci/alert_rules_test.py "$work/scrapes.json" --promtool "$(command -v promtool)" \
    --metrics-answer "$work/harness/metrics-answer.prom"
