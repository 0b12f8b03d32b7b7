#!/usr/bin/env bash
# The demo: a local AWS stand-in, a role in a second account guarded by an ExternalId,
# a JSON secret there; secret-ferry syncs it into ./demo-out/db, the secret is rotated,
# and the files and metrics follow.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
ensure_venv

echo "== building secret-ferry"
cargo build --quiet --locked
BIN="${CARGO_TARGET_DIR:-target}/debug/secret-ferry"

OUT="$PWD/demo-out"
rm -rf "$OUT" && mkdir -p "$OUT"
AWS_PORT=$(free_port)
ADMIN_PORT=$(free_port)
"$MOTO_SERVER" -H 127.0.0.1 -p "$AWS_PORT" > "$OUT/aws-stand-in.log" 2>&1 &
MOTO_PID=$!
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null || true
    kill "$MOTO_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
ENDPOINT="http://127.0.0.1:$AWS_PORT"
for _ in $(seq 100); do curl -sf -o /dev/null "$ENDPOINT/moto-api/data.json" && break; sleep 0.1; done

export AWS_ENDPOINT_URL="$ENDPOINT" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
echo "== creating a cross-account role with an ExternalId and a JSON secret (local AWS stand-in on $ENDPOINT)"
umask 077
python3 -c 'import uuid; print(uuid.uuid4())' > "$OUT/external-id"
ROLE_ARN=$("$VENV/bin/python" scripts/demo_aws.py "$ENDPOINT" setup "$(cat "$OUT/external-id")")
cat > "$OUT/config.yaml" <<YAML
region: us-east-1
roles:
  shared:
    roleArn: $ROLE_ARN
    externalIdFile: $OUT/external-id
secrets:
  - name: db
    secretId: demo/db
    role: shared
    refreshInterval: 2s
    targets:
      - file:
          dir: $OUT/db
YAML
echo "== config ($OUT/config.yaml)"
cat "$OUT/config.yaml"
"$BIN" validate --config "$OUT/config.yaml"

echo "== running secret-ferry (log: $OUT/secret-ferry.log)"
"$BIN" run --config "$OUT/config.yaml" --listen "127.0.0.1:$ADMIN_PORT" > "$OUT/secret-ferry.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do [ -e "$OUT/db/password" ] && break; sleep 0.1; done
show() {
    ls -la "$OUT/db"
    for f in "$OUT"/db/*; do printf '  %s = %s\n' "$(basename "$f")" "$(cat "$f")"; done
}
show

echo "== rotating the secret; secret-ferry polls every 2s"
"$VENV/bin/python" scripts/demo_aws.py "$ENDPOINT" rotate
for _ in $(seq 100); do grep -q rotated "$OUT/db/password" 2>/dev/null && break; sleep 0.1; done
show

echo "== metrics (http://127.0.0.1:$ADMIN_PORT/metrics)"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^secret_ferry_'
echo "== readiness: $(curl -s "http://127.0.0.1:$ADMIN_PORT/readyz")"

kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=
echo "== daemon log"
cat "$OUT/secret-ferry.log"
