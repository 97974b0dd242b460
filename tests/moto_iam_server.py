"""A moto server whose IAM authorization judges resources and conditions, for the deployment tests.

Run as ``python -m tests.moto_iam_server -H 127.0.0.1 -p PORT`` (``start_moto_server(module=...)``). Once
``/moto-api/reset-auth`` switches authorization on, moto still does its own part: it checks each request's
signature, finds the principal of its access key (an IAM user's key, or an STS session of a role) in the
account the key belongs to, and collects that principal's policies from its IAM state. The decision is then
taken by ``accessrequests/policy/evaluate.py`` over the request as ``tests/aws_authorization.py`` describes it (resources,
condition keys, the role's permissions boundary, the target role's trust policy, the bucket policy), instead of
moto's ``IAMPolicy``, which judges most calls against ``"*"`` and ignores conditions (so it can run no
least-privilege policy at all). moto's own verdict on the same policies reduced to their actions is recorded
beside it, for the report: what moto alone would have enforced.

Every decision is appended as one JSON line to the file named by ``GATEHOUSE_AUTHZ_LOG``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.parse
from typing import Any

from moto.iam import access_control
from moto.iam.models import iam_backends
from moto.organizations.models import organizations_backends
from moto.s3.models import s3_backends
from moto.ssoadmin.models import ssoadmin_backends

from accessrequests.policy.evaluate import Request, decide
from tests.aws_authorization import describe, describe_s3

PARTITION = "aws"
_log_lock = threading.Lock()


def _tags(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {str(k): str(v["Value"] if isinstance(v, dict) else v) for k, v in raw.items()}
    return {str(t["Key"]): str(t["Value"]) for t in raw or []}


def _document(policy: Any) -> dict[str, Any]:
    # moto's CloudFormation stores a role's inline policies as dicts (its API then answers their Python repr),
    # which moto's own IAMPolicy cannot read; every other form (JSON text, managed policy) it can.
    if isinstance(policy, dict) and "Statement" in policy:
        return policy
    return dict(access_control.IAMPolicy(policy)._policy_json)


class MotoWorld:
    """``aws_authorization.World`` read straight from moto's backends."""

    def _iam(self, account: str) -> Any:
        return iam_backends[account][PARTITION]

    def _role(self, account: str, name: str) -> Any:
        try:
            return self._iam(account).get_role(name)
        except Exception:
            return None

    def _user(self, account: str, name: str) -> Any:
        try:
            return self._iam(account).get_user(name)
        except Exception:
            return None

    def role_arn(self, account: str, name: str) -> str | None:
        role = self._role(account, name)
        return role.arn if role else None

    def role_tags(self, account: str, name: str) -> dict[str, str]:
        role = self._role(account, name)
        return _tags(role.tags) if role else {}

    def user_arn(self, account: str, name: str) -> str | None:
        user = self._user(account, name)
        return user.arn if user else None

    def user_tags(self, account: str, name: str) -> dict[str, str]:
        user = self._user(account, name)
        return _tags(self._iam(account).list_user_tags(name)) if user else {}

    def user_of_key(self, account: str, access_key_id: str) -> str | None:
        for user in self._iam(account).users.values():
            if any(key.access_key_id == access_key_id for key in user.access_keys):
                return str(user.name)
        return None

    def permission_set_tags(self, arn: str) -> dict[str, str]:
        for regions in list(ssoadmin_backends.values()):
            for backend in list(regions.values()):
                for permission_set in backend.permission_sets:
                    if permission_set.permission_set_arn == arn:
                        return _tags(permission_set.tags)
        return {}

    def organization(self, account: str) -> tuple[str, str] | None:
        for partitions in list(organizations_backends.values()):
            backend = partitions.get(PARTITION) if hasattr(partitions, "get") else None
            org = getattr(backend, "org", None)
            if org is None:
                continue
            if org.master_account_id == account or any(a.id == account for a in backend.accounts):
                return str(org.id), str(org.master_account_id)
        return None

    def role_by_arn(self, arn: str) -> Any:
        try:
            return self._iam(arn.split(":")[4]).get_role_by_arn(arn)
        except Exception:
            return None

    def boundary_of(self, account: str, role: Any) -> dict[str, Any] | None:
        if not getattr(role, "permissions_boundary_arn", None):
            return None
        try:
            return _document(self._iam(account).get_policy(role.permissions_boundary_arn))
        except Exception:
            # A boundary that does not exist allows nothing (AWS would not have let the role be made).
            return {"Version": "2012-10-17", "Statement": []}


