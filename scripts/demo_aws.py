"""Demo fixtures in the local AWS stand-in (moto), for scripts/demo.sh.

Two accounts, as in a real cross-account set-up:
- 123456789012 (moto's default account): the IAM user `secret-ferry-demo` the daemon runs as;
- 111111111111: the secrets, the role `CrossAccountSecretsRole` whose trust policy requires an
  ExternalId, and an admin user `demo-admin` that rotates the secret.

Everything is created while moto's auth is off; demo.sh turns it on afterwards, and from then on
moto checks every call against these users, roles and policies.

usage: demo_aws.py serve PORT
           moto's server on 127.0.0.1:PORT, checking trust policies across accounts (see
           check_trust_across_accounts)
       demo_aws.py ENDPOINT caller OUT
           the caller user and its key; writes OUT/aws-credentials ([default] profile, mode
           0600) and prints the user's ARN
       demo_aws.py ENDPOINT setup OUT ROLE_ARN POLICIES_JSON
           POLICIES_JSON is `secret-ferry iam-policy --output json` for the demo's config: its
           trust policy (with the ExternalId read from the file its placeholder names) goes on
           the role, its permissions policy on the role, its caller policy on the caller; then the
           admin user (key in OUT/secrets-admin.json, mode 0600) and the secret
       demo_aws.py ENDPOINT rotate OUT
           a new version of the secret, as demo-admin

No key, token or ExternalId is printed: they go to files under OUT only.
"""
import json
import os
import re
import sys

import boto3

CALLER_ACCOUNT = "123456789012"
SECRETS_ACCOUNT = "111111111111"
CALLER_USER = "secret-ferry-demo"
SECRETS_ADMIN = "demo-admin"
SECRET = "demo/db"
REGION = "us-east-1"
# With auth off, moto accepts any key and files what it creates under its default account
# (123456789012); the keys of a role assumed in another account create there instead.
ANY_KEY = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def check_trust_across_accounts():
    """moto 5.2.5 checks a role's trust policy (Principal, sts:ExternalId) only when the caller
    is in the role's own account: it looks the role up in the caller's account, does not find
    one in another account, and then lets the caller's own policy alone decide, so a wrong
    ExternalId is accepted. AWS always checks the trust policy. This looks the role up in the
    account of its ARN instead; the evaluation itself (moto's IAMPolicy, with moto's condition
    values) is unchanged. Refuses to start if moto's internals are not the expected ones."""
    from moto.iam import access_control as ac

    needed = ("IAMRequestBase", "IAMPolicy", "PermissionResult", "NotFoundException", "iam_backends",
              "REQUIRE_RESOURCE_ACCESS_POLICIES_CHECK", "format_incoming_conditional_values")
    base = getattr(ac, "IAMRequestBase", None)
    if any(not hasattr(ac, n) for n in needed) or not all(
            hasattr(base, m) for m in ("_is_assuming_role_operation", "_check_role_trust_relationship")):
        raise SystemExit("demo_aws.py: this moto is not the pinned 5.2.5: cannot make it check trust policies")

    def role_of(arn):
        parts = arn.split(":")  # arn:PARTITION:iam::ACCOUNT:role/NAME
        if len(parts) != 6 or not parts[5].startswith("role/"):
            return None
        try:
            return ac.iam_backends[parts[4]][parts[1]].get_role_by_arn(arn)
        except ac.NotFoundException:
            return None

    def is_assuming_role_operation(self, resource_arn):
        return self._action in ac.REQUIRE_RESOURCE_ACCESS_POLICIES_CHECK and role_of(resource_arn) is not None

    def check_role_trust_relationship(self, role_arn):
        trust = ac.IAMPolicy(role_of(role_arn).assume_role_policy_document)
        result = trust.is_action_permitted(self._action, role_arn, self._access_key.arn,
                                           ac.format_incoming_conditional_values(self._data))
        return result == ac.PermissionResult.PERMITTED

    base._is_assuming_role_operation = is_assuming_role_operation
    base._check_role_trust_relationship = check_role_trust_relationship


def serve(port):
    check_trust_across_accounts()
    from moto.server import main

    main(["-H", "127.0.0.1", "-p", port])


def client(endpoint, service, creds=None):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **(creds or ANY_KEY))


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def bootstrap_secrets_account(endpoint):
    """Credentials in the secrets account while auth is off: moto lets anyone assume any role
    there (this one does not even exist); used only to create demo-admin and the fixtures."""
    out = client(endpoint, "sts").assume_role(
        RoleArn=f"arn:aws:iam::{SECRETS_ACCOUNT}:role/bootstrap", RoleSessionName="demo-setup"
    )["Credentials"]
    return {
        "aws_access_key_id": out["AccessKeyId"],
        "aws_secret_access_key": out["SecretAccessKey"],
        "aws_session_token": out["SessionToken"],
    }


def caller(endpoint, out_dir):
    iam = client(endpoint, "iam")
    user = iam.create_user(UserName=CALLER_USER)["User"]
    key = iam.create_access_key(UserName=CALLER_USER)["AccessKey"]
    write_private(
        os.path.join(out_dir, "aws-credentials"),
        f"[default]\naws_access_key_id = {key['AccessKeyId']}\n"
        f"aws_secret_access_key = {key['SecretAccessKey']}\n",
    )
    print(user["Arn"])


