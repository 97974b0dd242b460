"""Writing rules: a rules file applied whole, and changes that wait for a second admin.

Both end in ``_write``: one rule created, changed, disabled or deleted from its spec (``accessrequests.governance.rules_file``),
with an audit event holding the spec before and after. ``rules_apply`` runs every change of a file in one
transaction, so a file that fails anywhere, even halfway through, changes nothing; it is what GATEHOUSE_RULES_FILE
does. Without that setting a file is only proposed (``rules_propose``): one pending change per rule, approved one
by one or as a set by another admin. The same approval applies the governed facts of ``governance.governed_changes``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.authz import routing as rules
from accessrequests.authz.permissions import SecondFactor
from accessrequests.governance.governed_changes import (
    RuleChangeError,
    governed_change_apply,
    proposal_facts,
    proposal_store,
)
from accessrequests.governance.routing_plan import RoutingPlan, plan_account_change, plan_routing
from accessrequests.governance.rules_file import (
    Catalog,
    Change,
    RuleSet,
    RulesFileError,
    approval_spec_from_entry,
    change_between,
    eligibility_spec_from_entry,
    plan,
    read,
    route_rules,
    semantic_errors,
    spec_of,
    validate,
)
from accessrequests.models import (
    RULE_TARGETS,
    ApprovalRule,
    AwsAccount,
    EligibilityRule,
    RuleChange,
    RuleChangeOperation,
    RuleChangeStatus,
    RuleTarget,
)

log = logging.getLogger(__name__)

MODELS: dict[str, type[ApprovalRule] | type[EligibilityRule]] = {
    RuleTarget.APPROVAL_RULE: ApprovalRule,
    RuleTarget.ELIGIBILITY_RULE: EligibilityRule,
}


# --- one rule, from its spec ---------------------------------------------------------------------------


def _write_scope(rule: ApprovalRule | EligibilityRule, spec: dict[str, Any], catalog: Catalog) -> None:
    """The accounts a rule covers (by id, unit, tag, environment), and the rule saved with them."""
    rule.account_tags = {key: list(values) for key, values in spec["account_tags"].items()}
    rule.environments = list(spec["environments"])
    rule.save()
    rule.accounts.set([catalog.accounts[a] for a in spec["accounts"]])
    rule.units.set([unit for unit, _ in (catalog.unit(ref) for ref in spec["units"]) if unit is not None])


def _write_approval(rule: ApprovalRule, spec: dict[str, Any], catalog: Catalog) -> None:
    rule.name = spec["name"]
    rule.priority = spec["priority"]
    rule.enabled = spec["enabled"]
    rule.kinds = list(spec["kinds"])
    rule.levels = list(spec["levels"])
    rule.approvals_required = spec["approvals"]
    rule.max_duration_hours = spec["max_duration_hours"]
    rule.allow_permanent = spec["allow_permanent"]
    rule.auto_approve_low_risk = spec["auto_approve_low_risk"]
    rule.allow_privileged_permission_sets = spec["allow_privileged_permission_sets"]
    rule.contact = spec["contact"]
    rule.slack_channel = spec["slack_channel"]
    rule.chat_approval = spec["chat_approval"]
    rule.break_glass_max_hours = spec["break_glass_max_hours"]
    rule.break_glass_kinds = list(spec["break_glass_kinds"])
    _write_scope(rule, spec, catalog)
    rule.pipelines.set([catalog.pipelines[p] for p in spec["pipelines"]])
    rule.approver_groups.set([catalog.groups[g] for g in spec["approver_groups"]])
    rule.approver_users.set([catalog.users[u] for u in spec["approver_users"]])
    rule.break_glass_groups.set([catalog.groups[g] for g in spec["break_glass_groups"]])
    rule.break_glass_users.set([catalog.users[u] for u in spec["break_glass_users"]])


def _write_eligibility(rule: EligibilityRule, spec: dict[str, Any], catalog: Catalog) -> None:
    rule.name = spec["name"]
    rule.description = spec["description"]
    rule.kinds = list(spec["kinds"])
    _write_scope(rule, spec, catalog)
    sets = [catalog.permission_set(ref)[0] for ref in spec["permission_sets"]]
    rule.permission_sets.set([s for s in sets if s is not None])
    rule.groups.set([catalog.groups[g] for g in spec["groups"]])
    rule.users.set([catalog.users[u] for u in spec["users"]])


def _write(
    change: Change,
    *,
    catalog: Catalog,
    instance: ApprovalRule | EligibilityRule | None,
    actor=None,
    actor_label: str | None = None,
    http_request=None,
    webhook: str | None = None,
) -> ApprovalRule | EligibilityRule | None:
    """Make one change and record it: ``approvalrule.created``/``changed``/``deleted`` (and the same for
    ``eligibilityrule``), before and after as specs. ``webhook``: a new Slack webhook URL from the admin (None
    keeps the one set: the file never holds it)."""
    model = MODELS[change.target]
    name = str(model._meta.model_name)
    if change.operation == "delete":
        assert instance is not None
        pk = instance.pk
        try:
            instance.delete()
        except ProtectedError:
            raise RuleChangeError(
                f"Requests name the rule '{change.name}', so it cannot be deleted; disable it instead."
            ) from None
        action, object_id = f"{name}.deleted", pk
    else:
        assert change.after is not None
        rule = instance if instance is not None else model()
        if isinstance(rule, ApprovalRule):
            if webhook is not None:
                rule.slack_webhook_url = webhook
            _write_approval(rule, change.after, catalog)
        else:
            assert isinstance(rule, EligibilityRule)
            _write_eligibility(rule, change.after, catalog)
        action = f"{name}.{'created' if instance is None else 'changed'}"
        object_id = rule.pk
    audit.record(
        action=action,
        object_type=name,
        object_id=object_id,
        actor=actor,
        actor_label=actor_label,
        before=change.before,
        after={**(change.after or {}), "change": change.sentence()} if change.after else None,
        http_request=http_request,
    )
    return None if change.operation == "delete" else rule


# --- a rules file --------------------------------------------------------------------------------------


@dataclass
class Plan:
    changes: list[Change]
    sha256: str
    routing: RoutingPlan | None = None


def routing_between(current: RuleSet, desired: RuleSet, catalog: Catalog) -> RoutingPlan:
    """Which accounts' requests another approval rule would route if ``desired`` replaced ``current``: every
    requestable account, kind and level, matched in memory (rules and accounts loaded once)."""
    return plan_routing(
        catalog.account_facts(),
        route_rules(current.approval.values(), catalog),
        route_rules(desired.approval.values(), catalog),
    )


def rules_plan(text: str) -> Plan:
    """The changes ``text`` (a rules file) would make, rule by rule and account by account; raises
    RulesFileError listing every problem."""
    catalog = Catalog.load()
    document = validate(text, catalog=catalog)
    desired = RuleSet.from_document(document, catalog)
    current = RuleSet.from_database(catalog)
    return Plan(
        plan(current, desired),
        hashlib.sha256(text.encode()).hexdigest(),
        routing_between(current, desired, catalog),
    )


def rule_change_routing(change: RuleChange) -> RoutingPlan | None:
    """What approving a pending change would do to routing (the admin's pending-change page shows it beside the
    diff): of an approval rule, or of an account's environment. None for changes that cannot move routing
    (eligibility rules, people and links) and for changes already decided."""
    if change.status != RuleChangeStatus.PENDING:
        return None
    if change.target == RuleTarget.ACCOUNT:
        account = AwsAccount.objects.filter(pk=change.target_id or 0).first()
        environment = (change.after or {}).get("environment")
        if account is None or not environment:
            return None
        now = rules.account_facts(account)
        return plan_account_change(now, replace(now, environment=environment), rules.route_rules())
    if change.target != RuleTarget.APPROVAL_RULE:
        return None
    catalog = Catalog.load()
    current = RuleSet.from_database(catalog)
    desired = RuleSet(dict(current.approval), current.eligibility)
    if change.before is not None:
        desired.approval.pop(change.before["name"], None)
    after = _canonical(change.target, change.after, catalog)
    if after is not None:
        desired.approval[after["name"]] = after
    return routing_between(current, desired, catalog)


def rules_apply(*, text: str, source: str, actor=None) -> Plan:
    """Make the database's rules what ``text`` says, all in one transaction, each change audited, then one
    ``rules.applied`` event naming the file and its SHA-256. Nothing changes when the file is not valid or any
    write fails (RulesFileError / RuleChangeError). A file that changes nothing records nothing."""
    label = None if actor is not None else f"rules-file:{source}"[:200]
    with transaction.atomic():
        catalog = Catalog.load()
        document = validate(text, catalog=catalog)
        desired = RuleSet.from_document(document, catalog)
        # Under the lock of the rows being replaced, so two applies (a deploy and beat) do not interleave.
        list(ApprovalRule.objects.select_for_update().values_list("pk", flat=True))
        list(EligibilityRule.objects.select_for_update().values_list("pk", flat=True))
        result = Plan(
            plan(RuleSet.from_database(catalog), desired), hashlib.sha256(text.encode()).hexdigest()
        )
        for change in result.changes:
            model = MODELS[change.target]
            instance = model.objects.filter(name=change.name).first() if change.before is not None else None
            try:
                with transaction.atomic():
                    _write(change, catalog=catalog, instance=instance, actor=actor, actor_label=label)
            except DatabaseError as exc:
                # Leaving the outer block with this exception rolls back every change made before it too.
                raise RuleChangeError(f"the database refused {change.sentence()} ({exc})") from exc
        if result.changes:
            audit.record(
                action="rules.applied",
                object_type="rules_file",
                object_id=Path(source).name[:64],
                actor=actor,
                actor_label=label,
                after={
                    "file": source,
                    "sha256": result.sha256,
                    "changes": [c.sentence() for c in result.changes],
                },
            )
    return result


def rules_apply_configured_file() -> dict[str, Any]:
    """Apply GATEHOUSE_RULES_FILE (beat, and each worker at start). An unreadable or invalid file is logged
    with every problem and changes nothing: the rules in force stay in force."""
    path = settings.GATEHOUSE_RULES_FILE
    if not path:
        return {"applied": False, "reason": "GATEHOUSE_RULES_FILE is not set"}
    try:
        result = rules_apply(text=read(path), source=str(path))
    except (RulesFileError, RuleChangeError) as exc:
        errors = getattr(exc, "errors", [str(exc)])
        log.error("rules file %s not applied: %s", path, "; ".join(errors))
        return {"applied": False, "errors": errors}
    if result.changes:
        log.info("rules file %s applied: %s", path, "; ".join(c.sentence() for c in result.changes))
    return {"applied": True, "changes": [c.sentence() for c in result.changes], "sha256": result.sha256}


def rules_propose(
    *, text: str, source: str, proposer_label: str, as_user=None
) -> tuple[Plan, list[RuleChange]]:
    """What ``rules apply FILE`` does without GATEHOUSE_RULES_FILE: every change the file would make stored as a
    pending change (one per rule, sharing a change set), for another admin to approve. ``proposer_label`` names
    who ran the command (operating-system user and host); ``as_user``, an admin, is then the proposer and cannot
    approve. Nothing is stored when the file is not valid."""
    permissions.check(permissions.rules_propose_problem(as_user))
    label = proposer_label[:200]
    with transaction.atomic():
        result = rules_plan(text)
        origin = f"rules file {Path(source).name} (sha256 {result.sha256})"[:300]
        change_set = uuid.uuid4().hex
        operations = {"create": RuleChangeOperation.CREATE, "delete": RuleChangeOperation.DELETE}
        proposals = []
        for change in result.changes:
            model = MODELS[change.target]
            instance = model.objects.filter(name=change.name).first() if change.before is not None else None
            proposal = proposal_store(
                actor=as_user,
                actor_label=None if as_user is not None else label,
                after_key="rule_after",
                extra={"command_run_by": label},
                target=change.target,
                operation=operations.get(change.operation, RuleChangeOperation.UPDATE),
                rule_name=change.name,
                target_id=instance.pk if instance is not None else None,
                before=change.before,
                after=change.after,
                summary=change.sentence(),
                proposed_by=as_user,
                proposer_label=label,
                origin=origin,
                change_set=change_set,
            )
            proposals.append(proposal)
        if proposals:
            audit.record(
                action="rules.proposed",
                object_type="rules_file",
                object_id=Path(source).name[:64],
                actor=as_user,
                actor_label=None if as_user is not None else label,
                after={
                    "file": source,
                    "sha256": result.sha256,
                    "command_run_by": label,
                    "changes": [c.sentence() for c in result.changes],
                    "rule_changes": [p.pk for p in proposals],
                },
            )
    return result, proposals


# --- changes proposed in the admin ---------------------------------------------------------------------


def rule_change_propose(
    *,
    user,
    target: str,
    instance: ApprovalRule | EligibilityRule | None,
    after: dict[str, Any] | None,
    slack_webhook_url: str | None = None,
    http_request=None,
) -> RuleChange:
    """Store a change to one rule (``after`` None deletes it) as pending, for a second admin to approve.
    ``slack_webhook_url``: the rule's webhook as the admin left it (None: not an approval rule)."""
    permissions.check(permissions.rule_change_propose_problem(user))
    catalog = Catalog.load()
    before = spec_of(target, instance, catalog) if instance is not None else None
    if after is not None:
        section = "rules" if target == RuleTarget.APPROVAL_RULE else "eligibility"
        errors = semantic_errors({section: [after]}, catalog)
        if errors:
            raise RuleChangeError("; ".join(e.split(": ", 1)[-1] for e in errors))
    if after is None and isinstance(instance, ApprovalRule) and instance.requests.exists():
        raise RuleChangeError(
            f"Requests name the rule '{instance.name}', so it cannot be deleted; disable it instead."
        )
    change = change_between(target, before, after)
    current_webhook = instance.slack_webhook_url if isinstance(instance, ApprovalRule) else ""
    webhook_changes = slack_webhook_url is not None and slack_webhook_url != current_webhook
    if change is None and not webhook_changes:
        raise RuleChangeError("This changes nothing.")
    phrases = list(change.phrases) if change is not None else []
    if webhook_changes:
        phrases.append("removes the Slack webhook" if not slack_webhook_url else "sets a new Slack webhook")
    name = (after or before or {}).get("name", "")
    noun = "rule" if target == RuleTarget.APPROVAL_RULE else "eligibility rule"
    operation = (
        RuleChangeOperation.CREATE
        if instance is None
        else RuleChangeOperation.DELETE
        if after is None
        else RuleChangeOperation.UPDATE
    )
    with transaction.atomic():
        proposal = proposal_store(
            actor=user,
            after_key="rule_after",
            http_request=http_request,
            target=target,
            operation=operation,
            rule_name=name,
            target_id=instance.pk if instance is not None else None,
            before=before,
            after=after,
            slack_webhook_url=(slack_webhook_url or "") if webhook_changes else "",
            webhook_changes=webhook_changes,
            summary=f"{noun} '{name}': " + "; ".join(phrases),
            proposed_by=user,
        )
    return proposal


