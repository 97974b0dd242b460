"""IAM delivery: the portal-owned inline policy and spill policies of a user, role or group; cross-account roles.

Everything the portal writes into IAM is recognisable as its own, so it can be read back, compared and removed
without touching anything else:

- one inline policy named ``gatehouse`` on the principal;
- managed "spill" policies under the path ``/gatehouse/`` named ``gatehouse-spill-<type>-<name>-<n>`` when the
  coalesced document does not fit the principal's inline quota;
- cross-account roles under the path ``/gatehouse/p<principal id>/``, each with one inline policy ``gatehouse``,
  named with ``GATEHOUSE_ROLE_PREFIX`` and created with the permissions boundary ``GATEHOUSE_PERMISSIONS_BOUNDARY``
  (the member accounts' provisioning role refuses to create a role any other way: deploy/cloudformation).

Every write returns the AWS request ids (``ResponseMetadata.RequestId``) so the audit trail can name the exact
calls. Documents are compared in canonical form (minified JSON, sorted keys), the form ``policy.render`` writes.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from accessrequests.policy.documents import policy_size

from .client import error_details
from .config import setting
from .errors import AwsOperationError
from .reuse import kept_client

INLINE_POLICY_NAME = "gatehouse"
SPILL_PATH = "/gatehouse/"
SPILL_PREFIX = "gatehouse-spill-"
ROLE_PATH_ROOT = "/gatehouse/"
DEFAULT_ROLE_PREFIX = "gatehouse-"
DEFAULT_BOUNDARY = "GatehouseBoundary"
# IAM keeps at most five versions of a managed policy; the sixth CreatePolicyVersion fails with LimitExceeded.
MAX_POLICY_VERSIONS = 5
# Managed policy names are at most 128 characters, and group names alone may be 128.
_MAX_POLICY_NAME = 128

_OPERATIONS: dict[str, dict[str, str]] = {
    kind: {
        "key": f"{kind.capitalize()}Name",
        "get": f"get_{kind}_policy",
        "put": f"put_{kind}_policy",
        "delete": f"delete_{kind}_policy",
        "list_inline": f"list_{kind}_policies",
        "list_attached": f"list_attached_{kind}_policies",
        "attach": f"attach_{kind}_policy",
        "detach": f"detach_{kind}_policy",
    }
    for kind in ("user", "role", "group")
}


class IamError(AwsOperationError):
    """A lasting IAM problem worth showing to people (the principal does not exist, and the like)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


def canonical(document: str | Mapping[str, Any] | None) -> str | None:
    """A policy document as minified JSON with sorted keys; IAM may hand it back URL-encoded or parsed."""
    if document is None or document == "":
        return None
    if isinstance(document, str):
        text = document if document.lstrip().startswith("{") else urllib.parse.unquote(document)
        document = json.loads(text)
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def _code(exc: ClientError) -> str:
    return error_details(exc)[0]


def _request_id(response: Mapping[str, Any]) -> str:
    return str(response.get("ResponseMetadata", {}).get("RequestId", ""))


@dataclass(frozen=True)
class Target:
    """An IAM user, role or group in one account, and the role to assume to reach it (None: own credentials)."""

    kind: str  # "user" | "role" | "group"
    name: str
    account_id: str
    role_arn: str | None = None

    def client(self) -> Any:
        return kept_client("iam", role_arn=self.role_arn, account_id=self.account_id)

    def __str__(self) -> str:
        return f"IAM {self.kind} {self.name} in account {self.account_id}"


@dataclass(frozen=True)
class Policies:
    """What the portal owns on one principal: its inline policy and its spill policies (by number)."""

    inline: str | None
    managed: Mapping[int, str] = field(default_factory=dict)
    spill_arns: Mapping[int, str] = field(default_factory=dict)
    other_managed: int = 0  # attached managed policies the portal does not own (they use up the quota)
    other_inline_size: int = 0  # characters of inline policies the portal does not own (the same quota)

    @property
    def empty(self) -> bool:
        return self.inline is None and not self.managed

    def documents(self) -> tuple[str | None, tuple[str, ...]]:
        return self.inline, tuple(self.managed[n] for n in sorted(self.managed))


