#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and the end-to-end tests against
# a real AWS API stand-in (moto), which this script installs on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
ensure_venv
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
SECRET_FERRY_BIN="$(cargo metadata --locked --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/secret-ferry" scripts/chart-check.sh
