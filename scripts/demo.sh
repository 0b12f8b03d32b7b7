#!/usr/bin/env bash
# The demo, on a local AWS stand-in (moto) with its permission checks on: an IAM user in one
# account (the daemon's identity), a role in a second account whose trust policy requires an
# ExternalId, and a JSON secret there. A wrong ExternalId is refused; with the right one
# secret-ferry syncs the secret into ./demo-out/db; the secret is rotated and the files and
# metrics follow.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh

echo "== the AWS stand-in: moto and boto3 at the versions pinned in .ci/requirements.txt"
echo "   (installed once into $VENV, about 300 MB; later runs reuse it)"
ensure_venv_only moto boto3

echo "== building secret-ferry (debug build): the first build compiles a few hundred crates and"
echo "   takes several minutes; later runs take seconds"
cargo build --locked
BIN="${CARGO_TARGET_DIR:-target}/debug/secret-ferry"

OUT="$PWD/demo-out"
umask 077
rm -rf "$OUT" && mkdir -p "$OUT"
AWS_PORT=$(free_port)
ADMIN_PORT=$(free_port)
# Whatever AWS settings this shell has (a profile, a real session token) must not leak into the demo.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^AWS_' || true)
# moto's server, made to check trust policies across accounts as AWS does (see demo_aws.py).
"$VENV/bin/python" scripts/demo_aws.py serve "$AWS_PORT" > "$OUT/aws-stand-in.log" 2>&1 &
MOTO_PID=$!
DAEMON_PID=
cleanup() {
    if [ -n "$DAEMON_PID" ]; then kill "$DAEMON_PID" 2>/dev/null || true; fi
    kill "$MOTO_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
ENDPOINT="http://127.0.0.1:$AWS_PORT"
for _ in $(seq 100); do curl -sf -o /dev/null "$ENDPOINT/moto-api/data.json" && break; sleep 0.1; done
if ! curl -sf -o /dev/null "$ENDPOINT/moto-api/data.json"; then
    echo "demo: the AWS stand-in did not start; its log:" >&2
    cat "$OUT/aws-stand-in.log" >&2
    exit 1
fi
export AWS_ENDPOINT_URL="$ENDPOINT" AWS_EC2_METADATA_DISABLED=true
stand_in() { "$VENV/bin/python" scripts/demo_aws.py "$ENDPOINT" "$@"; }

echo "== two accounts in the stand-in ($ENDPOINT), created while its permission checks are off"
python3 -c 'import uuid; print(uuid.uuid4())' > "$OUT/external-id"
CALLER_ARN=$(stand_in caller "$OUT")
echo "caller (the daemon's base identity) in account 123456789012: $CALLER_ARN"
ROLE_ARN="arn:aws:iam::111111111111:role/CrossAccountSecretsRole"
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
echo "== config ($OUT/config.yaml; the ExternalId is in $OUT/external-id, never printed)"
cat "$OUT/config.yaml"
"$BIN" validate --config "$OUT/config.yaml"

echo "== the IAM documents secret-ferry generates for this config and caller, applied as they are"
echo "   (secret-ferry iam-policy --config $OUT/config.yaml --caller-arn $CALLER_ARN)"
"$BIN" iam-policy --config "$OUT/config.yaml" --caller-arn "$CALLER_ARN" --output json > "$OUT/iam-policy.json"
stand_in setup "$OUT" "$ROLE_ARN" "$OUT/iam-policy.json"

echo "== turning the stand-in's permission checks on: from now on every call is checked against these policies"
curl -sf -o /dev/null -XPOST -H 'Content-Type: text/plain' --data 0 "$ENDPOINT/moto-api/reset-auth"
# The daemon runs as the caller user, with its own key (written by demo_aws.py, never printed).
AWS_ACCESS_KEY_ID=$(sed -n 's/^aws_access_key_id = //p' "$OUT/aws-credentials")
AWS_SECRET_ACCESS_KEY=$(sed -n 's/^aws_secret_access_key = //p' "$OUT/aws-credentials")
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

echo "== a wrong ExternalId in $OUT/external-id: secret-ferry check (its log: $OUT/check-wrong.log)"
RIGHT_EXTERNAL_ID=$(cat "$OUT/external-id")
echo "not-the-external-id" > "$OUT/external-id"
rc=0
"$BIN" check --config "$OUT/config.yaml" 2> "$OUT/check-wrong.log" || rc=$?
echo "(secret-ferry check exited $rc)"
if [ "$rc" -eq 0 ]; then
    echo "demo: the stand-in accepted a wrong ExternalId, so this demo would prove nothing" >&2
    exit 1
fi
echo "== the same with secret-ferry run --once (as an init container runs it)"
rc=0
"$BIN" run --once --config "$OUT/config.yaml" --listen "127.0.0.1:$ADMIN_PORT" 2>&1 || rc=$?
echo "(secret-ferry run --once exited $rc; $OUT/db/password: $([ -e "$OUT/db/password" ] && echo written || echo "not written"))"
if [ "$rc" -eq 0 ]; then
    echo "demo: run --once succeeded with a wrong ExternalId" >&2
    exit 1
fi

echo "== the right ExternalId back: secret-ferry check (its log: $OUT/check.log)"
printf '%s\n' "$RIGHT_EXTERNAL_ID" > "$OUT/external-id"
unset RIGHT_EXTERNAL_ID
"$BIN" check --config "$OUT/config.yaml" 2> "$OUT/check.log" || { cat "$OUT/check.log" >&2; exit 1; }

echo "== running secret-ferry (log: $OUT/secret-ferry.log)"
"$BIN" run --config "$OUT/config.yaml" --listen "127.0.0.1:$ADMIN_PORT" > "$OUT/secret-ferry.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do [ -e "$OUT/db/password" ] && break; sleep 0.1; done
show() {
    # db/ holds one symlink per key and ..data, a symlink to the current timestamped directory
    # (swapped in one rename on every change); the files themselves are in there.
    (cd "$OUT" && ls -la db/ db/..data/)
    for f in "$OUT"/db/*; do printf '  %s = %s\n' "$(basename "$f")" "$(cat "$f")"; done
}
show

echo "== rotating the secret: password changes, port is dropped; secret-ferry polls every 2s"
stand_in rotate "$OUT"
for _ in $(seq 100); do grep -q rotated "$OUT/db/password" 2>/dev/null && break; sleep 0.1; done
show
if [ -e "$OUT/db/port" ]; then
    echo "port is still there"
else
    echo "port is gone: keys that leave the secret leave the directory"
fi

echo "== metrics: an excerpt (the full list, with the histograms: curl http://127.0.0.1:$ADMIN_PORT/metrics)"
METRICS=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics")
printf '%s\n' "$METRICS" | grep -E '^secret_ferry_(credential_expiry_timestamp_seconds|credential_refresh_total|secret_sync_total|secret_last_success_timestamp_seconds|secret_stale|aws_api_calls_total)' \
    | while read -r series value; do
        case "$series" in
            *_timestamp_seconds*) printf '%s %s  (%s)\n' "$series" "$value" "$(date -u -d "@${value%.*}" +%FT%TZ)" ;;
            *) printf '%s %s\n' "$series" "$value" ;;
        esac
    done
echo "($(printf '%s\n' "$METRICS" | grep -c '^secret_ferry_') series in all, $(printf '%s\n' "$METRICS" | grep -c '^secret_ferry_.*_bucket') of them histogram buckets)"
echo "== readiness: $(curl -s "http://127.0.0.1:$ADMIN_PORT/readyz")"

kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=
echo "== daemon log"
cat "$OUT/secret-ferry.log"