WORLD = MotoWorld()


def _principal(request: Any) -> tuple[str, tuple[str, ...], dict[str, list[str]], Any]:
    """(ARN, the ARNs a Principal element may name, principal condition keys, the role or None)."""
    key = request._access_key
    account = request.account_id
    role = None
    if isinstance(key, access_control.AssumedRoleAccessKey):
        role = WORLD._role(account, key._owner_role_name)
        arn = role.arn if role else f"arn:aws:iam::{account}:role/{key._owner_role_name}"
        principals = (key.arn, arn, f"arn:aws:iam::{account}:root")
    else:
        arn = key.arn
        principals = (arn, f"arn:aws:iam::{account}:root")
    context = {"aws:PrincipalArn": [arn], "aws:PrincipalAccount": [account]}
    found = WORLD.organization(account)
    if found:
        context["aws:PrincipalOrgID"] = [found[0]]
    return arn, principals, context, role


def _params(request: Any) -> dict[str, Any]:
    if request._headers.get("X-Amz-Target"):
        try:
            return dict(json.loads(request._body or b"{}"))
        except ValueError:
            return {}
    return {k: (v[0] if isinstance(v, list) and v else v) for k, v in dict(request._data).items()}


def _moto_action_only(documents: list[dict[str, Any]], action: str) -> bool:
    """moto's own IAMPolicy on the policies reduced to their Allow actions (resources "*", no conditions)."""
    for document in documents:
        allows = [
            {"Effect": "Allow", "Action": s.get("Action", []), "Resource": "*"}
            for s in document.get("Statement", [])
            if isinstance(s, dict) and s.get("Effect") == "Allow" and "Action" in s
        ]
        if not allows:
            continue
        verdict = access_control.IAMPolicy(json.dumps({"Statement": allows})).is_action_permitted(action, "*")
        if verdict == access_control.PermissionResult.PERMITTED:
            return True
    return False


def _log(entry: dict[str, Any]) -> None:
    path = os.environ.get("GATEHOUSE_AUTHZ_LOG")
    if not path:
        return
    with _log_lock, open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True, default=str) + "\n")


_SHOWN_PARAMS = {
    "RoleName", "UserName", "GroupName", "PolicyName", "PolicyArn", "RoleArn", "Path", "PermissionsBoundary",
    "name", "resourceArn", "ParentId", "ResourceId", "InstanceArn", "PermissionSetArn", "TargetId", "AccountId",
    "PrincipalId", "IdentityStoreId", "GroupId", "Name", "Arn", "AccessKeyId",
}  # fmt: skip


def check_action_permitted(self: Any, resource: str) -> None:
    if self._action == "sts:GetCallerIdentity":  # AWS never refuses it
        return
    service, _, operation = self._action.partition(":")
    arn, principals, principal_context, role = _principal(self)
    identity = [_document(policy) for policy in self._access_key.collect_policies()]
    boundary = WORLD.boundary_of(self.account_id, role) if role is not None else None
    trust = resource_policy = None
    params = _params(self)
    try:
        if service == "s3":
            split = urllib.parse.urlsplit(self._path)
            requests = describe_s3(
                action=self._action,
                resource=resource,
                query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
                headers={str(k).lower(): str(v) for k, v in self._headers.items()},
                principal_context=principal_context,
                principals=principals,
            )
            bucket = resource.split(":::", 1)[-1].split("/", 1)[0]
            found = s3_backends[self.account_id][PARTITION].buckets.get(bucket)
            if found is not None and found.policy:
                resource_policy = json.loads(found.policy)
        else:
            requests = describe(
                service=service,
                operation=operation,
                params=params,
                account=self.account_id,
                region=self._region,
                world=WORLD,
                principal_context=principal_context,
                principals=principals,
            )
    except LookupError:
        # Not a call Gatehouse makes (the tests' own administration): judged against "*", and marked so that
        # the deployment test fails if Gatehouse ever makes it.
        requests = [Request(self._action, ("*",), principal_context, principals)]
        described = False
    else:
        described = True
    if self._action == "sts:AssumeRole":
        target = WORLD.role_by_arn(str(params.get("RoleArn", "")))
        trust = json.loads(target.assume_role_policy_document) if target else {"Statement": []}
    decisions = [
        decide(r, identity=identity, boundary=boundary, resource_policy=resource_policy, trust=trust)
        for r in requests
    ]
    refused = next((d for d in decisions if not d.allowed), None)
    _log(
        {
            "principal": arn,
            "service": service,
            "operation": operation,
            "params": {k: v for k, v in params.items() if k in _SHOWN_PARAMS},
            "requests": [
                {
                    "action": r.action,
                    "resources": list(r.resources),
                    "context": dict(r.context),
                    "principals": list(r.principals),
                }
                for r in requests
            ],
            "identity": identity,
            "boundary": boundary,
            "trust": trust,
            "resource_policy": resource_policy,
            "described": described,
            "allowed": refused is None,
            "denied_by": list(refused.denied_by) if refused else [],
            "reason": refused.reason if refused else "",
            "moto_action_only": all(_moto_action_only(identity, r.action) for r in requests),
        }
    )
    if refused is not None:
        self._raise_access_denied()


