"""Changes to governed facts (``accessrequests.governance.governed``): proposed by one admin, applied when another approves.

``governed_change_propose`` stores the change as a pending ``RuleChange`` with the facts before and after and the
change in words; ``governed_change_apply`` is called by ``governance.rule_changes.rule_change_approve`` under the
change's row lock, after the four-eyes and second-factor checks, and writes the facts only when the object still
reads as it did when the change was proposed. Both are audited; the approval and rejection events are the rule
changes' own (``rulechange.approved``/``rejected``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.governance import governed
from accessrequests.models import Environment, RuleChange, RuleChangeOperation, RuleTarget


class RuleChangeError(Exception):
    """A governed change (of a rule or of a fact) that cannot be made as it is, with a message for the admin who
    tried."""


def proposal_facts(change: RuleChange) -> dict[str, Any]:
    """A proposal as the audit trail records it."""
    return {
        "status": change.status,
        "target": change.target,
        "operation": change.operation,
        "rule": change.rule_name,
        "summary": change.summary,
        "proposed_by": change.proposer,
        "slack_webhook": "changed" if change.webhook_changes else "unchanged",
        **({"origin": change.origin} if change.origin else {}),
        **({"change_set": change.change_set} if change.change_set else {}),
    }


def proposal_store(
    *, actor, actor_label: str | None = None, after_key: str, extra=None, http_request=None, **fields
) -> RuleChange:
    """Store a pending change and its ``rulechange.proposed`` event (what it changes to under ``after_key``)."""
    proposal = RuleChange.objects.create(**fields)
    audit.record(
        action="rulechange.proposed",
        object_type="rulechange",
        object_id=proposal.pk,
        actor=actor,
        actor_label=actor_label,
        before=proposal.before,
        after={**proposal_facts(proposal), after_key: proposal.after, **(extra or {})},
        http_request=http_request,
    )
    return proposal


def _missing(what: str, names: set[str]) -> RuleChangeError:
    return RuleChangeError(f"No {what} named {', '.join(sorted(names))} exists (any more).")


def _users(usernames: list[str]) -> list:
    found = list(get_user_model().objects.filter(username__in=usernames))
    if len(found) != len(set(usernames)):
        raise _missing("user", set(usernames) - {u.get_username() for u in found})
    return found


def _groups(names: list[str]) -> list[Group]:
    found = list(Group.objects.filter(name__in=names))
    if len(found) != len(set(names)):
        raise _missing("group", set(names) - {g.name for g in found})
    return found


def _principals(refs: list[str]) -> list:
    found = governed.principals_by_ref(refs)
    if len(found) != len(set(refs)):
        raise _missing("principal", set(refs) - set(found))
    return list(found.values())


def _check(target: str, after: dict[str, Any]) -> None:
    """``after`` is facts of the target's shape naming things that exist; raises RuleChangeError."""
    if target == RuleTarget.ACCOUNT and after.get("environment") not in Environment.values:
        raise RuleChangeError(f"Choose the environment from: {', '.join(Environment.values)}.")
    if "users" in after:
        _users(after["users"])
    if "groups" in after:
        _groups(after["groups"])
    if "principals" in after:
        _principals(after["principals"])


def _write(target: str, obj: Any, after: dict[str, Any]) -> None:
    if target == RuleTarget.ACCOUNT:
        type(obj).objects.filter(pk=obj.pk).update(**{f: after[f] for f in governed.ACCOUNT_FIELDS})
    elif target == RuleTarget.PRINCIPAL_LINKS:
        obj.users.set(_users(after["users"]))
    elif target == RuleTarget.GROUP_MEMBERS:
        obj.user_set.set(_users(after["users"]))
    elif target == RuleTarget.SCIM_PRINCIPALS:
        obj.principals.set(_principals(after["principals"]))
    elif target == RuleTarget.USER_ACCESS:
        if obj.is_superuser != after["superuser"]:
            obj.is_superuser = after["superuser"]
            obj.save(update_fields=["is_superuser"])
        wanted = {g.pk for g in _groups(after["groups"])}
        held = set(obj.groups.filter(pk__in=governed.governed_group_ids()).values_list("pk", flat=True))
        if held - wanted:
            obj.groups.remove(*(held - wanted))
        if wanted - held:
            obj.groups.add(*(wanted - held))
        obj.principals.set(_principals(after["principals"]))
        obj._gatehouse_groups = None  # roles.in_group's per-request cache
    else:  # pragma: no cover - every target of SUBJECTS is written above
        raise RuleChangeError(f"Gatehouse cannot apply a change to {target}.")


def governed_change_propose(
    *, user, target: str, instance: Any, after: dict[str, Any], http_request=None
) -> RuleChange:
    """Store a change of ``instance``'s governed facts to ``after`` as pending, for a second admin to approve.
    Raises NotAllowed (only admins propose) or RuleChangeError (nothing changes, or it names what does not
    exist)."""
    permissions.check(permissions.governed_change_propose_problem(user))
    if target == RuleTarget.ACCOUNT:
        permissions.check(permissions.account_environment_problem(user, instance))
    subject = governed.SUBJECTS[target]
    before = subject.facts(instance)
    after = {key: after.get(key, value) for key, value in before.items()}
    if after == before:
        raise RuleChangeError("This changes nothing.")
    _check(target, after)
    name = subject.name(instance)[:200]
    with transaction.atomic():
        proposal = proposal_store(
            actor=user,
            after_key="facts_after",
            http_request=http_request,
            target=target,
            operation=RuleChangeOperation.UPDATE,
            rule_name=name,
            target_id=instance.pk,
            before=before,
            after=after,
            summary=governed.describe(target, name, before, after),
            proposed_by=user,
        )
    return proposal


def governed_change_apply(change: RuleChange, *, actor, http_request=None) -> None:
    """Write an approved change (the caller holds the change's row lock and checked who decides). Refused when
    the object is gone or no longer reads as ``change.before``."""
    subject = governed.SUBJECTS[change.target]
    obj = subject.load(change.target_id, lock=True)
    if obj is None:
        raise RuleChangeError(
            f"The {subject.noun} '{change.rule_name}' no longer exists; reject this change."
        )
    before = subject.facts(obj)
    if before != change.before:
        raise RuleChangeError(
            f"The {subject.noun} '{change.rule_name}' changed since this was proposed; reject this change and "
            "propose it again."
        )
    after = change.after or {}
    if change.target == RuleTarget.ACCOUNT:
        # An environment tag read since the proposal makes the environment Organizations' to say.
        permissions.check(permissions.account_environment_problem(actor, obj))
    _check(change.target, after)
    _write(change.target, obj, after)
    audit.record(
        action=f"{change.target}.changed",
        object_type=change.target,
        object_id=obj.pk,
        actor=actor,
        before=before,
        after={**after, "change": change.summary, "proposed_by": change.proposer},
        http_request=http_request,
    )
