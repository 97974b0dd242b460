"""Access requests, the rules that route them, the decisions on them, and the grants they produce."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import F, Q

from accessrequests.core.scope import scope_words
from accessrequests.core.wording import counted
from accessrequests.models.catalog import (
    AwsAccount,
    OrganizationalUnit,
    PassableRole,
    PermissionSet,
    Pipeline,
)
from accessrequests.models.principals import Principal


class RequestKind(models.TextChoices):
    PIPELINE = "pipeline", "Pipeline actions"
    PASS_ROLE = "pass_role", "Pass a role to CodePipeline"
    PERMISSION_SET = "permission_set", "Identity Center permission set"
    CROSS_ACCOUNT = "cross_account", "Cross-account access"


# A kind of access as a sentence names it ("break-glass gives pipeline access only; ask for PassRole ...").
BREAK_GLASS_KIND_PHRASES: dict[str, str] = {
    RequestKind.PIPELINE: "pipeline access",
    RequestKind.PASS_ROLE: "PassRole",
    RequestKind.PERMISSION_SET: "permission sets",
    RequestKind.CROSS_ACCOUNT: "cross-account access",
}


class AccessLevel(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    EDITOR = "editor", "Editor"
    CUSTOM = "custom", "Custom actions"


class Delivery(models.TextChoices):
    IAM_POLICY = "iam_policy", "IAM inline policy"
    IDENTITY_CENTER = "identity_center", "Identity Center assignment"
    CROSS_ACCOUNT_ROLE = "cross_account_role", "Portal-owned cross-account role"


class Source(models.TextChoices):
    FORM = "form", "Web form"
    PASTED_ERROR = "pasted_error", "Pasted error"
    API = "api", "API"
    SLACK = "slack", "Slack command"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired unreviewed"


# Every way a request's status may change; anything else is refused by ``AccessRequest.objects.transition``.
REQUEST_TRANSITIONS: dict[str, frozenset[str]] = {
    RequestStatus.PENDING: frozenset(
        {RequestStatus.APPROVED, RequestStatus.DENIED, RequestStatus.CANCELLED, RequestStatus.EXPIRED}
    ),
    RequestStatus.APPROVED: frozenset(),
    RequestStatus.DENIED: frozenset(),
    RequestStatus.CANCELLED: frozenset(),
    RequestStatus.EXPIRED: frozenset(),
}


class TransitionError(Exception):
    """A status change the state machine does not allow (a bug in the caller, never a user error)."""


def _check_transitions(table: Mapping[str, frozenset[str]], sources: Iterable[str], target: str) -> None:
    for source in sources:
        if target not in table[source]:
            raise TransitionError(f"{source} -> {target} is not a transition of this state machine")


class _StatusQuerySet(models.QuerySet):
    """Statuses change only through ``transition``: a conditional update from the allowed source statuses,
    checked against the model's transition table. A plain ``update(status=...)`` is refused, so no code path
    can skip the table."""

    transitions: Mapping[str, frozenset[str]] = {}

    def update(self, **kwargs: Any) -> int:
        if "status" in kwargs:
            raise TransitionError("change a status with transition(), which checks the state machine")
        return super().update(**kwargs)

    def transition(self, pk: int, *, sources: Iterable[str], target: str, **fields: Any) -> bool:
        """Move row ``pk`` from one of ``sources`` to ``target`` (with ``fields``); False when the row was not
        in any of the sources any more (the loser of a race changes nothing)."""
        sources = tuple(sources)
        _check_transitions(self.transitions, sources, target)
        rows = self.filter(pk=pk, status__in=sources)
        return models.QuerySet.update(rows, status=target, **fields) == 1

    def transition_many(
        self, pks: Iterable[int], *, sources: Iterable[str], target: str, locked: bool = False, **fields: Any
    ) -> set[int]:
        """``transition`` for several rows given the same ``fields``, in two statements whatever their number:
        the rows still in one of ``sources`` are locked, then moved. Returns the ids moved (the others lost a
        race and are unchanged). Inside a transaction, which holds the row locks until it ends. ``locked``: this
        transaction already holds the rows' locks and saw them in ``sources``, so one statement moves them all."""
        sources = tuple(sources)
        _check_transitions(self.transitions, sources, target)
        pks = list(pks)
        if not pks:
            return set()
        if locked:
            rows = self.filter(pk__in=pks, status__in=sources)
            if models.QuerySet.update(rows, status=target, **fields) != len(set(pks)):
                raise TransitionError("rows locked by this transaction changed under it")
            return set(pks)
        moved = set(
            self.select_for_update(of=("self",))
            .filter(pk__in=pks, status__in=sources)
            .values_list("pk", flat=True)
        )
        if moved:
            models.QuerySet.update(self.filter(pk__in=moved, status__in=sources), status=target, **fields)
        return moved


