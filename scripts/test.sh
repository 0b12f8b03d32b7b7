#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the end-to-end tests against a real
# AWS API stand-in (moto, installed here on first use), the reliability suite, the image
# built with podman and the chart's pods played in it, the leak scan over everything the
# tests captured, the chart checks and the alert rules under promtool.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
ensure_venv
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
TARGET_DIR="$(cargo metadata --locked --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
# Canaries, captured daemon output and reliability figures of this run only.
export SECRET_FERRY_HARNESS_DIR="$TARGET_DIR/harness"
rm -rf "$SECRET_FERRY_HARNESS_DIR"
cargo test --locked
# The image (podman installed on first use) and the chart's pods played with podman kube play:
# the tests/it/pods tests, ignored by a plain `cargo test` because they need the image.
scripts/image.sh
cargo test --locked --test it pods:: -- --ignored --test-threads=1
python3 .ci/leak_scan.py --self-test
python3 .ci/leak_scan.py "$SECRET_FERRY_HARNESS_DIR"
python3 .ci/reliability_report.py "$SECRET_FERRY_HARNESS_DIR"
SECRET_FERRY_BIN="$TARGET_DIR/debug/secret-ferry" scripts/chart-check.sh
scripts/alert-rules-test.sh
# The benchmark harness in its smoke mode (N = 10, seconds): it fails only if a figure could
# not be measured, never on a figure's value.
python3 bench/run.py --smoke --binary "$TARGET_DIR/debug/secret-ferry"
