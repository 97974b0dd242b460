"""From what someone typed or picked to a ``RequestDraft``: one builder for the web form, the API and the Slack
command (``build_draft``). Reads only.

The input (``DraftInput``) names things the way people and scripts do: an account by its 12-digit id (or the
catalog id a picker sends, or its exact name), a principal by catalog id or ARN, pipelines by catalog id or name,
a role to pass and a permission set by ARN (or catalog id). ``build_draft`` finds each in the catalog among what
the person may choose (the same querysets the form offers: ``principal_choices``, ``pipeline_choices``, …) and
checks what the input itself must say (a level for pipeline access, hours unless permanent, ARNs and external ids
that look right, a grant of one's own to extend). Every problem is collected under the input's field name and
raised together as ``DraftError``. What the access means (statements, rule, limits, duplicates) is
``workflow.requests.prepare``'s to decide, and who may have it the submit services'.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from accessrequests.authz import permissions, selectors
from accessrequests.core import arns, plain_text, roles
from accessrequests.core.ids import parse_id
from accessrequests.intake.parse import MAX_MESSAGE_CHARS
from accessrequests.models import (
    GRANTABLE_KINDS,
    AccessLevel,
    AwsAccount,
    PassableRole,
    PermissionSet,
    Pipeline,
    Principal,
    RequestKind,
    Source,
)
from accessrequests.workflow.requests import (
    FREE_TEXT,
    MAX_JUSTIFICATION,
    RequestDraft,
    free_text_problems,
    outside_party_problem,
)

MAX_DURATION_HOURS = 24 * 365
MAX_PIPELINES = 100
CHOICE_GONE = "That choice is no longer offered for the chosen account; choose again."
REQUIRED = "This field is required."
ACCOUNT_ID = re.compile(r"^\d{12}$")
ACCOUNT_ID_INVALID = "An AWS account id is 12 digits, e.g. 123456789012."
TRUSTED_PRINCIPAL_ARN = re.compile(rf"^{arns.IAM_ROLE_OR_USER_ARN}$")
TRUSTED_PRINCIPAL_ARN_INVALID = "An IAM role or user ARN, e.g. arn:aws:iam::210987654321:role/Deployer."
EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
EXTERNAL_ID_INVALID = "Enter a valid value."
# The longest text each field takes (the database's columns, and what a reviewer can read).
TEXT_LIMITS = {
    "justification": MAX_JUSTIFICATION,
    "ticket": 100,
    "stage": 100,
    "action_name": 100,
    "pasted_text": MAX_MESSAGE_CHARS,
}


@dataclass(frozen=True)
class DraftProblem:
    """Why one field of the input cannot be used. ``code`` is Django's error code as the form reports it
    (``required``, ``invalid_choice``, ``invalid``, ``""`` for a rule of Gatehouse's own); None for a name that
    matches nothing in the catalog, which the API has always answered with the bare sentence."""

    message: str
    code: str | None = ""


class DraftError(Exception):
    """The input cannot become a draft; ``problems`` lists every problem by field name."""

    def __init__(self, problems: dict[str, list[DraftProblem]]):
        super().__init__(" ".join(p.message for found in problems.values() for p in found))
        self.problems = problems


@dataclass(frozen=True)
class DraftInput:
    """What someone asked for, as typed or picked (see the module docstring for how each thing is named)."""

    account: str = ""
    kind: str = RequestKind.PIPELINE
    principal: int | None = None
    principal_arn: str = ""
    pipelines: Sequence[int | str] = ()  # catalog ids (the form's checkboxes)
    pipeline_names: Sequence[str] = ()  # every pipeline of that name in the account
    level: str = ""
    actions: Sequence[str] = ()
    stage: str = ""
    action_name: str = ""
    pass_role: str = ""
    permission_set: str = ""
    trusted_account_id: str = ""
    trusted_principal_arn: str = ""
    external_id: str = ""
    justification: str = ""
    ticket: str = ""
    duration_hours: int | None = None  # None: the usual duration, or the rule's maximum where that is less
    permanent: bool = False
    starts_at: datetime | None = None
    source: str = Source.FORM
    pasted_text: str = ""
    extends: int | None = None  # the requester's own grant to extend

    @classmethod
    def from_resolution(cls, initial: Mapping[str, Any], **fields: Any) -> DraftInput:
        """What a pasted AccessDenied message decides (``resolve.Resolution.initial``), with ``fields`` added."""
        return cls(
            account=str(initial["account"]),
            principal=initial["principal"],
            kind=initial.get("kind", RequestKind.PIPELINE),
            pipelines=list(initial.get("pipelines", [])),
            level=initial.get("level", ""),
            actions=split_names(initial.get("actions", "")),
            stage=initial.get("stage", ""),
            action_name=initial.get("action_name", ""),
            pass_role=str(initial.get("pass_role") or ""),
            **fields,
        )


def split_names(text: str | None) -> list[str]:
    """Names typed in one box, separated by spaces or commas (actions, pipelines, account ids)."""
    return [name for name in re.split(r"[\s,]+", text or "") if name]


# --- what a person may choose (the form offers these; the builder accepts only these) ----------------------


def principal_choices(user) -> QuerySet[Principal]:
    """Principals ``user`` may ask access for: those linked to them (every one, for admins)."""
    principals = Principal.objects.filter(present=True, kind__in=GRANTABLE_KINDS).select_related("account")
    return principals if roles.is_admin(user) else principals.filter(users=user)


def grantable_principals(user, account: AwsAccount) -> QuerySet[Principal]:
    """Of those, the ones that can receive access in ``account``: its IAM principals (their policies work
    nowhere else) and Identity Center users and groups (any account)."""
    return principal_choices(user).filter(Q(account=account) | Q(account__isnull=True))


def pipeline_choices(account: AwsAccount) -> QuerySet[Pipeline]:
    return Pipeline.objects.filter(account=account, present=True).select_related("account")


def pass_role_choices(account: AwsAccount) -> QuerySet[PassableRole]:
    """Roles that may be passed to CodePipeline: in the account, trusting CodePipeline, not sensitive."""
    return PassableRole.objects.filter(
        account=account, present=True, trusts_codepipeline=True, sensitive=False
    )


def permission_set_choices() -> QuerySet[PermissionSet]:
    # Portal-owned permission sets carry other people's approved policies; nobody requests them directly.
    return PermissionSet.objects.filter(present=True, portal_owned=False)


def resolve_account(user, raw: str | None) -> tuple[AwsAccount | None, DraftProblem | None]:
    """The account ``raw`` names (a 12-digit id, a catalog id, or an exact name) if ``user`` may ask for access
    in it; else None and why (no problem at all when nothing was named)."""
    raw = (raw or "").strip()
    if not raw:
        return None, None
    if len(raw) > 100 or plain_text.hidden_characters(raw):
        return None, DraftProblem("That is not an account; type part of its name or its 12-digit id.", None)
    account = None
    if ACCOUNT_ID.fullmatch(raw):
        account = AwsAccount.objects.filter(account_id=raw).first()
    elif (pk := parse_id(raw)) is not None:
        account = AwsAccount.objects.filter(pk=pk).first()
    else:
        named = list(selectors.requestable_accounts(user).filter(name__iexact=raw)[:2])
        account = named[0] if len(named) == 1 else None
    if account is None:
        return None, DraftProblem(
            f"Gatehouse knows no account {raw[:40]}; choose one from the list (type part of its name) or give "
            "its 12-digit id.",
            None,
        )
    problem = permissions.account_problem(user, account)
    return (None, DraftProblem(problem)) if problem else (account, None)


def _by_ref(queryset: QuerySet, ref: str, *, by: str = "arn") -> Any:
    """The row ``ref`` names: its catalog id (what a picker sends) or its ARN (what people paste)."""
    pk = parse_id(ref)
    lookup: dict[str, Any] = {"pk": pk} if pk is not None else {by: ref}
    return queryset.filter(**lookup).first()


# --- the builder ---------------------------------------------------------------------------------------


class _Problems(dict[str, list[DraftProblem]]):
    def add(self, name: str, message: str, code: str | None = "") -> None:
        self.setdefault(name, []).append(DraftProblem(message, code))


def _principal(user, account: AwsAccount | None, data: DraftInput, problems: _Problems) -> Principal | None:
    pk: Any = data.principal
    if data.principal_arn:
        by_arn = (
            Principal.objects.filter(external_id=data.principal_arn, present=True, kind__in=GRANTABLE_KINDS)
            .order_by("pk")
            .first()
        )
        if by_arn is None or (pk is not None and pk != by_arn.pk):
            problems.add("principal_arn", "No such principal (or it is not the one named by id).", None)
            return None
        pk = by_arn.pk
    if pk is None:
        problems.add("principal", REQUIRED, "required")
        return None
    pk = parse_id(pk)
    # Without an account, still one of the person's own: someone else's is said to be refused either way.
    offered = grantable_principals(user, account) if account is not None else principal_choices(user)
    found = offered.filter(pk=pk).first() if pk is not None else None
    if found is None:
        problems.add("principal", CHOICE_GONE, "invalid_choice")
    return found


def _pipelines(account: AwsAccount, data: DraftInput, problems: _Problems) -> list[Pipeline]:
    offered = pipeline_choices(account)
    ids = [parse_id(v) for v in data.pipelines]
    by_id = {p.pk: p for p in offered.filter(pk__in=[i for i in ids if i is not None])}
    if any(i not in by_id for i in ids):
        problems.add("pipelines", CHOICE_GONE, "invalid_choice")
    names = list(dict.fromkeys(n for n in data.pipeline_names if n))
    if len(names) > MAX_PIPELINES:
        problems.add("pipeline_names", f"Name at most {MAX_PIPELINES} pipelines.")
        names = []
    # A name can exist in several regions: the name stands for each of them.
    by_name: dict[str, list[Pipeline]] = {}
    for pipeline in offered.filter(name__in=names).order_by("name", "region"):
        by_name.setdefault(pipeline.name, []).append(pipeline)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        problems.add(
            "pipeline_names",
            f"Account {account.account_id} has no pipeline {', '.join(u[:100] for u in unknown[:5])}.",
            None,
        )
    chosen = [by_id[i] for i in ids if i in by_id] + [p for n in names for p in by_name.get(n, [])]
    return list(dict.fromkeys(chosen))


def _pass_role(account: AwsAccount, ref: str, problems: _Problems) -> PassableRole | None:
    role = _by_ref(PassableRole.objects.filter(account=account), ref)
    if role is None:
        problems.add("pass_role", "No such role in this account.", None)
    elif not pass_role_choices(account).filter(pk=role.pk).exists():
        problems.add("pass_role", CHOICE_GONE, "invalid_choice")
        return None
    return role


def _checks_of_the_input(data: DraftInput, problems: _Problems) -> None:
    """What the input must say whatever the catalog holds."""
    if data.kind not in RequestKind.values:
        problems.add("kind", f"Choose one of: {', '.join(RequestKind.values)}.", "invalid_choice")
    if data.level and data.level not in AccessLevel.values:
        problems.add("level", f"Choose one of: {', '.join(AccessLevel.values)}.", "invalid_choice")
    elif not data.level and data.kind in (RequestKind.PIPELINE, RequestKind.CROSS_ACCOUNT):
        problems.add("level", "Choose an access level.")
    said = not data.permanent and data.duration_hours is not None  # else permanent, or the usual duration
    if said and not 1 <= (data.duration_hours or 0) <= MAX_DURATION_HOURS:
        problems.add("duration_hours", f"Between 1 and {MAX_DURATION_HOURS} hours.", "max_value")
    for name, pattern, message in (
        ("trusted_account_id", ACCOUNT_ID, ACCOUNT_ID_INVALID),
        ("trusted_principal_arn", TRUSTED_PRINCIPAL_ARN, TRUSTED_PRINCIPAL_ARN_INVALID),
        ("external_id", EXTERNAL_ID, EXTERNAL_ID_INVALID),
    ):
        value = getattr(data, name)
        if value and not pattern.fullmatch(value):
            problems.add(name, message, "invalid")
    for name, limit in TEXT_LIMITS.items():
        length = len(getattr(data, name) or "")
        if length > limit:
            problems.add(
                name, f"Ensure this value has at most {limit} characters (it has {length}).", "max_length"
            )
    for name, problem in free_text_problems({name: getattr(data, name) for name in FREE_TEXT}).items():
        problems.add(name, problem, "invalid")
    if data.source not in Source.values:
        problems.add("source", f"Choose one of: {', '.join(Source.values)}.", "invalid_choice")


def _outside_party(data: DraftInput, problems: _Problems) -> Principal | None:
    """Cross-account access is for the outside party the role trusts, which the input names instead of a
    principal (``workflow.requests.outside_party_problem`` says what is wrong with how it is named)."""
    if data.principal is not None or data.principal_arn:
        problems.add(
            "principal_arn" if data.principal_arn else "principal",
            "Cross-account access goes to the outside party the role trusts (trusted_account_id or "
            "trusted_principal_arn), not to a principal of Gatehouse's: send no principal.",
        )
    problem = outside_party_problem(data.trusted_account_id, data.trusted_principal_arn)
    if problem:
        problems.add("trusted_principal_arn" if data.trusted_principal_arn else "trusted_account_id", problem)
        return None
    return Principal.outside_party(
        trusted_account_id=data.trusted_account_id, trusted_principal_arn=data.trusted_principal_arn
    )


def build_draft(
    *, user, data: DraftInput, resolved: tuple[AwsAccount | None, DraftProblem | None] | None = None
) -> RequestDraft:
    """The draft ``data`` describes, with every reference found among what ``user`` may choose; raises
    DraftError listing every problem. The one way from input to a draft, for every path that files access.
    ``resolved``: what ``resolve_account(user, data.account)`` already answered on this trip (the form asks it
    first, to show the account's own lists)."""
    problems = _Problems()
    _checks_of_the_input(data, problems)
    account, account_problem = resolved if resolved is not None else resolve_account(user, data.account)
    if account_problem is not None:
        problems.setdefault("account", []).append(account_problem)
    elif account is None:
        problems.add("account", REQUIRED, "required")
    if data.kind == RequestKind.CROSS_ACCOUNT:
        principal = _outside_party(data, problems)
    else:
        principal = _principal(user, account, data, problems)
    pipelines, role = [], None
    if account is not None:  # what lives in an account is looked up only in the one chosen
        pipelines = _pipelines(account, data, problems)
        if data.pass_role:
            role = _pass_role(account, str(data.pass_role).strip(), problems)
    permission_set = None
    if data.permission_set:
        permission_set = _by_ref(permission_set_choices(), str(data.permission_set).strip())
        if permission_set is None:
            problems.add("permission_set", "No such permission set.", None)
    extends = None
    if data.extends is not None:
        try:  # whether it may be extended now is the plan's to say (``plan_request``)
            extends = selectors.get_own_grant(user, data.extends)
        except Http404:  # the same answer whether it does not exist or is someone else's
            problems.add("extends", "You have no grant with that number to extend.")
    if problems:
        raise DraftError(dict(problems))
    assert account is not None and principal is not None
    return RequestDraft(
        principal=principal,
        kind=data.kind,
        account=account,
        pipelines=pipelines,
        level=data.level,
        actions=list(data.actions),
        stage=data.stage,
        action_name=data.action_name,
        pass_role=role,
        permission_set=permission_set,
        trusted_account_id=data.trusted_account_id,
        trusted_principal_arn=data.trusted_principal_arn,
        external_id=data.external_id,
        justification=data.justification,
        ticket=data.ticket,
        starts_at=data.starts_at,
        duration_hours=None if data.permanent else data.duration_hours,
        default_duration=not data.permanent and data.duration_hours is None,
        source=data.source,
        pasted_text=data.pasted_text,
        extends=extends,
        passed={("account", user.pk, account.pk)},  # resolve_account entered the account rule
    )