def _canonical(target: str, spec: dict[str, Any] | None, catalog: Catalog) -> dict[str, Any] | None:
    if spec is None:
        return None
    if target == RuleTarget.APPROVAL_RULE:
        return approval_spec_from_entry(spec, catalog)
    return eligibility_spec_from_entry(spec, catalog)


def _locked_pending(change_id: int) -> RuleChange:
    change = (
        RuleChange.objects.select_for_update(of=("self",))
        .select_related("proposed_by")
        .filter(pk=change_id)
        .first()
    )
    if change is None:
        raise RuleChangeError("No such rule change.")
    return change


def _apply_rule_change(change: RuleChange, *, user, http_request=None) -> None:
    """Write an approved rule change; refused when the rule changed since it was proposed (the diff the approver
    saw would no longer be true)."""
    model = MODELS[change.target]
    catalog = Catalog.load()
    instance = model.objects.filter(pk=change.target_id).first() if change.target_id else None
    now_spec = spec_of(change.target, instance, catalog) if instance is not None else None
    if change.target_id and instance is None:
        raise RuleChangeError(f"The rule '{change.rule_name}' no longer exists; reject this change.")
    # A change proposed before a rule had some field is read with that field's default (what it meant then).
    proposed_before, proposed_after = (
        _canonical(change.target, spec, catalog) for spec in (change.before, change.after)
    )
    if now_spec != proposed_before:
        raise RuleChangeError(
            f"The rule '{change.rule_name}' changed since this was proposed; reject this change and propose "
            "it again."
        )
    if (
        change.operation == RuleChangeOperation.CREATE
        and model.objects.filter(name=change.rule_name).exists()
    ):
        raise RuleChangeError(f"A rule named '{change.rule_name}' exists now; reject this change.")
    if proposed_after is not None:
        section = "rules" if change.target == RuleTarget.APPROVAL_RULE else "eligibility"
        errors = semantic_errors({section: [proposed_after]}, catalog)
        if errors:
            raise RuleChangeError(
                "It can no longer be applied: " + "; ".join(e.split(": ", 1)[-1] for e in errors)
            )
    as_change = change_between(change.target, proposed_before, proposed_after) or Change(
        # Only the Slack webhook changes: the specs are equal, the summary says what happens.
        change.target,
        "update",
        change.rule_name,
        proposed_before,
        proposed_after,
        [change.summary.split(": ", 1)[-1]],
    )
    webhook = change.slack_webhook_url if change.webhook_changes else None
    _write(
        as_change,
        catalog=catalog,
        instance=instance,
        actor=user,
        http_request=http_request,
        webhook=webhook,
    )


