"""Demo fixtures in the local AWS stand-in: a role in a second account whose trust
policy requires an ExternalId, and a JSON secret in that account.

usage: demo_aws.py ENDPOINT setup EXTERNAL_ID   -> prints the role ARN
       demo_aws.py ENDPOINT rotate
"""
import json
import sys

import boto3

SECRETS_ACCOUNT = "111111111111"
SECRET = "demo/db"


def client(endpoint, service, creds=None):
    creds = creds or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", **creds)


def admin_of_secrets_account(endpoint):
    # The stand-in files an assumed role's keys under the account in the role ARN.
    out = client(endpoint, "sts").assume_role(
        RoleArn=f"arn:aws:iam::{SECRETS_ACCOUNT}:role/admin", RoleSessionName="demo-setup"
    )["Credentials"]
    return {
        "aws_access_key_id": out["AccessKeyId"],
        "aws_secret_access_key": out["SecretAccessKey"],
        "aws_session_token": out["SessionToken"],
    }


def setup(endpoint, external_id):
    caller = client(endpoint, "sts").get_caller_identity()
    admin = admin_of_secrets_account(endpoint)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{caller['Account']}:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
        }],
    }
    iam = client(endpoint, "iam", admin)
    role = iam.create_role(
        RoleName="CrossAccountSecretsRole", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName="CrossAccountSecretsRole",
        PolicyName="read-demo-secrets",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": f"arn:aws:secretsmanager:us-east-1:{SECRETS_ACCOUNT}:secret:demo/*",
            }],
        }),
    )
    client(endpoint, "secretsmanager", admin).create_secret(
        Name=SECRET,
        SecretString=json.dumps({"username": "app", "password": "first-password", "port": 5432}),
    )
    print(f"caller (account {caller['Account']}): {caller['Arn']}", file=sys.stderr)
    print(f"role in account {SECRETS_ACCOUNT}: {role} (trust policy requires sts:ExternalId)", file=sys.stderr)
    print(f"secret in account {SECRETS_ACCOUNT}: {SECRET}", file=sys.stderr)
    print(role)


def rotate(endpoint):
    admin = admin_of_secrets_account(endpoint)
    client(endpoint, "secretsmanager", admin).put_secret_value(
        SecretId=SECRET,
        SecretString=json.dumps({"username": "app", "password": "rotated-password"}),
    )


if __name__ == "__main__":
    endpoint, command = sys.argv[1], sys.argv[2]
    if command == "setup":
        setup(endpoint, sys.argv[3])
    else:
        rotate(endpoint)
