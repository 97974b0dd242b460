"""Break-glass: access applied at once with no approver, for the people a rule names, during an incident.

It is the normal request, approved by nobody: the same statements, the same grant and provisioning, but only
for those ``permissions.break_glass_problem`` allows (named on the rule, at most the rule's break-glass hours, a
reason and an incident reference, a few times a day), and only in the shape ``permissions.break_glass_shape_problem``
allows (the kinds the rule names, pipeline access by default; the requester's own principal, reaching nobody else).
The web form, the API and the Slack command all end here, with a draft from ``workflow.drafts.build_draft``.
Every use is announced at once to the rule's approvers, admins and auditors, and waits for a review after the
fact by another approver within GATEHOUSE_BREAK_GLASS_REVIEW_HOURS; a late one is an alert on the dashboard and
in ``/healthz``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.authz import routing as rules
from accessrequests.authz.permissions import SecondFactor
from accessrequests.models import (
    LIVE_GRANT_STATUSES,
    AccessRequest,
    BreakGlassReview,
    PostReviewOutcome,
    RequestKind,
    RequestStatus,
    Source,
)
from accessrequests.notify import hooks as notify
from accessrequests.provisioning import grants
from accessrequests.workflow.requests import (
    DEFAULT_DURATION_HOURS,
    RequestDraft,
    RequestError,
    check_filing,
    create_from_draft,
    decision_facts,
    find_duplicates,
    prepare,
    record_request_event,
    refuse_hidden_characters,
)


def review_window() -> timedelta:
    return timedelta(hours=max(settings.GATEHOUSE_BREAK_GLASS_REVIEW_HOURS, 1))


def _check_may_break_glass(
    requester, *, rule, draft: RequestDraft, incident: str, now: datetime | None = None
) -> None:
    """Who may break the glass under ``rule`` (named, briefly, with a reason and an incident, a few times a day),
    and the shape of what they get (the rule's break-glass kinds, reaching nobody but them)."""
    problem = permissions.break_glass_problem(
        requester,
        rule=rule,
        duration_hours=draft.duration_hours,
        reason=draft.justification,
        incident=incident,
        now=now,
    )
    if problem == permissions.NO_BREAK_GLASS_RULE:
        # Why no rule routes it (an account of unknown environment, say) and what would fix it, as a request hears.
        reason = rules.unrouted_reason(account=draft.account, kind=draft.kind)
        problem = f"{reason} Break-glass follows the same rules, so there is none for it either."
    permissions.check(problem)
    permissions.check(
        permissions.break_glass_shape_problem(requester, rule=rule, request=draft.as_unsaved_request())
    )


def break_glass_submit(
    *, requester, draft: RequestDraft, incident: str, http_request=None, source: str = Source.FORM
) -> AccessRequest:
    """Apply ``draft`` now, with no approver, if the requester may break the glass under its rule."""
    # Break-glass skips the approvers, never the filing checks: whom a rule names for emergencies is still bound
    # by the principal link, the account's reach and eligibility.
    check_filing(requester, draft)
    refuse_hidden_characters(incident, "The incident reference")
    incident = (incident or "").strip()[:100]
    rule = rules.match_rule(
        account=draft.account,
        kind=draft.kind,
        level=draft.level,
        pipelines=list(draft.pipelines),
        # As ``prepare`` matches it, so the rule judged here is the one the request will name.
        permission_set=draft.permission_set if draft.kind == RequestKind.PERMISSION_SET else None,
    )
    if draft.default_duration and rule is not None:
        # Not said how long: break-glass lasts the most its rule allows, and not more than the usual duration.
        draft.duration_hours = min(DEFAULT_DURATION_HOURS, rule.break_glass_max_hours)
        draft.default_duration = False
    # Who may, for how long, and what, first: their messages are clearer than the normal request's checks.
    _check_may_break_glass(requester, rule=rule, draft=draft, incident=incident)
    prepare(draft)
    for duplicate in find_duplicates(requester, draft):
        if duplicate.live:
            raise RequestError(duplicate.message)
    assert draft.rule is not None and draft.starts_at is not None
    now = timezone.now()
    draft.starts_at = now  # break-glass is for now, never for later
    with transaction.atomic():
        # Serialise one person's break-glass uses, so two at once cannot both pass the daily limit.
        get_user_model().objects.select_for_update().filter(pk=requester.pk).first()
        _check_may_break_glass(requester, rule=draft.rule, draft=draft, incident=incident, now=now)
        req = create_from_draft(
            requester,
            draft,
            ticket=incident,
            incident=incident,
            break_glass=True,
            starts_at=now,
            source=source,
        )
        record_request_event(
            req, "request.created", actor=requester, http_request=http_request, extra={"break_glass": True}
        )
        AccessRequest.objects.transition(
            req.pk, sources=[RequestStatus.PENDING], target=RequestStatus.APPROVED, decided_at=now
        )
        req.refresh_from_db()
        review = BreakGlassReview.objects.create(request=req, due_at=now + review_window())
        record_request_event(
            req,
            "request.break_glass",
            actor=requester,
            http_request=http_request,
            extra={
                "break_glass": True,
                "incident": incident,
                "reason": req.justification,
                "post_review_due_at": review.due_at,
            },
        )
        grants.grant_create(request=req)
        notify.on_break_glass(req)
    return req


def break_glass_post_review(
    *,
    review_id: int,
    reviewer,
    second_factor: SecondFactor | None,
    outcome: str,
    comment: str,
    http_request=None,
) -> BreakGlassReview:
    """Another approver says whether the use was justified; "not justified" also revokes access still live."""
    from accessrequests.provisioning import engine as provisioning

    if outcome not in PostReviewOutcome.values:
        raise RequestError("Choose justified or not justified.")
    comment = (comment or "").strip()
    if not comment:
        raise RequestError("Say what you checked (the comment is required).")
    refuse_hidden_characters(comment, "The comment")
    permissions.check(permissions.second_factor_problem(reviewer, second_factor))
    with transaction.atomic():
        review = (
            BreakGlassReview.objects.select_for_update(of=("self",))
            .select_related("request", "request__rule", "request__account", "request__principal")
            .filter(pk=review_id)
            .first()
        )
        if review is None:
            raise RequestError("No such break-glass use.")
        permissions.check(permissions.post_review_problem(reviewer, review))
        req = review.request
        grant = getattr(req, "grant", None)
        if (
            outcome == PostReviewOutcome.NOT_JUSTIFIED
            and grant is not None
            and grant.status in LIVE_GRANT_STATUSES
        ):
            provisioning.grant_revoke(grant_id=grant.pk, actor=reviewer, post_review=review, reason=comment)
        now = timezone.now()
        if (
            BreakGlassReview.objects.filter(pk=review.pk, reviewed_at__isnull=True).update(
                reviewer=reviewer, reviewed_at=now, outcome=outcome, comment=comment[:2000]
            )
            != 1
        ):
            raise RequestError("This break-glass use was reviewed a moment ago.")
        record_request_event(
            req,
            "request.break_glass_reviewed",
            actor=reviewer,
            http_request=http_request,
            decision=decision_facts(outcome, second_factor, comment),
            extra={"late": review.due_at < now, "due_at": review.due_at},
        )
    review.refresh_from_db()
    return review


def post_reviews_overdue(*, now: datetime | None = None) -> int:
    """Record each post-review that passed its time (once) and tell admins (beat, every 15 minutes)."""
    now = now or timezone.now()
    reported = 0
    late = BreakGlassReview.objects.filter(
        reviewed_at__isnull=True, overdue_reported_at__isnull=True, due_at__lte=now
    ).values_list("pk", flat=True)[:500]
    for pk in late:
        with transaction.atomic():
            if (
                BreakGlassReview.objects.filter(
                    pk=pk, reviewed_at__isnull=True, overdue_reported_at__isnull=True
                ).update(overdue_reported_at=now)
                != 1
            ):
                continue
            review = BreakGlassReview.objects.select_related(
                "request", "request__account", "request__principal"
            ).get(pk=pk)
            audit.record(
                action="request.break_glass_review_overdue",
                object_type="access_request",
                object_id=review.request_id,
                request_id=review.request_id,
                principal_id=review.request.principal_id,
                account_id=review.request.account.account_id,
                after={"due_at": review.due_at, "reference": review.request.reference},
            )
            notify.on_post_review_overdue(review)
            reported += 1
    return reported
