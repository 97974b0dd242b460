"""The deny statements that end sessions issued before a grant ended ("fences"), as AWS documents them.

- A role's sessions (an IAM role principal, the role of a permission set): ``Deny`` with ``DateLessThan
  aws:TokenIssueTime <end>``, the documented way to revoke a role's older sessions. It names only the actions
  and resources the grant gave that nothing else still allows, so it never takes away access the principal
  holds another way, and a session issued after the end (after a new grant, say) is not touched.
- The role of a shared permission set serves everyone assigned that set in the account, so the deny is also
  scoped to the person whose grant ended: ``StringLike aws:userid "*:<their user name>"`` (Identity Center names
  a session of the set's role after the user) and ``StringEquals aws:PrincipalAccount <account>``. It denies
  every action of that person's older sessions of the set in that account.

Each fence carries a Sid of its own (``GatehouseEndedSessions<grant>…``), so Gatehouse finds, puts back and
removes exactly its own statements. Pure functions and database reads; ``provisioning/sessions.py`` writes them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from accessrequests.core import enqueue
from accessrequests.models import AccessEnd, AwsAccount, FenceKind, Principal
from accessrequests.policy import documents as policy
from accessrequests.policy import evaluate

logger = logging.getLogger(__name__)

SID_PREFIX = "GatehouseEndedSessions"
CHECK_ROLE_ID = "AROAGATEHOUSECHECK"  # stands for the role's unique id in the checks' aws:userid
# Values a request carries for the condition keys of Gatehouse's statements (iam:PassRole's service).
_ASSUMED_CONTEXT = {"iam:passedtoservice": "codepipeline.amazonaws.com"}
_MAX_PAIRS = 200


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sid(grant_id: int, number: int = 0) -> str:
    return f"{SID_PREFIX}{grant_id}" + (f"N{number}" if number else "")


def is_fence(statement: Mapping[str, Any]) -> bool:
    return str(statement.get("Sid", "")).startswith(SID_PREFIX)


def escape_like(text: str) -> str:
    """A literal for a StringLike pattern: IAM reads ``*``, ``?`` and ``$`` specially."""
    return "".join({"*": "${*}", "?": "${?}", "$": "${$}"}.get(c, c) for c in text)


def _instance(pattern: str) -> str:
    # A concrete value a wildcard pattern matches ("codepipeline:Get*" -> "codepipeline:GetX").
    return pattern.replace("*", "X").replace("?", "X")


def _condition_context(statement: Mapping[str, Any]) -> dict[str, list[str]]:
    """Values that satisfy the positive String/Arn conditions of an Allow: the request it was made for."""
    context: dict[str, list[str]] = {}
    for operator, pairs in (statement.get("Condition") or {}).items():
        if not isinstance(pairs, Mapping) or "Not" in operator or ":" in operator:
            continue
        for key, wanted in pairs.items():
            values = [str(v) for v in as_list(wanted)]
            if values and (operator.startswith("String") or operator.startswith("Arn")):
                context[key] = [_instance(values[0])]
    return context


def revoked_pairs(statements: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, dict[str, list[str]]]]:
    """(action, resource, context) a grant's Allow statements gave: what a check must see refused."""
    pairs: list[tuple[str, str, dict[str, list[str]]]] = []
    for statement in statements:
        if statement.get("Effect") != "Allow" or "NotAction" in statement or "NotResource" in statement:
            continue
        context = _condition_context(statement)
        for action in as_list(statement.get("Action")):
            for resource in as_list(statement.get("Resource")) or ["*"]:
                pairs.append((_instance(str(action)), _instance(str(resource)), context))
    return pairs[:_MAX_PAIRS]


def session_context(
    *, ended_at: datetime, account_id: str, session_name: str = "check"
) -> dict[str, list[str]]:
    """The condition keys of a session issued one second before the end."""
    issued = ended_at.timestamp() - 1
    return {
        "aws:TokenIssueTime": [iso(datetime.fromtimestamp(issued, tz=UTC))],
        "aws:userid": [f"{CHECK_ROLE_ID}:{session_name}"],
        "aws:PrincipalAccount": [account_id],
        **{k: [v] for k, v in _ASSUMED_CONTEXT.items()},
    }


def allowed_by(
    documents: Sequence[str], action: str, resource: str, context: Mapping[str, Sequence[str]]
) -> bool:
    request = evaluate.Request(action, (resource,), context)
    return evaluate.decide(request, identity=list(documents)).allowed


def cutoff(ended_at: datetime) -> datetime:
    """The instant the deny names: the end, rounded up to a whole second (a policy's dates are written to the
    second, and rounding down would spare a session issued in the same second just before the end)."""
    whole = ended_at.replace(microsecond=0)
    return whole if whole == ended_at else whole + timedelta(seconds=1)


def _before(ended_at: datetime) -> dict[str, dict[str, str]]:
    return {"DateLessThan": {"aws:TokenIssueTime": iso(cutoff(ended_at))}}