def external_id_for(placeholder):
    """`secret-ferry iam-policy` never prints the ExternalId: it writes
    "<EXTERNAL_ID: the content of PATH>". The stand-in's trust policy needs the real value."""
    m = re.fullmatch(r"<EXTERNAL_ID: the content of (.+)>", placeholder)
    if not m:
        raise SystemExit(f"demo_aws.py: unexpected ExternalId placeholder in the trust policy: {placeholder!r}")
    with open(m.group(1)) as f:
        return f.read().strip()


def fill_external_id(trust):
    for statement in trust["Statement"]:
        equals = statement.get("Condition", {}).get("StringEquals", {})
        if "sts:ExternalId" in equals:
            equals["sts:ExternalId"] = external_id_for(equals["sts:ExternalId"])
            return trust
    raise SystemExit("demo_aws.py: the generated trust policy has no sts:ExternalId condition")


def for_moto(permissions):
    """The generated permissions policy names each secret's ARN (`...:secret:demo/db-??????`),
    which is what real AWS needs. moto 5.2.5 evaluates Secrets Manager calls only against the
    resource `*`, never the secret's ARN (and its wildcard matcher fails with HTTP 500 on the
    `?`s), so for the stand-in the Resource is widened to `*`. The Actions stay as generated."""
    for statement in permissions["Statement"]:
        if any(str(a).startswith("secretsmanager:") for a in _list(statement["Action"])):
            statement["Resource"] = "*"
    return permissions


def _list(x):
    return x if isinstance(x, list) else [x]


def setup(endpoint, out_dir, role_arn, policies_path):
    with open(policies_path) as f:
        policies = json.load(f)
    if len(policies) != 1:
        raise SystemExit(f"demo_aws.py: expected the documents of one role, got {sorted(policies)}")
    (docs,) = policies.values()
    role_name = role_arn.rsplit("/", 1)[1]
    boot = bootstrap_secrets_account(endpoint)

    # The secrets account: the role the daemon assumes.
    iam = client(endpoint, "iam", boot)
    iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(fill_external_id(docs["trustPolicy"])))
    iam.put_role_policy(RoleName=role_name, PolicyName="secret-ferry-read",
                        PolicyDocument=json.dumps(for_moto(docs["permissionsPolicy"])))

    # The caller account: the daemon's own identity may assume the role, and nothing else
    # (sts:GetCallerIdentity needs no permission, on AWS as in moto).
    client(endpoint, "iam").put_user_policy(UserName=CALLER_USER, PolicyName="secret-ferry-assume",
                                            PolicyDocument=json.dumps(docs["callerPolicy"]))

    # The secrets account's admin, who rotates the secret once auth is on. moto checks Secrets
    # Manager permissions against the resource `*` only (see for_moto).
    iam.create_user(UserName=SECRETS_ADMIN)
    iam.put_user_policy(UserName=SECRETS_ADMIN, PolicyName="rotate-demo-secret", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:PutSecretValue", "Resource": "*"}],
    }))
    key = iam.create_access_key(UserName=SECRETS_ADMIN)["AccessKey"]
    write_private(os.path.join(out_dir, "secrets-admin.json"), json.dumps(
        {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}))

    client(endpoint, "secretsmanager", boot).create_secret(
        Name=SECRET,
        SecretString=json.dumps({"username": "app", "password": "first-password", "port": 5432}),
    )
    print(f"role in account {SECRETS_ACCOUNT}: {role_arn}", file=sys.stderr)
    print(f"  trust policy: the generated one (Principal {docs['trustPolicy']['Statement'][0]['Principal']['AWS']}, "
          "sts:ExternalId = the content of the external-id file)", file=sys.stderr)
    print("  permissions policy: the generated one, its Resource widened to \"*\" for the stand-in (moto checks "
          "Secrets Manager permissions only against \"*\", never a secret's ARN)", file=sys.stderr)
    print(f"caller {CALLER_USER} in account {CALLER_ACCOUNT}: the generated caller policy (sts:AssumeRole on the role) "
          "and nothing else", file=sys.stderr)
    print(f"secret in account {SECRETS_ACCOUNT}: {SECRET} with keys username, password, port", file=sys.stderr)


def rotate(endpoint, out_dir):
    with open(os.path.join(out_dir, "secrets-admin.json")) as f:
        admin = json.load(f)
    client(endpoint, "secretsmanager", admin).put_secret_value(
        SecretId=SECRET,
        SecretString=json.dumps({"username": "app", "password": "rotated-password"}),
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "serve":
        serve(args[1])
        sys.exit(0)
    commands = {"caller": (caller, 1), "setup": (setup, 3), "rotate": (rotate, 1)}
    if len(args) < 2 or args[1] not in commands or len(args) != 2 + commands[args[1]][1]:
        raise SystemExit(__doc__)
    fn, _ = commands[args[1]]
    fn(args[0], *args[2:])
