"""Identity Center delivery: account assignments, and portal-owned permission sets that carry a policy.

Identity Center is asynchronous: ``CreateAccountAssignment`` and ``DeleteAccountAssignment`` only start the
work, so every write here polls ``DescribeAccountAssignment{Creation,Deletion}Status`` until it says SUCCEEDED
or FAILED, and a FAILED answer is an error, never a success. While an earlier change to the same permission set
or assignment is still propagating, AWS answers ``ConflictException``; those calls are retried here with backoff
(botocore's own retries do not cover ConflictException).

Every call goes through the shared rate governor (``governor.py``): the clients wait for their turn, and each
assignment operation holds one of the outstanding slots from its start until a poll sees it finish. Throttling
never fails a grant: a throttled call slows the governor down and is tried again (the governor's hook on the
client), for up to five minutes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from . import governor
from .client import error_details
from .errors import AwsOperationError
from .iam import canonical
from .reuse import kept_client

PRINCIPAL_TYPES = {"ic_user": "USER", "ic_group": "GROUP"}
PORTAL_PERMISSION_SET_PREFIX = "GH-"
SESSION_DURATION = "PT1H"

# Identity Center takes seconds to propagate an assignment; give up (and retry the whole grant later) after
# two minutes rather than hold a worker.
POLL_TIMEOUT = 120.0
POLL_FIRST_DELAY = 0.2
POLL_MAX_DELAY = 5.0
CONFLICT_ATTEMPTS = 8
_RETRY_CODES = frozenset({"ConflictException", *governor.THROTTLING_CODES})
_FINAL = frozenset({"SUCCEEDED", "FAILED"})


@dataclass(frozen=True)
class Instance:
    """The Identity Center instance (its ARN and region) that holds the principals and permission sets."""

    instance_arn: str
    region: str

    def client(self) -> Any:
        return kept_client("sso-admin", region=self.region)


def _request_id(response: dict[str, Any]) -> str:
    return str(response.get("ResponseMetadata", {}).get("RequestId", ""))


def _call(operation: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """Call with retries on ConflictException, exponential backoff with full jitter. (Throttling is retried
    below, on the client: the governor's hook keeps trying throttled calls, paced by the shared bucket.)"""
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            return operation(**kwargs)
        except ClientError as exc:
            if error_details(exc)[0] not in _RETRY_CODES or attempt == CONFLICT_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0, min(8.0, 0.25 * 2**attempt)))  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable")


def _finish(status: dict[str, Any], what: str) -> None:
    if status.get("Status") == "FAILED":
        reason = status.get("FailureReason") or "no reason given"
        raise AwsOperationError(f"Identity Center could not {what}: {reason}", transient=False)


def _wait(
    first: dict[str, Any],
    describe: Callable[[], dict[str, Any]],
    what: str,
    *,
    kind: str,
    slot: governor.Slot | None = None,
) -> None:
    """Poll an asynchronous Identity Center operation until SUCCEEDED; FAILED or a timeout raise.

    ``first`` is the status the starting call answered with (moto answers SUCCEEDED at once; AWS says
    IN_PROGRESS). The first poll waits as long as the governor has learned such operations take, so that
    under load one poll usually finds it done; later polls back off. Each poll renews the slot's lease.
    """
    pace = governor.current()
    if first.get("Status") in _FINAL:
        if slot is not None:
            slot.finished = True
        pace.learn_poll(kind, done_at_first_look=True)
        _finish(first, what)
        return
    deadline = time.monotonic() + POLL_TIMEOUT
    delay = pace.first_poll_delay(kind)
    polls = 0
    while True:
        if delay:
            time.sleep(delay)
        status = describe()
        polls += 1
        state = status.get("Status")
        if state in _FINAL:
            if slot is not None:
                slot.finished = True
            if polls == 1:
                pace.learn_poll(kind, done_at_first_look=True)
            _finish(status, what)
            return
        if polls == 1:
            pace.learn_poll(kind, done_at_first_look=False)
        if slot is not None:
            slot.renew()
        if time.monotonic() > deadline:
            raise AwsOperationError(
                f"Identity Center did not finish to {what} within {POLL_TIMEOUT:.0f} seconds", transient=True
            )
        delay = max(POLL_FIRST_DELAY, delay / 3) if polls == 1 else min(POLL_MAX_DELAY, delay * 2)


# --- account assignments ------------------------------------------------------------------------------