def spill_policy_name(target: Target, number: int) -> str:
    name = f"{SPILL_PREFIX}{target.kind}-{target.name}-{number}"
    if len(name) <= _MAX_POLICY_NAME:
        return name
    # Keep it unique to the principal when the principal's own name is too long to spell out.
    digest = hashlib.sha256(target.name.encode()).hexdigest()[:10]
    return f"{SPILL_PREFIX}{target.kind}-{target.name[:80]}-{digest}-{number}"


def _spill_number(target: Target, policy_name: str) -> int | None:
    for number in range(1, 21):  # 20 attached managed policies is IAM's hard maximum
        if spill_policy_name(target, number) == policy_name:
            return number
    return None


def _spill_arn(target: Target, number: int) -> str:
    return f"arn:aws:iam::{target.account_id}:policy{SPILL_PATH}{spill_policy_name(target, number)}"


def _missing_principal(target: Target, exc: ClientError) -> IamError:
    return IamError(f"{target} does not exist (IAM answered {_code(exc)}); the grant cannot be delivered.")


# --- reading ------------------------------------------------------------------------------------------


def _default_document(iam: Any, policy_arn: str) -> str | None:
    policy = iam.get_policy(PolicyArn=policy_arn)["Policy"]
    version = iam.get_policy_version(PolicyArn=policy_arn, VersionId=policy["DefaultVersionId"])
    return canonical(version["PolicyVersion"]["Document"])


def read_inline(target: Target) -> str | None:
    """The portal's inline policy on ``target`` (None when there is none)."""
    ops = _OPERATIONS[target.kind]
    try:
        answer = getattr(target.client(), ops["get"])(
            **{ops["key"]: target.name, "PolicyName": INLINE_POLICY_NAME}
        )
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
        return None
    return canonical(answer["PolicyDocument"])


def _inline_names(iam: Any, target: Target) -> list[str]:
    ops = _OPERATIONS[target.kind]
    pages = iam.get_paginator(ops["list_inline"]).paginate(**{ops["key"]: target.name})
    return [name for page in pages for name in page["PolicyNames"]]


def _other_inline_size(iam: Any, target: Target, names: list[str]) -> int:
    """Characters (whitespace excluded, as IAM counts) of the inline policies on ``target`` that are not ours."""
    ops = _OPERATIONS[target.kind]
    size = 0
    for name in names:
        if name == INLINE_POLICY_NAME:
            continue
        try:
            answer = getattr(iam, ops["get"])(**{ops["key"]: target.name, "PolicyName": name})
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                continue  # deleted between the listing and now
            raise
        size += policy_size(canonical(answer["PolicyDocument"]) or "")
    return size


def read_policies(target: Target) -> Policies:
    """The portal's policies on ``target`` as they are in IAM now, and how much of its quotas others use."""
    iam = target.client()
    ops = _OPERATIONS[target.kind]
    managed: dict[int, str] = {}
    arns: dict[int, str] = {}
    others = 0
    try:
        names = _inline_names(iam, target)
        # The listing says whether the portal's policy is there: no read of one that is not (a first grant).
        inline = read_inline(target) if INLINE_POLICY_NAME in names else None
        other_inline_size = _other_inline_size(iam, target, names)
        pages = iam.get_paginator(ops["list_attached"]).paginate(**{ops["key"]: target.name})
        attached = [policy for page in pages for policy in page["AttachedPolicies"]]
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            raise _missing_principal(target, exc) from None
        raise
    for policy in attached:
        number = _spill_number(target, policy["PolicyName"])
        if number is None or f":policy{SPILL_PATH}" not in policy["PolicyArn"]:
            others += 1
            continue
        document = _default_document(iam, policy["PolicyArn"])
        if document is not None:
            managed[number] = document
            arns[number] = policy["PolicyArn"]
    return Policies(
        inline=inline,
        managed=managed,
        spill_arns=arns,
        other_managed=others,
        other_inline_size=other_inline_size,
    )


