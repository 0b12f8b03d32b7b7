#!/usr/bin/env bash
# Packaging checks: helm lint (strict, real values) and rendering of charts/secret-ferry in every
# deployment shape, kubernetes-validate --strict for Kubernetes 1.29 and 1.35, `secret-ferry
# validate` on every rendered config, RBAC/securityContext policy, deploy/ kept in sync with the
# chart, hadolint on the Dockerfile, and a negative test per check. See .ci/chart_check.py.
#
#   scripts/chart-check.sh                  check
#   scripts/chart-check.sh --update-deploy  regenerate deploy/ from the chart, then check
#
# The secret-ferry binary comes from $SECRET_FERRY_BIN, else
# ${CARGO_TARGET_DIR:-$HOME/.cache/secret-ferry/target}/debug/secret-ferry (scripts/test.sh has
# built it with `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
ensure_venv
export SECRET_FERRY_BIN="${SECRET_FERRY_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/secret-ferry/target}/debug/secret-ferry}"
if [ ! -x "$SECRET_FERRY_BIN" ]; then
    echo "chart-check: $SECRET_FERRY_BIN is missing: run 'CARGO_TARGET_DIR=\$HOME/.cache/secret-ferry/target cargo build --locked' or set SECRET_FERRY_BIN" >&2
    exit 1
fi
exec "$VENV/bin/python" .ci/chart_check.py "$@"