class AccessRequestQuerySet(_StatusQuerySet):
    transitions = REQUEST_TRANSITIONS


class ChatApproval(models.TextChoices):
    """How far a click in Slack may go. Off: "Approve" opens the portal's decision page, which asks for the
    second factor. Low risk: for requests ``rules.is_low_risk`` calls low risk, the click is the approval, and
    the approver's Slack sign-in (their workspace's SSO) stands in for the second factor."""

    OFF = "off", "Never: Slack opens the portal, which asks for the second factor"
    LOW_RISK = "low_risk", "Low-risk requests (viewer on non-production) may be approved in Slack"


def pipeline_only() -> list[str]:
    """What break-glass gives unless a rule names more: pipeline access."""
    return [RequestKind.PIPELINE.value]


def account_scope_words(rule: ApprovalRule | Any, *, routing: bool) -> str:
    """The accounts a saved approval or eligibility rule covers, in words (``scope.scope_words``)."""
    if not rule.pk:
        return scope_words(routing=routing)
    return scope_words(
        accounts=[a.name for a in rule.accounts.all()],
        units=[u.path or u.ou_id for u in rule.units.all()],
        tags=rule.account_tags or {},
        environments=list(rule.environments or []),
        routing=routing,
    )


class AccountScopeRule(models.Model):
    """What approval and eligibility rules share: the accounts they cover besides those they name by id, by what
    the organization says the accounts are (matched by ``accessrequests.core.scope``)."""

    units = models.ManyToManyField(
        OrganizationalUnit,
        blank=True,
        verbose_name="organizational units",
        help_text="Accounts in these units or any unit below them; none chosen: any unit.",
    )
    account_tags = models.JSONField(
        default=dict,
        blank=True,
        help_text='Organizations tags the account must carry: {"team": ["payments"]}; every key listed must '
        "have one of its values.",
    )
    environments = models.JSONField(
        default=list,
        blank=True,
        help_text="Account environments it covers; empty for any. An unknown environment is never routed by "
        "environment, and is in every environment for eligibility.",
    )

    class Meta:
        abstract = True