# --- writing ------------------------------------------------------------------------------------------


def _new_default_version(iam: Any, policy_arn: str, document: str) -> list[str]:
    ids: list[str] = []
    versions = iam.list_policy_versions(PolicyArn=policy_arn)["Versions"]
    if len(versions) >= MAX_POLICY_VERSIONS:
        oldest = min((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
        ids.append(
            _request_id(iam.delete_policy_version(PolicyArn=policy_arn, VersionId=oldest["VersionId"]))
        )
    answer = iam.create_policy_version(PolicyArn=policy_arn, PolicyDocument=document, SetAsDefault=True)
    ids.append(_request_id(answer))
    return ids


def _put_spill(iam: Any, target: Target, number: int, document: str, attached: bool) -> list[str]:
    ops = _OPERATIONS[target.kind]
    ids: list[str] = []
    arn = _spill_arn(target, number)
    try:
        answer = iam.create_policy(
            PolicyName=spill_policy_name(target, number),
            Path=SPILL_PATH,
            PolicyDocument=document,
            Description=f"Gatehouse spill policy {number} of {target.kind} {target.name}"[:1000],
        )
        ids.append(_request_id(answer))
        arn = answer["Policy"]["Arn"]
    except ClientError as exc:
        if _code(exc) != "EntityAlreadyExists":
            raise
        # Left behind by an interrupted run (created, not yet attached) or attached with other contents.
        if _default_document(iam, arn) != document:
            ids += _new_default_version(iam, arn, document)
    if not attached:
        answer = getattr(iam, ops["attach"])(**{ops["key"]: target.name, "PolicyArn": arn})
        ids.append(_request_id(answer))
    return ids


def _delete_spill(iam: Any, target: Target, arn: str) -> list[str]:
    ops = _OPERATIONS[target.kind]
    ids: list[str] = []
    try:
        ids.append(_request_id(getattr(iam, ops["detach"])(**{ops["key"]: target.name, "PolicyArn": arn})))
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    try:
        for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
            if not version["IsDefaultVersion"]:
                answer = iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
                ids.append(_request_id(answer))
        ids.append(_request_id(iam.delete_policy(PolicyArn=arn)))
    except ClientError as exc:
        # DeleteConflict: someone else attached our policy elsewhere; leave it rather than fail the grant.
        if _code(exc) not in {"NoSuchEntity", "DeleteConflict"}:
            raise
    return ids


def write_policies(
    target: Target, *, inline: str | None, managed: tuple[str, ...], actual: Policies
) -> list[str]:
    """Make the portal's policies on ``target`` exactly ``inline`` and ``managed``; return the request ids.

    Only what differs from ``actual`` is written. Additions go first and removals last, so statements that
    move between the inline policy and the spill policies are never missing in between.
    """
    iam = target.client()
    ops = _OPERATIONS[target.kind]
    ids: list[str] = []
    try:
        for number, document in enumerate(managed, start=1):
            if actual.managed.get(number) != document:
                ids += _put_spill(iam, target, number, document, attached=number in actual.managed)
        if inline is not None and inline != actual.inline:
            answer = getattr(iam, ops["put"])(
                **{ops["key"]: target.name, "PolicyName": INLINE_POLICY_NAME, "PolicyDocument": inline}
            )
            ids.append(_request_id(answer))
        if inline is None and actual.inline is not None:
            try:
                answer = getattr(iam, ops["delete"])(
                    **{ops["key"]: target.name, "PolicyName": INLINE_POLICY_NAME}
                )
                ids.append(_request_id(answer))
            except ClientError as exc:
                if _code(exc) != "NoSuchEntity":
                    raise
        for number in sorted(actual.managed):
            if number > len(managed):
                ids += _delete_spill(iam, target, actual.spill_arns[number])
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity" and "policy" not in error_details(exc)[1].lower():
            raise _missing_principal(target, exc) from None
        raise
    return ids


# --- cross-account roles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalRole:
    """A portal-owned cross-account role as it is in IAM: its trust policy and its permissions."""

    name: str
    arn: str
    trust: str | None
    permissions: str | None


def role_path(principal_id: int) -> str:
    return f"{ROLE_PATH_ROOT}p{principal_id}/"


def portal_role_name(reference: str) -> str:
    """The name of the cross-account role of one request: the prefix the provisioning role allows, then the
    request's reference."""
    return f"{setting('GATEHOUSE_ROLE_PREFIX') or DEFAULT_ROLE_PREFIX}{reference}"


def boundary_arn(account_id: str) -> str | None:
    """The permissions boundary every role Gatehouse creates in ``account_id`` carries (None: no boundary)."""
    name = setting("GATEHOUSE_PERMISSIONS_BOUNDARY", DEFAULT_BOUNDARY)
    return f"arn:aws:iam::{account_id}:policy/{name}" if name else None


def list_portal_roles(*, account_id: str, role_arn: str | None, path: str) -> dict[str, PortalRole]:
    """Every role under ``path`` in the account, with its trust policy and its ``gatehouse`` inline policy."""
    iam = kept_client("iam", role_arn=role_arn, account_id=account_id)
    found: dict[str, PortalRole] = {}
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=path):
        for role in page["Roles"]:
            if role["Path"] != path:
                continue
            try:
                answer = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=INLINE_POLICY_NAME)
                permissions = canonical(answer["PolicyDocument"])
            except ClientError as exc:
                if _code(exc) != "NoSuchEntity":
                    raise
                permissions = None
            found[role["RoleName"]] = PortalRole(
                name=role["RoleName"],
                arn=role["Arn"],
                trust=canonical(role.get("AssumeRolePolicyDocument")),
                permissions=permissions,
            )
    return found