def pairs_fence(
    *, grant_id: int, statements: Sequence[Mapping[str, Any]], remaining: Sequence[str], ended_at: datetime
) -> list[dict[str, Any]]:
    """Deny the grant's statements to sessions issued before ``ended_at``, action by action, leaving out what
    the ``remaining`` policies still allow (another grant, a policy Gatehouse did not write)."""
    fences: list[dict[str, Any]] = []
    for statement in statements:
        if statement.get("Effect") != "Allow" or "NotAction" in statement or "NotResource" in statement:
            continue
        context = {**_condition_context(statement), "aws:TokenIssueTime": ["1970-01-01T00:00:00Z"]}
        by_resource: dict[str, list[str]] = {}
        for resource in as_list(statement.get("Resource")) or ["*"]:
            for action in as_list(statement.get("Action")):
                if not allowed_by(remaining, _instance(str(action)), _instance(str(resource)), context):
                    by_resource.setdefault(str(resource), []).append(str(action))
        for resource, actions in by_resource.items():
            condition = {**dict(statement.get("Condition") or {}), **_before(ended_at)}
            fences.append(
                {
                    "Sid": sid(grant_id, len(fences)),
                    "Effect": "Deny",
                    "Action": sorted(set(actions)),
                    "Resource": resource,
                    "Condition": condition,
                }
            )
    return fences


def person_fence(
    *, grant_id: int, user_names: Sequence[str], account_id: str, ended_at: datetime
) -> list[dict[str, Any]]:
    """Deny everything to these people's sessions of a shared permission set's role in one account that were
    issued before ``ended_at``."""
    if not user_names:
        return []
    return [
        {
            "Sid": sid(grant_id),
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                **_before(ended_at),
                "StringLike": {"aws:userid": sorted(f"*:{escape_like(n)}" for n in user_names)},
                "StringEquals": {"aws:PrincipalAccount": account_id},
            },
        }
    ]


def render(statements: Sequence[Mapping[str, Any]]) -> str | None:
    if not statements:
        return None
    return json.dumps(
        {"Version": "2012-10-17", "Statement": list(statements)}, separators=(",", ":"), sort_keys=True
    )


def merged(document: str | None, fences: Sequence[Mapping[str, Any]]) -> str | None:
    """``document`` with Gatehouse's fences exactly ``fences``: every other statement kept as it is."""
    loaded = json.loads(document) if document else {"Version": "2012-10-17", "Statement": []}
    others = [s for s in evaluate.statements(loaded) if not is_fence(s)]
    if not others and not fences:
        return None
    return json.dumps({**loaded, "Statement": [*others, *fences]}, separators=(",", ":"), sort_keys=True)


def live_fences(
    *, kind: str, account_id: str | None, target: str, now: datetime | None = None
) -> list[AccessEnd]:
    """The fences that should be in AWS now on one target, oldest first."""
    now = now or timezone.now()
    rows = AccessEnd.objects.filter(
        fence_kind=kind, fence_target=target, fence_removed_at__isnull=True, sessions_until__gt=now
    )
    if account_id is not None:
        rows = rows.filter(fence_account_id=account_id)
    return list(rows.order_by("ended_at", "pk"))


def statements_of(ends: Iterable[AccessEnd]) -> list[dict[str, Any]]:
    return [statement for end in ends for statement in end.fence]


def portal_permission_set_document(
    document: str | None, *, principal: Principal, account: AwsAccount, permission_set_arn: str | None
) -> str | None:
    """The inline policy of a principal's portal-owned permission set: the approved statements (``document``)
    and the fences of its grants that ended, as many as fit (the approved statements always come first)."""
    if permission_set_arn is None:
        return document
    fences = statements_of(
        live_fences(
            kind=FenceKind.PORTAL_PERMISSION_SET, account_id=account.account_id, target=permission_set_arn
        )
    )
    kept: list[dict[str, Any]] = []
    for fence in fences:
        candidate = merged(document, [*kept, fence])
        if candidate is not None and policy.policy_size(candidate) <= policy.PERMISSION_SET_INLINE_LIMIT:
            kept.append(fence)
    return merged(document, kept) if kept else document


# --- recording an end -----------------------------------------------------------------------------------


def access_end_record(*, grant_id: int, now: datetime) -> None:
    """A grant's removal was written to AWS (called in the transaction that marks it revoked or expired): its
    sessions are ended and the end confirmed by a task queued after commit (``provisioning.sessions``)."""
    end, created = AccessEnd.objects.get_or_create(
        grant_id=grant_id, defaults={"ended_at": now, "next_check_at": now}
    )
    if created:
        # A lost message only delays the check: the sweeper runs every end whose check is due.
        enqueue.after_commit(
            "accessrequests.tasks.reconcile_access_end",
            end.pk,
            reference=f"the end of grant {grant_id}",
            if_lost="the sweeper will run the check",
        )