def _approve(
    change: RuleChange, *, user, second_factor: SecondFactor | None, comment: str, http_request
) -> RuleChange:
    """Apply a pending change whose row lock the caller holds, then mark it approved and audit that."""
    permissions.check(permissions.rule_change_decide_problem(user, change))
    if change.target in RULE_TARGETS:
        _apply_rule_change(change, user=user, http_request=http_request)
    else:
        governed_change_apply(change, actor=user, http_request=http_request)
    before = proposal_facts(change)
    RuleChange.objects.filter(pk=change.pk, status=RuleChangeStatus.PENDING).update(
        status=RuleChangeStatus.APPROVED,
        decided_by=user,
        decided_at=timezone.now(),
        comment=comment[:2000],
    )
    change.refresh_from_db()
    audit.record(
        action="rulechange.approved",
        object_type="rulechange",
        object_id=change.pk,
        actor=user,
        before=before,
        after={
            **proposal_facts(change),
            "second_factor": second_factor.facts() if second_factor else None,
        },
        http_request=http_request,
    )
    return change


def rule_change_approve(
    *, change_id: int, user, second_factor: SecondFactor | None, comment: str = "", http_request=None
) -> RuleChange:
    """A second admin approves a pending change with a fresh second factor; it takes effect now. Refused when
    what it changes moved since it was proposed."""
    permissions.check(permissions.second_factor_problem(user, second_factor))
    with transaction.atomic():
        change = _locked_pending(change_id)
        return _approve(
            change, user=user, second_factor=second_factor, comment=comment, http_request=http_request
        )