def assigned_permission_sets(
    instance: Instance, *, account_id: str, principal_type: str, principal_id: str
) -> set[str]:
    """ARNs of the permission sets assigned to the principal in the account."""
    sso = instance.client()
    found: set[str] = set()
    for page in sso.get_paginator("list_account_assignments_for_principal").paginate(
        InstanceArn=instance.instance_arn,
        PrincipalId=principal_id,
        PrincipalType=principal_type,
        Filter={"AccountId": account_id},
    ):
        for assignment in page["AccountAssignments"]:
            if assignment.get("AccountId") == account_id:
                found.add(assignment["PermissionSetArn"])
    return found


def list_assignments(instance: Instance, *, account_id: str, permission_set_arn: str) -> list[dict[str, str]]:
    """Who holds one permission set in one account (``ListAccountAssignments``)."""
    sso = instance.client()
    return [
        {"PrincipalType": item["PrincipalType"], "PrincipalId": item["PrincipalId"]}
        for page in sso.get_paginator("list_account_assignments").paginate(
            InstanceArn=instance.instance_arn, AccountId=account_id, PermissionSetArn=permission_set_arn
        )
        for item in page["AccountAssignments"]
    ]


# The two asynchronous assignment operations: (call, status key in its answer, status call, request id key).
_ASSIGNMENT_CHANGES = {
    "create": (
        "create_account_assignment",
        "AccountAssignmentCreationStatus",
        "describe_account_assignment_creation_status",
        "AccountAssignmentCreationRequestId",
    ),
    "delete": (
        "delete_account_assignment",
        "AccountAssignmentDeletionStatus",
        "describe_account_assignment_deletion_status",
        "AccountAssignmentDeletionRequestId",
    ),
}


def _change_assignment(
    instance: Instance,
    change: str,
    *,
    account_id: str,
    permission_set_arn: str,
    principal_type: str,
    principal_id: str,
    what: str,
) -> list[str]:
    operation, status_key, describe, request_key = _ASSIGNMENT_CHANGES[change]
    sso = instance.client()
    # One of the outstanding slots from before the call until a poll sees the operation finish.
    with governor.current().slot(change) as slot:
        answer = _call(
            getattr(sso, operation),
            InstanceArn=instance.instance_arn,
            TargetId=account_id,
            TargetType="AWS_ACCOUNT",
            PermissionSetArn=permission_set_arn,
            PrincipalType=principal_type,
            PrincipalId=principal_id,
        )
        slot.started = True
        request_id = answer[status_key]["RequestId"]
        _wait(
            answer[status_key],
            lambda: _call(
                getattr(sso, describe), InstanceArn=instance.instance_arn, **{request_key: request_id}
            )[status_key],
            what,
            kind=change,
            slot=slot,
        )
    return [_request_id(answer)]


def create_assignment(
    instance: Instance, *, account_id: str, permission_set_arn: str, principal_type: str, principal_id: str
) -> list[str]:
    """Assign and wait until Identity Center says SUCCEEDED; returns the request ids."""
    return _change_assignment(
        instance,
        "create",
        account_id=account_id,
        permission_set_arn=permission_set_arn,
        principal_type=principal_type,
        principal_id=principal_id,
        what=f"assign {permission_set_arn} to {principal_type.lower()} {principal_id} in account {account_id}",
    )


def delete_assignment(
    instance: Instance, *, account_id: str, permission_set_arn: str, principal_type: str, principal_id: str
) -> list[str]:
    """Remove an assignment and wait until Identity Center says SUCCEEDED; returns the request ids."""
    try:
        return _change_assignment(
            instance,
            "delete",
            account_id=account_id,
            permission_set_arn=permission_set_arn,
            principal_type=principal_type,
            principal_id=principal_id,
            what=f"remove {permission_set_arn} from {principal_type.lower()} {principal_id} in account {account_id}",
        )
    except ClientError as exc:
        if error_details(exc)[0] == "ResourceNotFoundException":
            return []  # already gone: what we wanted
        raise


# --- portal-owned permission sets ---------------------------------------------------------------------


def portal_permission_set_name(principal_id: int, account_id: str) -> str:
    """At most 32 characters, unique per principal and account: ``GH-<principal>-<account>``."""
    return f"{PORTAL_PERMISSION_SET_PREFIX}{principal_id}-{account_id}"


def find_permission_set(instance: Instance, name: str) -> str | None:
    """The ARN of the permission set called ``name`` (a slow scan, used only when the portal lost track)."""
    sso = instance.client()
    for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=instance.instance_arn):
        for arn in page["PermissionSets"]:
            described = sso.describe_permission_set(InstanceArn=instance.instance_arn, PermissionSetArn=arn)
            if described["PermissionSet"]["Name"] == name:
                return str(arn)
    return None


