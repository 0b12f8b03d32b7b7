"""The naive baseline that bench/run.py measures next to secret-ferry.

It does what a hand-written sync script typically does, and nothing cleverer: for every secret,
every interval,

  1. a fresh STS AssumeRole of the cross-account role, with the ExternalId read from its file;
  2. a new Secrets Manager client with those credentials (a boto3 client is bound to its
     credentials; all clients come from one boto3 session, so the service models are loaded once);
  3. GetSecretValue, and the SecretString written to the secret's file (temp file + rename, so
     a reader never sees half a file), whether or not it changed.

Passes start every `refreshIntervalSeconds` (fixed rate: a pass that overruns is followed at once
by the next). Base credentials, region and endpoint come from the environment (AWS_ACCESS_KEY_ID,
AWS_ENDPOINT_URL, ...), as for the daemon.

usage: python bench/baseline.py --config BASELINE.json [--once]

BASELINE.json: {"region": ..., "roleArn": ..., "externalIdFile": ..., "refreshIntervalSeconds": N,
                "secrets": [{"secretId": ..., "path": ...}, ...]}
--once: one pass, then exit 0 if every secret was written, else 1.
"""
import argparse
import json
import os
import sys
import time

import boto3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--once", action="store_true")
    a = ap.parse_args()
    with open(a.config) as f:
        cfg = json.load(f)
    session = boto3.session.Session(region_name=cfg["region"])
    sts = session.client("sts")

    def sync(secret):
        with open(cfg["externalIdFile"]) as f:
            external_id = f.read().strip()
        creds = sts.assume_role(RoleArn=cfg["roleArn"], RoleSessionName="baseline", ExternalId=external_id)["Credentials"]
        sm = session.client("secretsmanager", aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
        value = sm.get_secret_value(SecretId=secret["secretId"])["SecretString"]
        path = secret["path"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(value)
        os.replace(tmp, path)

    interval = cfg["refreshIntervalSeconds"]
    next_pass = time.monotonic()
    while True:
        failed = 0
        for secret in cfg["secrets"]:
            try:
                sync(secret)
            except Exception as e:  # a naive loop logs and carries on
                failed += 1
                print(f"{secret['secretId']}: {e}", file=sys.stderr, flush=True)
        if a.once:
            sys.exit(1 if failed else 0)
        next_pass += interval
        time.sleep(max(0.0, next_pass - time.monotonic()))
        next_pass = max(next_pass, time.monotonic())


if __name__ == "__main__":
    main()
