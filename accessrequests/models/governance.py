"""Governance: who may ask for which access (eligibility), and governed changes that wait for a second admin."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import F, Q

from accessrequests.models.catalog import AwsAccount, PermissionSet
from accessrequests.models.requests import AccountScopeRule, RequestKind, account_scope_words


class EligibilityRule(AccountScopeRule):
    """Who may ask for a kind of access, on which accounts, for which permission sets.

    The rule's scope is its kinds, its accounts (by id, organizational unit, tag and environment, as an approval
    rule names them) and permission sets (empty means any; a rule that names permission sets covers only
    permission-set requests for them). An account whose environment is unknown counts as in every environment:
    the restriction applies. Every eligibility rule whose scope covers a request must name its requester,
    directly or through a group: each rule is a restriction, and restrictions add up. A request no rule covers is
    open to everyone, which is how Gatehouse behaves with no eligibility rule at all.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True, help_text="Why the restriction exists.")
    kinds = models.JSONField(default=list, blank=True, help_text="Request kinds it covers; empty for all.")
    accounts = models.ManyToManyField(AwsAccount, blank=True, related_name="eligibility_rules")
    permission_sets = models.ManyToManyField(PermissionSet, blank=True, related_name="eligibility_rules")
    groups = models.ManyToManyField(Group, blank=True, related_name="eligibility_rules")
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="eligibility_rules")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def describe(self) -> str:
        """What the rule does, in one sentence (shown in the admin and in refusals)."""
        kinds = (
            ", ".join(str(RequestKind(k).label).lower() for k in self.kinds if k in RequestKind.values)
            if self.kinds
            else "any kind of access"
        )
        accounts = account_scope_words(self, routing=False)
        if self.pk:
            sets = [p.name for p in self.permission_sets.all()]
            who = [f"members of {g.name}" for g in self.groups.all()] + [
                u.get_username() for u in self.users.all()
            ]
        else:
            sets, who = [], []
        what = f"the permission set{'s' if len(sets) != 1 else ''} {', '.join(sets)}" if sets else kinds
        return f"Only {' or '.join(who) if who else 'nobody'} may request {what} on {accounts}."


class RuleTarget(models.TextChoices):
    """What a governed change changes: a rule, or the facts that decide who approves and how risky access looks
    (``accessrequests.governance.governed`` says which facts of each, and how they read in words)."""

    APPROVAL_RULE = "approval_rule", "Approval rule"
    ELIGIBILITY_RULE = "eligibility_rule", "Eligibility rule"
    ACCOUNT = "account", "Account"
    PRINCIPAL_LINKS = "principal_links", "Principal's users"
    USER_ACCESS = "user_access", "User's roles and principals"
    GROUP_MEMBERS = "group_members", "Group's members"
    SCIM_PRINCIPALS = "scim_principals", "SCIM group's principals"


RULE_TARGETS = (RuleTarget.APPROVAL_RULE, RuleTarget.ELIGIBILITY_RULE)


class RuleChangeOperation(models.TextChoices):
    CREATE = "create", "Add"
    UPDATE = "update", "Change"
    DELETE = "delete", "Delete"


class RuleChangeStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a second admin"
    APPROVED = "approved", "Approved and applied"
    REJECTED = "rejected", "Rejected"


class RuleChange(models.Model):
    """A governed change, applied only when a second, different admin approves it (with a fresh second factor).

    It changes a rule (proposed in the admin, or by ``manage.py rules apply`` outside GATEHOUSE_RULES_FILE), or
    one of the facts that move who approves or how risky access looks: an account's environment, the users
    linked to a principal, a user's roles and governed groups, a governed group's members, the principals a SCIM
    group links (``target``). ``before`` is the object as the proposer saw it: an approval finds it still that
    way, or refuses (someone changed it since, and the diff shown would be a lie).

    One table for all of them, rather than a sibling model per kind of object: the four-eyes rule, its database
    constraint, the page that decides and the audit events are then one thing, and cannot drift apart.
    """

    target = models.CharField(max_length=20, choices=RuleTarget.choices)
    operation = models.CharField(max_length=10, choices=RuleChangeOperation.choices)
    rule_name = models.CharField(
        max_length=200, verbose_name="name", help_text="The rule, account, principal, user or group."
    )
    target_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The object changed or deleted."
    )
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    # The Slack webhook is a credential: kept apart from ``after`` so it is never shown or audited in full.
    slack_webhook_url = models.URLField(blank=True)
    webhook_changes = models.BooleanField(
        default=False, help_text="Whether it sets (or removes) the Slack webhook."
    )
    summary = models.TextField(help_text="The change in words.")
    status = models.CharField(
        max_length=10, choices=RuleChangeStatus.choices, default=RuleChangeStatus.PENDING
    )
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rule_changes_proposed",
        help_text="The portal admin who proposed it (none: a command run without --as).",
    )
    proposer_label = models.CharField(
        max_length=200,
        blank=True,
        help_text="Who ran the command that proposed it: operating-system user and host.",
    )
    origin = models.CharField(
        max_length=300,
        blank=True,
        help_text="Where it came from when not the admin: the rules file and its SHA-256.",
    )
    change_set = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="Changes proposed together (one rules file): approvable as a whole.",
    )
    proposed_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rule_changes_decided",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True, max_length=2000)

    class Meta:
        ordering = ["-proposed_at", "-id"]
        constraints = [
            # Four eyes, held by the database too: whoever proposed a change never decides it.
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("proposed_by")),
                name="%(app_label)s_%(class)s_not_own",
            ),
            # Every change names who proposed it: a portal admin, or the user and host that ran the command.
            models.CheckConstraint(
                condition=Q(proposed_by__isnull=False) | ~Q(proposer_label=""),
                name="%(app_label)s_%(class)s_names_proposer",
            ),
            models.CheckConstraint(
                condition=Q(status="pending", decided_by__isnull=True, decided_at__isnull=True)
                | (~Q(status="pending") & Q(decided_by__isnull=False, decided_at__isnull=False)),
                name="%(app_label)s_%(class)s_decided_has_decider",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_operation_display()} {self.get_target_display().lower()} “{self.rule_name}”"

    @property
    def is_rule(self) -> bool:
        return self.target in RULE_TARGETS

    @property
    def proposer(self) -> str:
        """Who proposed it, in words: the admin, the command's user and host, or both."""
        who = [self.proposed_by.get_username()] if self.proposed_by is not None else []
        if self.proposer_label:
            who.append(self.proposer_label)
        return " · ".join(who)
