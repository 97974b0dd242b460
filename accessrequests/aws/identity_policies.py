"""Every identity policy of an IAM principal, read back whole, and the role deny that ends older sessions.

The confirmation that AWS refuses what Gatehouse revoked evaluates *all* the policies that apply to the
principal, not only the portal's: access that something else still gives is reported as such, never hidden.
The deny lives in one inline policy of its own on a role, ``gatehouse-ended-sessions``, written and deleted only
by Gatehouse (its other policies, and everybody else's, are left alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from .client import error_details
from .iam import INLINE_POLICY_NAME, SPILL_PATH, SPILL_PREFIX, Target, canonical
from .reuse import kept_client

FENCE_POLICY_NAME = "gatehouse-ended-sessions"
# AWS's default for a role created without MaxSessionDuration.
DEFAULT_MAX_SESSION_SECONDS = 3600


@dataclass(frozen=True)
class NamedDocument:
    """One policy that applies to a principal: where it comes from, its document, and whether Gatehouse owns it."""

    name: str
    document: str | None  # None: it exists but could not be read (its effect is unknown)
    owned: bool


def _code(exc: ClientError) -> str:
    return error_details(exc)[0]


def _request_id(response: dict[str, Any]) -> str:
    return str(response.get("ResponseMetadata", {}).get("RequestId", ""))


def managed_document(iam: Any, policy_arn: str) -> str | None:
    """The default version of a managed policy (None when it cannot be read)."""
    try:
        policy = iam.get_policy(PolicyArn=policy_arn)["Policy"]
        version = iam.get_policy_version(PolicyArn=policy_arn, VersionId=policy["DefaultVersionId"])
    except ClientError:
        return None
    return canonical(version["PolicyVersion"]["Document"])


def _owned_inline(name: str) -> bool:
    return name in (INLINE_POLICY_NAME, FENCE_POLICY_NAME)


def _of(iam: Any, kind: str, name: str) -> list[NamedDocument]:
    key = f"{kind.capitalize()}Name"
    found: list[NamedDocument] = []
    for page in iam.get_paginator(f"list_{kind}_policies").paginate(**{key: name}):
        for policy_name in page["PolicyNames"]:
            try:
                answer = getattr(iam, f"get_{kind}_policy")(**{key: name, "PolicyName": policy_name})
            except ClientError as exc:
                if _code(exc) == "NoSuchEntity":
                    continue  # deleted between the listing and now
                raise
            found.append(
                NamedDocument(
                    f"{kind} {name} inline policy {policy_name}",
                    canonical(answer["PolicyDocument"]),
                    _owned_inline(policy_name),
                )
            )
    for page in iam.get_paginator(f"list_attached_{kind}_policies").paginate(**{key: name}):
        for policy in page["AttachedPolicies"]:
            arn = policy["PolicyArn"]
            owned = f":policy{SPILL_PATH}" in arn and policy["PolicyName"].startswith(SPILL_PREFIX)
            found.append(NamedDocument(f"managed policy {arn}", managed_document(iam, arn), owned))
    return found


def identity_documents(target: Target) -> list[NamedDocument] | None:
    """Every identity policy that applies to ``target`` (a user's include its groups'); None when the
    principal does not exist (a deleted role: nothing of it can be allowed any more)."""
    iam = target.client()
    try:
        documents = _of(iam, target.kind, target.name)
        if target.kind == "user":
            for page in iam.get_paginator("list_groups_for_user").paginate(UserName=target.name):
                for group in page["Groups"]:
                    documents += _of(iam, "group", group["GroupName"])
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return None
        raise
    return documents


def role_max_session_seconds(target: Target) -> int:
    """The longest session of the role (1 to 12 hours); a missing role has none, so the default."""
    try:
        role = target.client().get_role(RoleName=target.name)["Role"]
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return DEFAULT_MAX_SESSION_SECONDS
        raise
    return int(role.get("MaxSessionDuration") or DEFAULT_MAX_SESSION_SECONDS)


def read_fence(target: Target) -> str | None:
    try:
        answer = target.client().get_role_policy(RoleName=target.name, PolicyName=FENCE_POLICY_NAME)
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return None
        raise
    return canonical(answer["PolicyDocument"])


def write_fence(target: Target, document: str | None) -> list[str]:
    """Make the role's ``gatehouse-ended-sessions`` policy ``document`` (None: no such policy)."""
    iam = target.client()
    if document is not None:
        answer = iam.put_role_policy(
            RoleName=target.name, PolicyName=FENCE_POLICY_NAME, PolicyDocument=document
        )
        return [_request_id(answer)]
    try:
        return [_request_id(iam.delete_role_policy(RoleName=target.name, PolicyName=FENCE_POLICY_NAME))]
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return []
        raise


def global_documents(arns: list[str], *, account_id: str, role_arn: str | None) -> list[NamedDocument]:
    """AWS managed policies by ARN (a permission set's), read through the account's IAM."""
    iam = kept_client("iam", role_arn=role_arn, account_id=account_id)
    return [NamedDocument(f"managed policy {arn}", managed_document(iam, arn), False) for arn in arns]
