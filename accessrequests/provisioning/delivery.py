"""Desired state vs AWS for one principal in one account: compute, compare, write the difference, read back.

``converge`` is the one operation behind apply, revoke, expiry, retry and drift repair (DESIGN.md,
"Provisioning: desired state, not diffs"). It is given the grants that should be live and makes AWS hold
exactly them — through the portal-owned IAM inline/spill policies, Identity Center assignments, and
portal-owned cross-account roles — writing only what differs, so a second run writes nothing.

It never touches the database's grant statuses; ``provisioning`` does that around it, under the lock.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from accessrequests.aws import iam
from accessrequests.aws import identity_center as ic
from accessrequests.aws.errors import AwsOperationError
from accessrequests.models import (
    AwsAccount,
    Delivery,
    Grant,
    ManagedAssignment,
    PassableRole,
    PermissionSet,
    PermissionSetRisk,
    Principal,
    RequestKind,
)
from accessrequests.policy import documents as policy
from accessrequests.policy.actions import as_list
from accessrequests.provisioning import session_fences

T = TypeVar("T")


@dataclass
class Convergence:
    """What one converge found and did."""

    differences: list[str] = field(default_factory=list)  # how AWS differed from the desired state
    request_ids: list[str] = field(default_factory=list)  # AWS request ids of the writes made
    refused: dict[int, str] = field(default_factory=dict)  # grant id -> why it cannot be delivered
    details: dict[int, dict[str, Any]] = field(default_factory=dict)  # grant id -> delivery facts
    summary: dict[str, Any] = field(default_factory=dict)  # the desired state, for the audit trail

    def merge(self, other: Convergence) -> None:
        self.differences += other.differences
        self.request_ids += other.request_ids
        self.refused |= other.refused
        for pk, facts in other.details.items():
            self.details.setdefault(pk, {}).update(facts)
        self.summary |= other.summary


@functools.lru_cache(maxsize=2048)
def _problems(document: str) -> tuple[str, ...]:
    # Documents are deterministic, so the same one is checked (parliament included) once per process.
    return tuple(policy.check_document(document))


def checked(document: str) -> str:
    """Raise PolicyError unless the document passes every check (DESIGN.md "Security invariants")."""
    problems = _problems(document)
    if problems:
        raise policy.PolicyError("The policy failed its checks: " + "; ".join(problems) + ".")
    return document


def place(grants: Sequence[Grant], fit: Callable[[list[Grant]], T]) -> tuple[list[Grant], T, dict[int, str]]:
    """Fit as many grants as possible, in the given order; the ones that do not fit are refused with a reason.

    Callers order active grants first, so a newcomer that would overflow a limit is the one refused, never a
    grant that is already live.
    """
    try:
        return list(grants), fit(list(grants)), {}
    except policy.PolicyError:
        pass
    placed: list[Grant] = []
    refused: dict[int, str] = {}
    result = fit([])
    for grant in grants:
        try:
            result = fit([*placed, grant])
        except policy.PolicyError as exc:
            refused[grant.pk] = str(exc)
        else:
            placed.append(grant)
    return placed, result, refused


def _statements(grants: Sequence[Grant]) -> list[dict[str, Any]]:
    return [statement for grant in grants for statement in grant.statements]


def _role_arn(account: AwsAccount) -> str | None:
    return account.provisioning_role_arn or None


def _size(document: str | None) -> int:
    return 0 if document is None else policy.policy_size(document)


# --- IAM users, roles and groups ----------------------------------------------------------------------


def iam_target(principal: Principal, account: AwsAccount) -> iam.Target:
    # external_id is the principal's ARN; its last path segment is the name (IAM names cannot contain "/").
    return iam.Target(
        kind=principal.iam_type,
        name=principal.external_id.rsplit("/", 1)[-1],
        account_id=account.account_id,
        role_arn=_role_arn(account),
    )


def _converge_iam(
    principal: Principal, account: AwsAccount, grants: Sequence[Grant], write: bool
) -> Convergence:
    target = iam_target(principal, account)
    actual = iam.read_policies(target)
    spare = policy.MANAGED_POLICIES_PER_PRINCIPAL - actual.other_managed

    def fit(chosen: list[Grant]) -> policy.PolicyPlan:
        plan = policy.plan_documents(
            _statements(chosen),
            principal_type=target.kind,
            spare_managed_slots=spare,
            inline_used_by_others=actual.other_inline_size,
        )
        for document in (plan.inline, *plan.managed):
            if document is not None:
                checked(document)
        return plan

    placed, plan, refused = place(grants, fit)
    result = Convergence(refused=refused)
    result.summary["iam"] = {
        "target": str(target),
        "inline_size": _size(plan.inline),
        "spill_policies": len(plan.managed),
        "grants": sorted(g.pk for g in placed),
    }
    have_inline, have_managed = actual.documents()
    if have_inline != plan.inline:
        result.differences.append(
            f"{target}: inline policy {iam.INLINE_POLICY_NAME} has {_size(have_inline):,} characters, "
            f"should have {_size(plan.inline):,}"
        )
    if have_managed != plan.managed:
        result.differences.append(
            f"{target}: {len(have_managed)} spill policies differ from the {len(plan.managed)} wanted"
        )
    if not result.differences or not write:
        return result
    result.request_ids = iam.write_policies(target, inline=plan.inline, managed=plan.managed, actual=actual)
    if not plan.managed and not actual.managed:
        # Only the inline policy was written; reading back just it saves the attached-policy listing.
        after = iam.Policies(inline=iam.read_inline(target))
    else:
        after = iam.read_policies(target)
    if after.documents() != (plan.inline, plan.managed):
        raise AwsOperationError(f"{target}: IAM does not show the policies just written yet", transient=True)
    return result


# --- Identity Center ----------------------------------------------------------------------------------


def _portal_permission_set(principal: Principal, account: AwsAccount) -> PermissionSet | None:
    name = ic.portal_permission_set_name(principal.pk, account.account_id)
    return PermissionSet.objects.filter(
        identity_center=principal.identity_center, name=name, portal_owned=True
    ).first()


def _converge_identity_center(
    principal: Principal, account: AwsAccount, grants: Sequence[Grant], write: bool
) -> Convergence:
    center = principal.identity_center
    assert center is not None  # the database's has_home constraint
    instance = ic.Instance(instance_arn=center.instance_arn, region=center.region)
    principal_type = ic.PRINCIPAL_TYPES[principal.kind]
    with_statements = [g for g in grants if g.statements]
    assigned_sets = [g for g in grants if g.request.kind == RequestKind.PERMISSION_SET]

    def fit(chosen: list[Grant]) -> str | None:
        statements = _statements(chosen)
        return checked(policy.permission_set_document(statements)) if statements else None

    placed, document, refused = place(with_statements, fit)
    result = Convergence(refused=refused)
    desired: dict[str, list[Grant]] = {}
    for grant in assigned_sets:
        permission_set = grant.request.permission_set
        if permission_set is None or not permission_set.present:
            result.refused[grant.pk] = "The permission set no longer exists in Identity Center."
            continue
        desired.setdefault(permission_set.arn, []).append(grant)

    # Only assignments the portal made are ours to remove (ManagedAssignment rows): anything an administrator
    # assigned by hand, before or after a grant asked for the same set, stays.
    own = _portal_permission_set(principal, account)
    own_arn = own.arn if own is not None else None
    name = ic.portal_permission_set_name(principal.pk, account.account_id)
    # The set also denies what ended grants gave to sessions issued before they ended, while such a session
    # may live; with neither, it carries no policy at all (its role in the account then allows nothing).
    approved = document
    document = session_fences.portal_permission_set_document(
        approved, principal=principal, account=account, permission_set_arn=own_arn
    )
    if document is None and own_arn is not None and ic.inline_policy(instance, own_arn) is not None:
        result.differences.append(f"permission set {name} carries a policy no grant allows")
        if write:
            result.request_ids += ic.put_inline_policy(instance, own_arn, None)
            result.request_ids += ic.provision(
                instance, own_arn, account_id=account.account_id, what=f"permission set {name}"
            )
    if document is not None:
        if own_arn is None or ic.inline_policy(instance, own_arn) != document:
            result.differences.append(f"permission set {name} does not carry the approved policy")
            if write:
                own_arn, ids = ic.ensure_permission_set(
                    instance,
                    arn=own_arn,
                    name=name,
                    description=f"Gatehouse: approved CodePipeline access of {principal.name}",
                    document=document,
                    account_id=account.account_id,
                )
                result.request_ids += ids
                PermissionSet.objects.update_or_create(
                    arn=own_arn,
                    defaults={
                        "identity_center": center,
                        "name": name,
                        "description": "Created by Gatehouse to carry approved statements.",
                        "portal_owned": True,
                        "present": True,
                        "risk": PermissionSetRisk.STANDARD,
                        "risk_reasons": [],
                    },
                )
        if own_arn is not None and approved is not None:
            desired.setdefault(own_arn, []).extend(placed)
            for grant in placed:
                result.details[grant.pk] = {"permission_set_arn": own_arn}
    for arn, holders in desired.items():
        for grant in holders:
            result.details.setdefault(grant.pk, {})["permission_set_arn"] = arn

    where = {
        "account_id": account.account_id,
        "principal_type": principal_type,
        "principal_id": principal.external_id,
    }
    owned = set(
        ManagedAssignment.objects.filter(principal=principal, account_id=account.account_id).values_list(
            "permission_set_arn", flat=True
        )
    )
    actual = ic.assigned_permission_sets(instance, **where)
    wanted = set(desired)
    missing = sorted(wanted - actual)
    extra = sorted((actual & owned) - wanted)
    for arn in sorted((wanted & actual) - owned):
        # Held before any grant asked for it: the grant is satisfied, and the assignment is not ours to remove.
        for grant in desired[arn]:
            result.details.setdefault(grant.pk, {})["already_held"] = True
    result.differences += [f"{principal} lacks the assignment of {arn}" for arn in missing]
    result.differences += [f"{principal} holds an assignment of {arn} that no grant allows" for arn in extra]
    result.summary["identity_center"] = {
        "assignments": sorted(desired),
        "grants": sorted(g.pk for g in grants),
    }
    if not write:
        return result
    # Ownership rows whose assignment AWS no longer shows and nothing wants: someone removed it; forget it.
    ManagedAssignment.objects.filter(
        principal=principal, account_id=account.account_id, permission_set_arn__in=owned - actual - wanted
    ).delete()
    if not (missing or extra):
        return result
    for arn in missing:
        # Claimed before the call: a worker killed right after AWS made it still leaves it recognisably ours.
        ManagedAssignment.objects.get_or_create(
            principal=principal,
            account_id=account.account_id,
            permission_set_arn=arn,
            defaults={"grant_id": desired[arn][0].pk},
        )
        result.request_ids += ic.create_assignment(instance, permission_set_arn=arn, **where)
    for arn in extra:
        result.request_ids += ic.delete_assignment(instance, permission_set_arn=arn, **where)
        ManagedAssignment.objects.filter(
            principal=principal, account_id=account.account_id, permission_set_arn=arn
        ).delete()
    after = ic.assigned_permission_sets(instance, **where)
    if not wanted <= after or after & set(extra):
        raise AwsOperationError(
            f"{principal}: Identity Center does not show the assignments yet", transient=True
        )
    return result


# --- cross-account roles ------------------------------------------------------------------------------


def role_name(grant: Grant) -> str:
    return iam.portal_role_name(grant.request.reference)


def _trust(grant: Grant) -> str:
    req = grant.request
    document = policy.cross_account_trust_policy(
        trusted_account_id=req.trusted_account_id or None,
        trusted_principal_arn=req.trusted_principal_arn or None,
        external_id=req.external_id or None,
        role_account_id=grant.account.account_id,
    )
    return checked(json.dumps(document, separators=(",", ":"), sort_keys=True))


def _converge_cross_account(
    principal: Principal, account: AwsAccount, grants: Sequence[Grant], write: bool
) -> Convergence:
    result = Convergence()
    account_id, role_arn = account.account_id, _role_arn(account)
    path = iam.role_path(principal.pk)
    wanted: dict[str, tuple[Grant, str, str]] = {}
    for grant in grants:
        try:
            # A role's inline policies share 10,240 characters; its permissions never spill.
            plan = policy.plan_documents(grant.statements, principal_type="role", spare_managed_slots=0)
            if plan.inline is None:
                raise policy.PolicyError("A cross-account grant needs at least one statement.")
            wanted[role_name(grant)] = (grant, _trust(grant), checked(plan.inline))
        except policy.PolicyError as exc:
            result.refused[grant.pk] = str(exc)
    actual = iam.list_portal_roles(account_id=account_id, role_arn=role_arn, path=path)
    result.summary["cross_account_roles"] = sorted(wanted)
    for name, (grant, trust, permissions) in sorted(wanted.items()):
        have = actual.get(name)
        if have is not None:
            result.details[grant.pk] = _role_details(grant, have.arn)
        if have is not None and (have.trust, have.permissions) == (trust, permissions):
            continue
        result.differences.append(f"cross-account role {name} is {'different' if have else 'missing'}")
        if write:
            arn, ids = iam.put_portal_role(
                path=path,
                name=name,
                trust=trust,
                permissions=permissions,
                actual=have,
                tags={"gatehouse:grant": str(grant.pk), "gatehouse:request": grant.request.reference},
                account_id=account_id,
                role_arn=role_arn,
            )
            result.request_ids += ids
            result.details[grant.pk] = _role_details(grant, arn)
    for name in sorted(set(actual) - set(wanted)):
        result.differences.append(f"cross-account role {name} is no longer granted")
        if write:
            result.request_ids += iam.delete_portal_role(account_id=account_id, role_arn=role_arn, name=name)
    if write and result.differences:
        after = iam.list_portal_roles(account_id=account_id, role_arn=role_arn, path=path)
        if {n: (r.trust, r.permissions) for n, r in after.items()} != {
            n: (t, p) for n, (_, t, p) in wanted.items()
        }:
            raise AwsOperationError(
                f"{principal}: IAM does not show the cross-account roles yet", transient=True
            )
    return result


def _role_details(grant: Grant, arn: str) -> dict[str, Any]:
    command = f"aws sts assume-role --role-arn {arn} --role-session-name {grant.request.reference}"
    if grant.request.external_id:
        command += " --external-id <the external id you were given>"
    return {"role_arn": arn, "assume_role_command": command}


# --- the whole principal ------------------------------------------------------------------------------


def _passed_roles(grant: Grant) -> set[str]:
    return {
        str(arn)
        for statement in grant.statements
        if "iam:passrole" in {str(a).lower() for a in as_list(statement.get("Action"))}
        for arn in as_list(statement.get("Resource"))
    }


def _unpassable(grants: Sequence[Grant]) -> dict[int, str]:
    """Grants that would pass a role no longer passable (marked sensitive, or its trust changed, since the
    approval): refused at apply time too, so no path to iam:PassRole skips the role checks."""
    from accessrequests.policy.statements import passable_problem

    wanted = set().union(*(_passed_roles(g) for g in grants)) if grants else set()
    if not wanted:
        return {}
    known = {role.arn: role for role in PassableRole.objects.filter(arn__in=wanted)}
    refused: dict[int, str] = {}
    for grant in grants:
        for arn in sorted(_passed_roles(grant)):
            problem = passable_problem(known.get(arn), account=grant.account, role_arn=arn)
            if problem:
                refused[grant.pk] = problem
                break
    return refused


def converge(
    principal: Principal, account: AwsAccount, grants: Sequence[Grant], *, write: bool
) -> Convergence:
    """Make AWS hold exactly ``grants`` for the principal in the account (or, with ``write=False``, only say
    how it differs). ``grants`` should list active ones first (see ``place``)."""
    result = Convergence(refused=_unpassable(grants))
    grants = [g for g in grants if g.pk not in result.refused]
    by_delivery: dict[str, list[Grant]] = {}
    for grant in grants:
        by_delivery.setdefault(grant.delivery, []).append(grant)
    if principal.is_iam:
        result.merge(_converge_iam(principal, account, by_delivery.get(Delivery.IAM_POLICY, []), write))
    elif principal.identity_center is not None:
        result.merge(
            _converge_identity_center(
                principal, account, by_delivery.get(Delivery.IDENTITY_CENTER, []), write
            )
        )
    cross_account = by_delivery.get(Delivery.CROSS_ACCOUNT_ROLE, [])
    # Listing roles costs a call, so it is skipped for principals that never had a cross-account grant here.
    if (
        cross_account
        or Grant.objects.filter(
            principal=principal, account=account, delivery=Delivery.CROSS_ACCOUNT_ROLE
        ).exists()
    ):
        result.merge(_converge_cross_account(principal, account, cross_account, write))
    undeliverable = [
        g
        for g in grants
        if (g.delivery == Delivery.IAM_POLICY and not principal.is_iam)
        or (g.delivery == Delivery.IDENTITY_CENTER and principal.is_iam)
    ]
    for grant in undeliverable:
        result.refused[grant.pk] = f"A {grant.get_delivery_display()} cannot be delivered to {principal}."
    return result