class ApprovalRule(AccountScopeRule):
    """Who may decide which requests: which accounts (by id, organizational unit, tag, environment), pipelines,
    kinds and levels; N approvals, max duration.

    The account scope is the AND of the dimensions named, OR within each; none named means any account whose
    environment is known (``accessrequests.core.scope``: routing fails closed on an unknown environment). Empty
    pipeline/kind/level selections mean "any". The first enabled rule by ascending priority (then name) that
    matches a request routes it; a request that matches none cannot be filed.
    """

    name = models.CharField(max_length=100, unique=True)
    priority = models.PositiveIntegerField(default=100, help_text="Lower numbers are tried first.")
    enabled = models.BooleanField(default=True)
    accounts = models.ManyToManyField(AwsAccount, blank=True, related_name="rules")
    pipelines = models.ManyToManyField(Pipeline, blank=True, related_name="rules")
    kinds = models.JSONField(
        default=list, blank=True, help_text="Request kinds this rule covers; empty for all."
    )
    levels = models.JSONField(
        default=list, blank=True, help_text="Access levels this rule covers; empty for all."
    )
    approver_groups = models.ManyToManyField(Group, blank=True, related_name="approval_rules")
    approver_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="approval_rules"
    )
    approvals_required = models.PositiveSmallIntegerField(default=1)
    max_duration_hours = models.PositiveIntegerField(default=8)
    allow_permanent = models.BooleanField(default=False)
    auto_approve_low_risk = models.BooleanField(
        default=False, help_text="Approve viewer requests on non-production accounts without review."
    )
    allow_privileged_permission_sets = models.BooleanField(
        default=False,
        help_text="Cover permission sets classed privileged (admin-equivalent). Off: this rule never routes "
        "them, so they need another rule that opts in.",
    )
    contact = models.CharField(
        max_length=200, blank=True, help_text="Who to ask about requests this rule covers."
    )
    slack_webhook_url = models.URLField(blank=True)
    slack_channel = models.CharField(
        max_length=100,
        blank=True,
        help_text="Slack channel ID (C0123456789) where the Slack app posts this rule's new requests with buttons.",
    )
    chat_approval = models.CharField(
        max_length=10,
        choices=ChatApproval.choices,
        default=ChatApproval.OFF,
        help_text="Whether an Approve click in Slack may count as an approval (see permissions.chat_approval_problem).",
    )
    # Break-glass: access applied at once, with no approver, for those named here only (an incident at night);
    # announced to everyone at once and reviewed after the fact (see permissions.break_glass_problem).
    break_glass_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="break_glass_rules",
        help_text="People who may use break-glass under this rule.",
    )  # fmt: skip
    break_glass_groups = models.ManyToManyField(
        Group, blank=True, related_name="break_glass_rules",
        help_text="Groups whose members may use break-glass under this rule.",
    )  # fmt: skip
    break_glass_max_hours = models.PositiveSmallIntegerField(
        default=1, help_text="The longest break-glass access under this rule, in hours."
    )
    # The other kinds reach further than one's own pipelines (a role to pass, a permission set, a role outside
    # principals assume), so break-glass gives them only where the rule names them (break_glass_shape_problem).
    break_glass_kinds = models.JSONField(
        default=pipeline_only,
        blank=True,
        help_text="Request kinds break-glass may give under this rule; empty means pipeline access only.",
    )

    class Meta:
        ordering = ["priority", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(approvals_required__gte=1) & Q(approvals_required__lte=5),
                name="%(app_label)s_%(class)s_approvals_1_to_5",
            ),
            models.CheckConstraint(
                condition=Q(max_duration_hours__gte=1), name="%(app_label)s_%(class)s_duration"
            ),
            models.CheckConstraint(
                condition=Q(break_glass_max_hours__gte=1) & Q(break_glass_max_hours__lte=24),
                name="%(app_label)s_%(class)s_break_glass_short",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def allowed_break_glass_kinds(self) -> list[str]:
        """The kinds break-glass may give under this rule, in the usual order (none named: pipeline only)."""
        named = set(self.break_glass_kinds or pipeline_only())
        return [k for k in RequestKind.values if k in named]

    def break_glass_kinds_text(self) -> str:
        """E.g. "pipeline access" or "pipeline access and PassRole"."""
        phrases = [BREAK_GLASS_KIND_PHRASES[k] for k in self.allowed_break_glass_kinds()]
        return " and ".join([", ".join(phrases[:-1]), phrases[-1]] if len(phrases) > 1 else phrases)

    def describe(self) -> str:
        """What the rule does, in one sentence (shown in the admin)."""
        kinds = (
            ", ".join(str(RequestKind(k).label).lower() for k in self.kinds)
            if self.kinds
            else "any kind of access"
        )
        levels = f" at level {', '.join(self.levels)}" if self.levels else ""
        accounts = account_scope_words(self, routing=True)
        if self.pk:
            pipelines = ", ".join(p.name for p in self.pipelines.all())
            deciders = [g.name for g in self.approver_groups.all()] + [
                u.get_username() for u in self.approver_users.all()
            ]
        else:
            pipelines, deciders = "", []
        where = f"on {accounts}" + (f" (pipelines {pipelines})" if pipelines else "")
        who = ", ".join(deciders) if deciders else "nobody yet (add approvers)"
        sentence = (
            f"Requests for {kinds}{levels} {where} go to {who}: "
            f"{counted(self.approvals_required, 'distinct approval')}, at most {counted(self.max_duration_hours, 'hour')}"
        )
        extras = []
        if self.allow_permanent:
            extras.append("permanent access allowed")
        if self.auto_approve_low_risk:
            extras.append("viewer access outside production approved automatically")
        if self.allow_privileged_permission_sets:
            extras.append("privileged permission sets allowed")
        if self.pk:
            glass = [g.name for g in self.break_glass_groups.all()] + [
                u.get_username() for u in self.break_glass_users.all()
            ]
            if glass:
                extras.append(
                    f"break-glass (at once, no approver, at most {self.break_glass_max_hours} h, "
                    f"{self.break_glass_kinds_text()} only) for " + ", ".join(glass)
                )
        if not self.enabled:
            extras.append("currently disabled")
        return sentence + ("; " + "; ".join(extras) if extras else "") + "."


class RequestBatch(models.Model):
    """The same access asked for in several accounts at once: one request per account (each routed by its own
    account's rule and applied as its own grant, revocable on its own), reviewed together."""

    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="request_batches"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.reference

    @property
    def reference(self) -> str:
        return f"GB-{self.pk:06d}" if self.pk else "GB-new"


class AccessRequest(models.Model):
    """One ask for access: who, for which principal, what exactly, why, for how long."""

    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests"
    )
    principal = models.ForeignKey(Principal, on_delete=models.PROTECT, related_name="requests")
    on_behalf = models.BooleanField(default=False, help_text="The principal is not linked to the requester.")
    kind = models.CharField(max_length=20, choices=RequestKind.choices)
    account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="requests")
    pipelines = models.ManyToManyField(Pipeline, blank=True, related_name="requests")
    level = models.CharField(max_length=10, choices=AccessLevel.choices, blank=True)
    actions = models.JSONField(default=list, blank=True)
    stage = models.CharField(max_length=100, blank=True)
    action_name = models.CharField(max_length=100, blank=True)
    pass_role = models.ForeignKey(
        PassableRole, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    permission_set = models.ForeignKey(
        PermissionSet, null=True, blank=True, on_delete=models.PROTECT, related_name="requests"
    )
    trusted_account_id = models.CharField(max_length=12, blank=True)
    trusted_principal_arn = models.CharField(max_length=2048, blank=True)
    external_id = models.CharField(max_length=1224, blank=True)
    statements = models.JSONField(default=list, blank=True, help_text="Exactly what a grant will put in AWS.")
    justification = models.TextField(max_length=2000)
    ticket = models.CharField(max_length=100, blank=True)
    starts_at = models.DateTimeField()
    duration_hours = models.PositiveIntegerField(null=True, blank=True, help_text="Empty means permanent.")
    ends_at = models.DateTimeField(null=True, blank=True)
    delivery = models.CharField(max_length=20, choices=Delivery.choices, default=Delivery.IAM_POLICY)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.FORM)
    pasted_text = models.TextField(blank=True, max_length=20_000)
    rule = models.ForeignKey(ApprovalRule, on_delete=models.PROTECT, related_name="requests")
    approvals_required = models.PositiveSmallIntegerField(default=1)
    extends = models.ForeignKey(
        "Grant", null=True, blank=True, on_delete=models.SET_NULL, related_name="extensions"
    )
    batch = models.ForeignKey(
        RequestBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="members",
        help_text="Set when the same access was asked for in several accounts at once.",
    )  # fmt: skip
    break_glass = models.BooleanField(
        default=False, help_text="Applied at once without an approver, for an incident; reviewed afterwards."
    )
    incident = models.CharField(
        max_length=100, blank=True, help_text="The incident a break-glass use is for."
    )
    status = models.CharField(max_length=10, choices=RequestStatus.choices, default=RequestStatus.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = AccessRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["requester", "-created_at"], name="ar_requester_created"),
            models.Index(fields=["status", "created_at"], name="ar_status_created"),
            models.Index(fields=["rule", "status", "created_at"], name="ar_rule_status_created"),
            models.Index(fields=["account", "status"], name="ar_account_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="pending") | Q(decided_at__isnull=True),
                name="%(app_label)s_%(class)s_pending_undecided",
            ),
            models.CheckConstraint(
                condition=Q(status="pending") | Q(decided_at__isnull=False),
                name="%(app_label)s_%(class)s_decided_has_time",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in RequestStatus]),
                name="%(app_label)s_%(class)s_known_status",
            ),
            models.CheckConstraint(
                condition=Q(duration_hours__isnull=True) | Q(duration_hours__gte=1),
                name="%(app_label)s_%(class)s_positive_duration",
            ),
            # Break-glass is short and always names its incident.
            models.CheckConstraint(
                condition=Q(break_glass=False) | (Q(duration_hours__isnull=False) & ~Q(incident="")),
                name="%(app_label)s_%(class)s_break_glass_bounded",
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def reference(self) -> str:
        return f"GH-{self.pk:06d}" if self.pk else "GH-new"

    @property
    def is_permanent(self) -> bool:
        return self.duration_hours is None

    @property
    def for_whom(self) -> str:
        """Who the request is for, in words: its principal, or for cross-account access the outside party the
        role trusts (requests of an older release were filed for a principal of the requester's, which no trust
        policy names)."""
        if self.kind == RequestKind.CROSS_ACCOUNT:
            if self.trusted_principal_arn:
                return f"outside principal {self.trusted_principal_arn}"
            return f"outside account {self.trusted_account_id}"
        return self.principal.label

    def approval_progress(self) -> str:
        """Where the approvals stand, in words, e.g. "1 of 2 approvals (alice) · waiting for one more from
        Production". Uses prefetched ``decisions`` (with reviewers) when the caller loaded them."""
        approvals = [d for d in self.decisions.all() if d.outcome == DecisionOutcome.APPROVE]
        needed = self.approvals_required
        text = f"{len(approvals)} of {counted(needed, 'approval')}"
        if approvals:
            text += " (" + ", ".join(d.reviewer.get_username() for d in approvals) + ")"
        if self.status == RequestStatus.PENDING:
            missing = max(needed - len(approvals), 0)
            more = " more" if approvals else ""
            text += f" · waiting for {_in_words(missing)}{more} from {self.rule.name}"
        return text


def _in_words(number: int) -> str:
    return {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}.get(number, str(number))


class DecisionOutcome(models.TextChoices):
    APPROVE = "approve", "Approved"
    DENY = "deny", "Denied"


class DecisionQuerySet(models.QuerySet):
    def counting(self) -> DecisionQuerySet:
        """Decisions that still count toward a request's quorum (not voided)."""
        return self.filter(voided_at__isnull=True)


class Decision(models.Model):
    """One reviewer's approve or deny, with a comment. One per reviewer per request (the database says so)."""

    request = models.ForeignKey(AccessRequest, on_delete=models.PROTECT, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    outcome = models.CharField(max_length=10, choices=DecisionOutcome.choices)
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    # A decision stops counting when its reviewer leaves (deactivated) while the request is still pending: the
    # quorum needs people who may still decide. The row stays, and the audit trail keeps what they decided.
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=200, blank=True)

    objects = DecisionQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # The queue leaves out what the reviewer already decided: their decisions since the oldest pending
            # request, a range of this index, instead of all of a long-serving reviewer's decisions. The request
            # is in the index (PostgreSQL), so the range is read without the table.
            models.Index(
                fields=["reviewer", "created_at"],
                include=["request"],
                name="decision_reviewer_recent",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "reviewer"], name="%(app_label)s_%(class)s_one_per_reviewer"
            ),
            models.CheckConstraint(
                condition=Q(voided_at__isnull=True, void_reason="") | Q(voided_at__isnull=False),
                name="%(app_label)s_%(class)s_void_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} {self.outcome} {self.request}"


class GrantStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    APPLYING = "applying", "Applying"
    ACTIVE = "active", "Active"
    REVOKING = "revoking", "Revoking"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Failed"
    ABANDONED = "abandoned", "Abandoned"


class GrantEnding(models.TextChoices):
    """How a grant ends; set when it starts leaving (status "revoking") and equal to its final status."""

    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"
    ABANDONED = "abandoned", "Abandoned"


# Grants in these states should be live in AWS (or on their way); everything else should not be.
LIVE_GRANT_STATUSES = (GrantStatus.QUEUED, GrantStatus.APPLYING, GrantStatus.ACTIVE, GrantStatus.FAILED)
# The sweeper re-drives grants that sit in these states for too long.
IN_FLIGHT_GRANT_STATUSES = (GrantStatus.QUEUED, GrantStatus.APPLYING, GrantStatus.REVOKING)
ENDED_GRANT_STATUSES = (GrantStatus.REVOKED, GrantStatus.EXPIRED, GrantStatus.ABANDONED)

# Every way a grant's status may change (see provisioning/engine.py for who moves it when). A status that
# leads to itself is a re-claim: a worker taking over work a killed worker left, or a retry asked for now.
GRANT_TRANSITIONS: dict[str, frozenset[str]] = {
    GrantStatus.QUEUED: frozenset({GrantStatus.QUEUED, GrantStatus.APPLYING, GrantStatus.REVOKING}),
    GrantStatus.APPLYING: frozenset(
        {GrantStatus.APPLYING, GrantStatus.ACTIVE, GrantStatus.FAILED, GrantStatus.REVOKING}
    ),
    # An active grant fails when it no longer fits beside the others (say a limit shrank), then is re-driven.
    GrantStatus.ACTIVE: frozenset({GrantStatus.FAILED, GrantStatus.REVOKING}),
    GrantStatus.FAILED: frozenset({GrantStatus.QUEUED, GrantStatus.APPLYING, GrantStatus.REVOKING}),
    GrantStatus.REVOKING: frozenset(
        {GrantStatus.REVOKING, GrantStatus.REVOKED, GrantStatus.EXPIRED, GrantStatus.ABANDONED}
    ),
    GrantStatus.REVOKED: frozenset(),
    GrantStatus.EXPIRED: frozenset(),
    GrantStatus.ABANDONED: frozenset(),
}


class GrantQuerySet(_StatusQuerySet):
    transitions = GRANT_TRANSITIONS


class Grant(models.Model):
    """What is (to be) live in AWS for one principal in one account because of one approved request."""

    request = models.OneToOneField(AccessRequest, on_delete=models.PROTECT, related_name="grant")
    principal = models.ForeignKey(Principal, on_delete=models.PROTECT, related_name="grants")
    account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="grants")
    delivery = models.CharField(max_length=20, choices=Delivery.choices)
    statements = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=GrantStatus.choices, default=GrantStatus.QUEUED)
    ending = models.CharField(
        max_length=10, choices=GrantEnding.choices, blank=True, help_text="How it ends, once it is leaving."
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    aws_request_ids = models.JSONField(default=list, blank=True)
    details = models.JSONField(
        default=dict, blank=True, help_text="Delivery facts, e.g. the cross-account role ARN."
    )
    starts_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="grant_status_expires"),
            models.Index(fields=["status", "updated_at"], name="grant_status_updated"),
            models.Index(fields=["principal", "account", "status"], name="grant_principal_account"),
        ]
        # What each status promises, held by the database whatever code writes the row.
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in GrantStatus]),
                name="%(app_label)s_%(class)s_known_status",
            ),
            models.CheckConstraint(
                condition=~Q(status=GrantStatus.ACTIVE) | Q(applied_at__isnull=False),
                name="%(app_label)s_%(class)s_active_was_applied",
            ),
            # Leaving or gone: it says how it ends; still live: it does not.
            models.CheckConstraint(
                condition=Q(
                    status__in=[GrantStatus.REVOKING, *ENDED_GRANT_STATUSES], ending__in=GrantEnding.values
                )
                | Q(status__in=LIVE_GRANT_STATUSES, ending=""),
                name="%(app_label)s_%(class)s_ending_matches_status",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=ENDED_GRANT_STATUSES)
                | (Q(revoked_at__isnull=False) & Q(ending=F("status"))),
                name="%(app_label)s_%(class)s_ended_has_time",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=F("starts_at")),
                name="%(app_label)s_%(class)s_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"grant for {self.request.reference}"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_GRANT_STATUSES
