"""Who can use a grant once it is applied: the recipients of a request. Reads only.

A request names one principal, but the access reaches further:

- an IAM user or role, or an Identity Center user: that principal;
- an IAM group or an Identity Center group: the group and every member of it (as the catalog sync last read the
  membership; the approve service refreshes it from AWS first, see ``catalog.listings``);
- a cross-account role: not the request's principal at all, but whoever the role trusts: the outside principal
  it names, or, when it trusts an outside account, any principal of that account its administrators allow.

The authorization rules (``accessrequests.authz.permissions``) apply the self-approval, linked-principal and on-behalf
rules to every recipient, and the review pages show the same list, so what an approver reads is who gets in.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Q

from accessrequests.models import GRANTABLE_KINDS, AccessRequest, AwsAccount, Principal, RequestKind


@dataclass(frozen=True)
class Recipient:
    """One principal (or outside party) that can use the access."""

    label: str  # e.g. "IAM user mateojackson" or "any principal of account 210987654321"
    how: str  # why it can use it: "the principal", "member of IAM group developers", ...
    principal: Principal | None = None  # the catalog's row, when the catalog knows it
    arn: str = ""  # the IAM ARN, the identity store id, or the account root


def _describe(principal: Principal) -> str:
    return f"{principal.get_kind_display()} {principal.label}"


def _members(group: Principal) -> list[Recipient]:
    how = f"member of {_describe(group)}"
    return [
        Recipient(label=_describe(member), how=how, principal=member, arn=member.external_id)
        # Sorted here, not by the database, so a page that prefetched the members asks nothing more.
        for member in sorted(group.members.all(), key=lambda m: m.name)
    ]


def _trusted(request: AccessRequest) -> list[Recipient]:
    how = "trusted by the cross-account role"
    if request.trusted_principal_arn:
        known = (
            Principal.objects.filter(external_id=request.trusted_principal_arn, kind__in=GRANTABLE_KINDS)
            .order_by("pk")
            .first()
        )
        label = _describe(known) if known else request.trusted_principal_arn
        found = [Recipient(label=label, how=how, principal=known, arn=request.trusted_principal_arn)]
        if known is not None and known.is_group:
            found += _members(known)
        return found
    account_id = request.trusted_account_id
    found = [
        Recipient(
            label=f"any principal of account {account_id} that its administrators allow",
            how=how,
            arn=f"arn:aws:iam::{account_id}:root",
        )
    ]
    managed = AwsAccount.objects.filter(account_id=account_id).first()
    if managed is not None:
        # Gatehouse knows that account: everyone it knows there could be allowed in by its administrators.
        found += [
            Recipient(
                label=_describe(p), how=f"principal of account {account_id}", principal=p, arn=p.external_id
            )
            for p in Principal.objects.filter(account=managed).order_by("name")
        ]
    return found


def recipients_of(request: AccessRequest) -> list[Recipient]:
    """Everyone who can use the access once it is applied (see the module docstring)."""
    if request.kind == RequestKind.CROSS_ACCOUNT:
        return _trusted(request)
    principal = request.principal
    found = [
        Recipient(
            label=_describe(principal), how="the principal", principal=principal, arn=principal.external_id
        )
    ]
    if principal.is_group:
        found += _members(principal)
    return found


def recipient_user_ids(request: AccessRequest) -> set[int]:
    """Portal users who would receive the access: linked to a recipient principal, or, for Identity Center
    users, holding the same e-mail address (a user need not be linked to be the person)."""
    principals = [r.principal for r in recipients_of(request) if r.principal is not None]
    if not principals:
        return set()
    User = get_user_model()
    emails = {p.email.lower() for p in principals if p.email}
    query = Q(principals__in=[p.pk for p in principals])
    for email in emails:
        query |= Q(email__iexact=email)
    return set(User.objects.filter(query).values_list("pk", flat=True))


def linked_to_all(request: AccessRequest, user) -> bool:
    """Whether every recipient is a principal linked to ``user`` (otherwise the request is "on behalf")."""
    recipients = recipients_of(request)
    linked = set(user.principals.values_list("pk", flat=True))
    for recipient in recipients:
        principal = recipient.principal
        if principal is None or principal.pk not in linked:
            return False
        if principal.is_group and principal.members_synced_at is None:
            return False  # nobody has read who is in it yet: it cannot be vouched for as only theirs
    return True


@dataclass(frozen=True)
class Reach:
    """The same rule seen from one person: which requests' access would reach ``user`` (``recipient_user_ids``
    holds them exactly when ``reaches`` says so), read in two queries, for pages that ask about many requests."""

    user_id: int
    principal_ids: frozenset[int]  # linked to the user, or an Identity Center user with their e-mail address
    group_ids: frozenset[int]  # groups one of those is a member of
    arns: frozenset[str]  # what a cross-account role may name to trust one of them (a group: its members)
    account_ids: frozenset[str]  # accounts one of them is in (a role trusting the account reaches them all)

    def reaches(self, request: AccessRequest) -> bool:
        if request.kind == RequestKind.CROSS_ACCOUNT:
            if request.trusted_principal_arn:
                return request.trusted_principal_arn in self.arns
            return request.trusted_account_id in self.account_ids
        return request.principal_id in self.principal_ids | self.group_ids

    def recipient_ids(self, request: AccessRequest) -> set[int]:
        """``recipient_user_ids(request)`` as far as this person goes: them, or nobody (for the ``*_problem`` rules
        asked about many requests)."""
        return {self.user_id} if self.reaches(request) else set()

    def q(self, prefix: str = "") -> Q:
        """``reaches`` as a filter on requests (``prefix``: the path to the request, e.g. ``"grant__request__"``)."""
        cross = Q(**{f"{prefix}kind": RequestKind.CROSS_ACCOUNT})
        return (
            (~cross & Q(**{f"{prefix}principal_id__in": sorted(self.principal_ids | self.group_ids)}))
            | (cross & Q(**{f"{prefix}trusted_principal_arn__in": sorted(self.arns)}))
            | (
                cross
                & Q(**{f"{prefix}trusted_principal_arn": ""})
                & Q(**{f"{prefix}trusted_account_id__in": sorted(self.account_ids)})
            )
        )


def reach_of(user) -> Reach:
    """Everything ``Reach`` needs about ``user``, in two queries."""
    query = Q(users=user)
    if user.email:
        query |= Q(email__iexact=user.email)
    own = list(
        Principal.objects.filter(query).values_list("pk", "external_id", "account__account_id").distinct()
    )
    groups = list(
        Principal.objects.filter(members__in=[pk for pk, _, _ in own])
        .values_list("pk", "external_id")
        .distinct()
    )
    return Reach(
        user_id=user.pk,
        principal_ids=frozenset(pk for pk, _, _ in own),
        group_ids=frozenset(pk for pk, _ in groups),
        arns=frozenset([arn for _, arn, _ in own] + [arn for _, arn in groups]),
        account_ids=frozenset(account for _, _, account in own if account),
    )