def put_portal_role(
    *,
    account_id: str,
    role_arn: str | None,
    path: str,
    name: str,
    trust: str,
    permissions: str,
    actual: PortalRole | None,
    tags: Mapping[str, str],
) -> tuple[str, list[str]]:
    """Create or update one portal-owned role so it has exactly this trust and these permissions."""
    iam = kept_client("iam", role_arn=role_arn, account_id=account_id)
    ids: list[str] = []
    if actual is None:
        boundary = boundary_arn(account_id)
        try:
            answer = iam.create_role(
                RoleName=name,
                Path=path,
                AssumeRolePolicyDocument=trust,
                Description="Cross-account access granted through Gatehouse",
                MaxSessionDuration=3600,
                Tags=[{"Key": key, "Value": value} for key, value in sorted(tags.items())],
                **({"PermissionsBoundary": boundary} if boundary else {}),
            )
            ids.append(_request_id(answer))
            arn = answer["Role"]["Arn"]
            current_permissions = None
        except ClientError as exc:
            if _code(exc) != "EntityAlreadyExists":
                raise
            # Created outside our path (or by an interrupted run we cannot see): converge it anyway.
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
            ids.append(_request_id(iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust)))
            current_permissions = ""
    else:
        arn = actual.arn
        current_permissions = actual.permissions
        if actual.trust != trust:
            ids.append(_request_id(iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust)))
    if current_permissions != permissions:
        answer = iam.put_role_policy(RoleName=name, PolicyName=INLINE_POLICY_NAME, PolicyDocument=permissions)
        ids.append(_request_id(answer))
    return arn, ids


def delete_portal_role(*, account_id: str, role_arn: str | None, name: str) -> list[str]:
    """Delete a portal-owned role and its inline policies (attached managed policies are detached first)."""
    iam = kept_client("iam", role_arn=role_arn, account_id=account_id)
    ids: list[str] = []
    try:
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
            for policy_name in page["PolicyNames"]:
                ids.append(_request_id(iam.delete_role_policy(RoleName=name, PolicyName=policy_name)))
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
            for policy in page["AttachedPolicies"]:
                answer = iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
                ids.append(_request_id(answer))
        ids.append(_request_id(iam.delete_role(RoleName=name)))
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    return ids
