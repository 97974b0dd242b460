"""Revoke to refused: how long until Gatehouse has confirmed in AWS that a revoked grant's older session is
refused, beside the bare AWS calls that do the same in the same run.

For each sample a grant is applied, a real session is taken from moto's STS (the role; for Identity Center the
permission set's role, under the person's user name), and then the clock runs: ``grant_revoke``, the reconcile
that removes the access, and the end's task (plan the deny for older sessions, write it, read every policy back,
evaluate them for a session issued before the end) until ``confirmed_at`` is recorded. Then, outside the clock,
the old session is judged against the policies read back from moto with the condition-aware evaluator (it must
be refused), and the deny is swept away with the clock moved in the database, as its time would have come.

The bare calls, same moto server, same run: for an IAM role principal ``DeleteRolePolicy`` + ``PutRolePolicy``
(the deny) + ``GetRolePolicy``; for a shared permission set ``DeleteAccountAssignment`` +
``PutInlinePolicyToPermissionSet`` (the deny) + ``ProvisionPermissionSet`` + ``GetInlinePolicyForPermissionSet``.
No database, no lock, no evaluation, no audit trail.

    .venv/bin/python bench/revoke_sessions.py [--samples 100]
    DATABASE_URL=postgres://root@127.0.0.1:5432/gatehouse CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/revoke_sessions.py

It works in a test database of its own (created and destroyed), never in the database named.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ["LOG_LEVEL"] = os.environ.get("LOG_LEVEL", "WARNING")
# The shared permission set kind measures the deny Gatehouse adds where the deployment allows it.
os.environ.setdefault("GATEHOUSE_END_SHARED_SET_SESSIONS", "1")

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = "bench-release-engineer"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
    ],
}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


class Kind:
    """One delivery to measure: how to grant it, where its sessions come from, what AWS holds for them."""

    def __init__(self, name: str, world: Any, url: str):
        import boto3

        self.name, self.world, self.url = name, world, url
        self.iam = boto3.client("iam", region_name=REGION, endpoint_url=url)
        self.sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=url)
        self.sts = boto3.client("sts", region_name=REGION, endpoint_url=url)
        self.instance = world.seeded["identity_center"]["instance_arn"]
        if name == "iam_role":
            self.role_arn = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
        else:
            from accessrequests.models import PermissionSet

            self.permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
            self.role_arn = self.iam.create_role(
                RoleName="AWSReservedSSO_CodePipelineReadOnly_0123456789abcdef",
                Path="/aws-reserved/sso.amazonaws.com/",
                AssumeRolePolicyDocument=json.dumps(TRUST),
            )["Role"]["Arn"]

    def grant(self) -> Any:
        from accessrequests.models import RequestKind

        if self.name == "iam_role":
            return self.world.approve(ROLE)
        fields = {
            "kind": RequestKind.PERMISSION_SET,
            "permission_set": self.permission_set,
            "pipelines": [],
            "level": "",
        }
        return self.world.approve("paulo.santos", **fields)

    def session(self) -> dict[str, list[str]]:
        """A session from STS, as the condition keys its calls carry."""
        from datetime import UTC

        from accessrequests.provisioning.session_fences import iso

        name = "person@example.com" if self.name == "iam_role" else "paulo.santos"
        answer = self.sts.assume_role(RoleArn=self.role_arn, RoleSessionName=name, DurationSeconds=3600)
        issued = answer["Credentials"]["Expiration"].astimezone(UTC) - timedelta(seconds=3600)
        return {
            "aws:TokenIssueTime": [iso(issued)],
            "aws:userid": [answer["AssumedRoleUser"]["AssumedRoleId"]],
            "aws:PrincipalAccount": [ACCOUNT],
        }

    def documents(self) -> list[Any]:
        if self.name == "iam_role":
            names = self.iam.list_role_policies(RoleName=ROLE)["PolicyNames"]
            return [self.iam.get_role_policy(RoleName=ROLE, PolicyName=n)["PolicyDocument"] for n in names]
        inline = self.sso.get_inline_policy_for_permission_set(
            InstanceArn=self.instance, PermissionSetArn=self.permission_set.arn
        )["InlinePolicy"]
        return [json.loads(inline)] if inline else []

    def refused(self, context: dict[str, list[str]]) -> bool:
        from accessrequests.policy.evaluate import Request, decide

        action = (
            ("codepipeline:GetPipeline", f"arn:aws:codepipeline:{REGION}:{ACCOUNT}:my-pipeline")
            if self.name == "iam_role"
            else ("codepipeline:GetPipeline", "*")
        )
        return not decide(Request(action[0], (action[1],), context), identity=self.documents()).allowed

    def bare(self, samples: int) -> list[float]:
        """The AWS calls alone that remove the access and deny the older session, timed one sample at a time."""
        deny = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Action": "*",
                        "Resource": "*",
                        "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2030-01-01T00:00:00Z"}},
                    }
                ],
            }
        )
        allow = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "codepipeline:GetPipeline", "Resource": "*"}],
            }
        )
        times = []
        for _ in range(samples):
            if self.name == "iam_role":
                self.iam.put_role_policy(RoleName=ROLE, PolicyName="bare", PolicyDocument=allow)
                start = time.perf_counter()
                self.iam.delete_role_policy(RoleName=ROLE, PolicyName="bare")
                self.iam.put_role_policy(RoleName=ROLE, PolicyName="bare-deny", PolicyDocument=deny)
                self.iam.get_role_policy(RoleName=ROLE, PolicyName="bare-deny")
                times.append(time.perf_counter() - start)
                self.iam.delete_role_policy(RoleName=ROLE, PolicyName="bare-deny")
                continue
            where = {
                "InstanceArn": self.instance,
                "TargetId": ACCOUNT,
                "TargetType": "AWS_ACCOUNT",
                "PermissionSetArn": self.permission_set.arn,
                "PrincipalType": "USER",
                "PrincipalId": self.world.seeded["identity_center"]["users"]["akua.mansa"],
            }
            self.sso.create_account_assignment(**where)
            start = time.perf_counter()
            self.sso.delete_account_assignment(**where)
            self.sso.put_inline_policy_to_permission_set(
                InstanceArn=self.instance, PermissionSetArn=self.permission_set.arn, InlinePolicy=deny
            )
            self.sso.provision_permission_set(
                InstanceArn=self.instance,
                PermissionSetArn=self.permission_set.arn,
                TargetType="AWS_ACCOUNT",
                TargetId=ACCOUNT,
            )
            self.sso.get_inline_policy_for_permission_set(
                InstanceArn=self.instance, PermissionSetArn=self.permission_set.arn
            )
            times.append(time.perf_counter() - start)
        return times


def measure(kind: Kind, samples: int) -> tuple[list[float], int]:
    from accessrequests.models import AccessEnd, EndState, GrantStatus
    from accessrequests.provisioning import engine as provisioning
    from accessrequests.provisioning.sessions import access_end_reconcile, access_ends_sweep

    times: list[float] = []
    refused = 0
    for _ in range(samples):
        grant = kind.grant()
        provisioning.reconcile_principal(principal_id=grant.principal_id, account_id=grant.account_id)
        grant.refresh_from_db()
        assert grant.status == GrantStatus.ACTIVE, grant.last_error
        old = kind.session()
        start = time.perf_counter()
        provisioning.grant_revoke(grant_id=grant.pk, actor=kind.world.requester)
        provisioning.reconcile_principal(principal_id=grant.principal_id, account_id=grant.account_id)
        end = AccessEnd.objects.get(grant=grant)
        while access_end_reconcile(access_end_id=end.pk)["state"] == EndState.CHECKING:
            pass
        times.append(time.perf_counter() - start)
        end.refresh_from_db()
        assert end.state == EndState.CONFIRMED, end.outcome
        refused += kind.refused(old)
        # Its time comes: the sessions it covered have expired (the clock moved in the database).
        shift = end.sessions_until - end.ended_at + timedelta(seconds=1)
        AccessEnd.objects.filter(pk=end.pk).update(
            ended_at=end.ended_at - shift, sessions_until=end.sessions_until - shift
        )
        access_ends_sweep()
    return times, refused


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()

    from accessrequests.aws.motoserver import DUMMY_CREDENTIALS, start_moto_server, stop_moto_server

    os.environ.update(DUMMY_CREDENTIALS)
    moto, url = start_moto_server()
    os.environ["AWS_ENDPOINT_URL"] = url
    os.environ["AWS_DEFAULT_REGION"] = REGION
    import boto3
    import django

    django.setup()
    from django.db import connection

    from accessrequests.devworld.demo_world import seed_demo_world
    from tests.provisioning_support import PortalWorld

    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    results = {}
    try:
        seeded = seed_demo_world()
        boto3.client("iam", region_name=REGION, endpoint_url=url).create_role(
            RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST), MaxSessionDuration=3600
        )
        world = PortalWorld(seeded)
        for name in ("iam_role", "permission_set"):
            kind = Kind(name, world, url)
            measure(kind, 2)  # warm: the first revoke of a process loads its modules and clients
            times, refused = measure(kind, args.samples)
            results[name] = (times, refused, kind.bare(args.samples))
    finally:
        stop_moto_server(moto)
        connection.creation.destroy_test_db(original_name, verbosity=0)
    print(f"database {connection.vendor}, moto at {url}; {args.samples} revokes of each kind, one at a time")
    print(f"{'':44} {'p50 ms':>8} {'p95 ms':>8} {'bare p50':>9} {'bare p95':>9} {'x bare':>7} {'refused':>8}")
    for name, (times, refused, bare) in results.items():
        p50, p95 = percentile(times, 0.5) * 1000, percentile(times, 0.95) * 1000
        b50, b95 = percentile(bare, 0.5) * 1000, percentile(bare, 0.95) * 1000
        label = {"iam_role": "IAM role principal", "permission_set": "shared permission set"}[name]
        print(
            f"{'revoke → confirmed, ' + label:44} {p50:8.0f} {p95:8.0f} {b50:9.0f} {b95:9.0f} "
            f"{p50 / b50:7.1f} {refused:>4}/{len(times)}"
        )


if __name__ == "__main__":
    main()