def _last_accessed_in_moto() -> None:
    """moto has no IAM last-accessed data: answer it here, behind the authorization, in AWS's shapes."""
    from moto.iam.responses import IamResponse

    from tests.last_accessed_standin import LastAccessedStandIn

    standin = LastAccessedStandIn(polls_before_done=0)

    def answer(name: str) -> Any:
        def handler(self: Any) -> Any:
            fields = {k: v[0] for k, v in self.querystring.items() if isinstance(v, list) and v}
            answered = standin.answers()[name](fields)
            if isinstance(answered, tuple):
                return answered[1].decode(), {"status": answered[0]}
            return answered.decode()

        return handler

    IamResponse.generate_service_last_accessed_details = answer("GenerateServiceLastAccessedDetails")
    IamResponse.get_service_last_accessed_details = answer("GetServiceLastAccessedDetails")


def _organization_reads_from_members() -> None:
    """moto answers ListRoots from a member account with the organization's roots but the other reads with
    "no organization": answer them from the management account's backend too, as AWS does for a member account
    the management account delegated them to (docs/deploy.md, step 5)."""
    from moto.organizations.models import OrganizationsBackend

    for name in (
        "list_accounts_for_parent",
        "list_organizational_units_for_parent",
        "list_tags_for_resource",
    ):
        original = getattr(OrganizationsBackend, name)

        def delegated(
            self: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any
        ) -> Any:
            if self.org is None and self.account_id in organizations_backends.master_accounts:
                management, partition = organizations_backends.master_accounts[self.account_id]
                return getattr(organizations_backends[management][partition], _name)(*args, **kwargs)
            return _original(self, *args, **kwargs)

        setattr(OrganizationsBackend, name, delegated)


def _bucket_policies_in_the_authorization() -> None:
    """moto judges a bucket policy on its own, before and without IAM, ignoring its conditions (so the audit
    bucket's "deny everyone but the hub" denies the hub too). Here the bucket policy is judged together with the
    caller's policies, by the evaluator, when authorization is on."""
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    FakeBucket.get_permission = lambda self, action, resource: PermissionResult.NEUTRAL  # type: ignore[method-assign]


def _s3_signatures_with_encoded_queries() -> None:
    """moto recomputes an S3 request's signature from the URL its web server decoded, so a query value with a
    slash (``ListObjectsV2`` with ``prefix=gatehouse-audit/...``) no longer matches what botocore signed, and
    moto answers SignatureDoesNotMatch even without this module. Sign again over the query as it was sent
    (each value percent-encoded the way SigV4 canonicalizes it)."""
    original = access_control.S3IAMRequest._create_aws_request

    def encoded(self: Any) -> Any:
        path, _, query = self._path.partition("?")
        if query:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
            self._path = (
                path
                + "?"
                + "&".join(
                    f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                    for k, v in pairs
                )
            )
        return original(self)

    access_control.S3IAMRequest._create_aws_request = encoded  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    access_control.IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign]
    _last_accessed_in_moto()
    _organization_reads_from_members()
    _bucket_policies_in_the_authorization()
    _s3_signatures_with_encoded_queries()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