def inline_policy(instance: Instance, permission_set_arn: str) -> str | None:
    sso = instance.client()
    answer = sso.get_inline_policy_for_permission_set(
        InstanceArn=instance.instance_arn, PermissionSetArn=permission_set_arn
    )
    return canonical(answer.get("InlinePolicy") or None)


def ensure_permission_set(
    instance: Instance, *, arn: str | None, name: str, description: str, document: str, account_id: str
) -> tuple[str, list[str]]:
    """A permission set called ``name`` whose inline policy is ``document``, provisioned to the account.

    ``arn`` is where the portal last saw it (None: look it up by name, create it if missing). Returns the ARN
    and the request ids of the writes; writes nothing when it is already as wanted.
    """
    sso = instance.client()
    ids: list[str] = []
    if arn is None:
        arn = find_permission_set(instance, name)
    if arn is None:
        answer = _call(
            sso.create_permission_set,
            InstanceArn=instance.instance_arn,
            Name=name,
            Description=description[:700],
            SessionDuration=SESSION_DURATION,
            Tags=[{"Key": "gatehouse:owned", "Value": "true"}],
        )
        ids.append(_request_id(answer))
        arn = str(answer["PermissionSet"]["PermissionSetArn"])
    if inline_policy(instance, arn) == document:
        return arn, ids
    answer = _call(
        sso.put_inline_policy_to_permission_set,
        InstanceArn=instance.instance_arn,
        PermissionSetArn=arn,
        InlinePolicy=document,
    )
    ids.append(_request_id(answer))
    ids += provision(instance, arn, account_id=account_id, what=f"permission set {name}")
    return arn, ids


def provision(instance: Instance, permission_set_arn: str, *, account_id: str, what: str) -> list[str]:
    """Provision the permission set to the account and wait until it is done: a changed permission set reaches
    the account's IAM role (and the sessions of it) only then. Returns the request ids."""
    sso = instance.client()
    answer = _call(
        sso.provision_permission_set,
        InstanceArn=instance.instance_arn,
        PermissionSetArn=permission_set_arn,
        TargetType="AWS_ACCOUNT",
        TargetId=account_id,
    )
    status = answer["PermissionSetProvisioningStatus"]
    request_id = status.get("RequestId")
    _wait(
        status,
        lambda: _call(
            sso.describe_permission_set_provisioning_status,
            InstanceArn=instance.instance_arn,
            ProvisionPermissionSetRequestId=request_id,
        )["PermissionSetProvisioningStatus"],
        f"provision {what} to account {account_id}",
        kind="provision",
    )
    return [_request_id(answer)]


def put_inline_policy(instance: Instance, permission_set_arn: str, document: str | None) -> list[str]:
    """Make the permission set's inline policy ``document`` (None: no inline policy); the caller provisions."""
    sso = instance.client()
    if document is not None:
        answer = _call(
            sso.put_inline_policy_to_permission_set,
            InstanceArn=instance.instance_arn,
            PermissionSetArn=permission_set_arn,
            InlinePolicy=document,
        )
        return [_request_id(answer)]
    try:
        answer = _call(
            sso.delete_inline_policy_from_permission_set,
            InstanceArn=instance.instance_arn,
            PermissionSetArn=permission_set_arn,
        )
    except ClientError as exc:
        if error_details(exc)[0] == "ResourceNotFoundException":
            return []
        raise
    return [_request_id(answer)]


def session_duration(instance: Instance, permission_set_arn: str) -> str:
    """How long a session of the permission set lasts, as ISO 8601 (``PT1H``; AWS's default when unset)."""
    sso = instance.client()
    described = sso.describe_permission_set(
        InstanceArn=instance.instance_arn, PermissionSetArn=permission_set_arn
    )["PermissionSet"]
    return str(described.get("SessionDuration") or SESSION_DURATION)


def managed_policy_arns(instance: Instance, permission_set_arn: str) -> list[str]:
    """The AWS managed policies attached to the permission set."""
    sso = instance.client()
    return [
        str(item["Arn"])
        for page in sso.get_paginator("list_managed_policies_in_permission_set").paginate(
            InstanceArn=instance.instance_arn, PermissionSetArn=permission_set_arn
        )
        for item in page["AttachedManagedPolicies"]
    ]