def rule_change_set_approve(
    *, change_set: str, user, second_factor: SecondFactor | None, comment: str = "", http_request=None
) -> list[RuleChange]:
    """Approve every pending change of a set (one rules file) in one transaction: all take effect, or, when
    any is refused, none does."""
    permissions.check(permissions.second_factor_problem(user, second_factor))
    with transaction.atomic():
        changes = list(
            # Only the change rows: the proposer may be none (a command run without --as), an outer join.
            RuleChange.objects.select_for_update(of=("self",))
            .select_related("proposed_by")
            .filter(change_set=change_set, status=RuleChangeStatus.PENDING)
            .order_by("pk")
        )
        if not change_set or not changes:
            raise RuleChangeError("Nothing in this set waits for approval.")
        return [
            _approve(c, user=user, second_factor=second_factor, comment=comment, http_request=http_request)
            for c in changes
        ]


def rule_change_reject(*, change_id: int, user, comment: str = "", http_request=None) -> RuleChange:
    """Another admin turns a pending change down; the rules stay as they are."""
    with transaction.atomic():
        change = _locked_pending(change_id)
        permissions.check(permissions.rule_change_decide_problem(user, change))
        before = proposal_facts(change)
        RuleChange.objects.filter(pk=change.pk, status=RuleChangeStatus.PENDING).update(
            status=RuleChangeStatus.REJECTED,
            decided_by=user,
            decided_at=timezone.now(),
            comment=comment[:2000],
        )
        change.refresh_from_db()
        audit.record(
            action="rulechange.rejected",
            object_type="rulechange",
            object_id=change.pk,
            actor=user,
            before=before,
            after={**proposal_facts(change), "comment": comment[:2000]},
            http_request=http_request,
        )
    return change
