"""Access review pages: the campaigns, one campaign's items with their evidence, keep or revoke, the export."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accessrequests.audit import exports
from accessrequests.authz import permissions, recipients, selectors
from accessrequests.authz.routing import rules_for_approver
from accessrequests.core.ids import parse_id
from accessrequests.core.paging import paginate
from accessrequests.core.wording import counted
from accessrequests.models import AuditEvent, CampaignStatus, ReviewCampaign
from accessrequests.reviews import campaigns as reviews
from accessrequests.views import step_up
from accessrequests.views.downloads import export_download, manifest_download
from accessrequests.views.forms import ReviewItemForm
from accessrequests.views.step_up import has_mfa


def _readers_only(request: HttpRequest) -> None:
    if permissions.read_campaigns_problem(request.user):
        raise Http404("No such page")


@login_required
@require_GET
def campaigns(request: HttpRequest) -> HttpResponse:
    _readers_only(request)
    rows = []
    for campaign in selectors.campaigns_visible_to(request.user)[:50]:
        items = selectors.review_items_visible_to(request.user, campaign)
        rows.append({"campaign": campaign, "total": items.count(), "open": items.filter(decision="").count()})
    return render(
        request,
        "accessrequests/reviews.html",
        {
            "rows": rows,
            "can_start": permissions.allowed(permissions.start_campaign_problem, request.user),
            "open_exists": ReviewCampaign.objects.filter(status=CampaignStatus.OPEN).exists(),
            "settings_now": reviews_settings(),
        },
    )


def reviews_settings() -> dict:
    from django.conf import settings

    return {
        "min_age_days": settings.GATEHOUSE_REVIEW_MIN_AGE_DAYS,
        "unused_days": settings.GATEHOUSE_REVIEW_UNUSED_DAYS,
        "deadline_days": settings.GATEHOUSE_REVIEW_DEADLINE_DAYS,
        "unreviewed": settings.GATEHOUSE_REVIEW_UNREVIEWED,
        "every_days": settings.GATEHOUSE_REVIEW_EVERY_DAYS,
    }


@login_required
@require_POST
def campaign_start(request: HttpRequest) -> HttpResponse:
    if permissions.start_campaign_problem(request.user):
        raise Http404("No such page")
    try:
        campaign = reviews.campaign_start(actor=request.user, http_request=request)
    except (reviews.ReviewError, permissions.NotAllowed) as exc:
        messages.error(request, str(exc))
        return redirect("review_campaigns")
    messages.success(
        request,
        f"{campaign.reference} started with {counted(campaign.items.count(), 'item')}; reviewers are told by email.",
    )
    return redirect("review_campaign", campaign.pk)


@login_required
@require_GET
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = selectors.get_campaign_for_user(request.user, pk)
    now = timezone.now()
    items = selectors.review_items_visible_to(request.user, campaign)
    if request.GET.get("open") == "1":
        items = items.filter(decision="")
    only_item = parse_id(request.GET.get("item"))
    if only_item is not None:  # the link from "Needs your review": that item, whichever page it is on
        items = items.filter(pk=only_item)
    page = paginate(items, request.GET.get("page"))
    rule_ids = set(rules_for_approver(request.user).values_list("pk", flat=True))
    reach = recipients.reach_of(request.user)
    typed = step_up.held(request, reverse("review_campaign", args=[campaign.pk]))
    rows = []
    for item in page.object_list:
        problem = (
            permissions.review_item_problem(
                request.user,
                item,
                recipient_ids=reach.recipient_ids(item.grant.request),
                approver_rule_ids=rule_ids,
            )
            if not item.decision
            else None
        )
        rows.append(
            {
                "item": item,
                "unused": item.is_unused(now),
                "problem": problem,
                "can_review": not item.decision and problem is None,
                "can_retry": item.evidence_status == "failed"
                and permissions.allowed(
                    permissions.evidence_retry_problem,
                    request.user,
                    item,
                    recipient_ids=reach.recipient_ids(item.grant.request),
                    approver_rule_ids=rule_ids,
                ),
                "unused_for_days": (now - item.last_used_at).days if item.last_used_at else None,
                "form": ReviewItemForm(
                    prefix=f"item{item.pk}",
                    initial={"reason": typed["reason"]} if typed.get("pk") == item.pk else None,
                ),
            }
        )
    return render(
        request,
        "accessrequests/review_campaign.html",
        {
            "campaign": campaign,
            "rows": rows,
            "page": page,
            "only_open": request.GET.get("open") == "1",
            "only_item": only_item,
            "total_count": selectors.review_items_visible_to(request.user, campaign).count(),
            "open_count": selectors.review_items_visible_to(request.user, campaign)
            .filter(decision="")
            .count(),
            "needs_mfa": not has_mfa(request.user),
            "needs_step_up": permissions.second_factor_problem(
                request.user, permissions.second_factor_from_session(request)
            )
            is not None,
            "can_export": permissions.allowed(permissions.read_audit_problem, request.user),
            "past_deadline": campaign.deadline <= now,
        },
    )


@step_up.resumable("review_item")
def decide_review_item(request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
    """Keep or revoke one access-review item with the session's second factor."""
    item = selectors.get_review_item_for_user(request.user, data["pk"])
    reference = item.grant.request.reference
    try:
        done = reviews.review_item_decide(
            item_id=item.pk,
            reviewer=request.user,
            second_factor=permissions.second_factor_from_session(request),
            decision=data["decision"],
            reason=data["reason"],
            http_request=request,
        )
    except (reviews.ReviewError, permissions.NotAllowed) as exc:
        messages.error(request, f"{reference}: {exc}")
        return redirect("review_campaign", item.campaign_id)
    verb = "kept" if done.decision == "keep" else "revoked; the access is being removed from AWS"
    messages.success(request, f"{reference} {verb}.")
    return redirect("review_campaign", item.campaign_id)


@login_required
@require_http_methods(["POST"])
def item_decide(request: HttpRequest, pk: int) -> HttpResponse:
    item = selectors.get_review_item_for_user(request.user, pk)
    form = ReviewItemForm(request.POST, prefix=f"item{item.pk}")
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, f"Item {item.grant.request.reference}: {error}")
        return redirect("review_campaign", item.campaign_id)
    data = {"pk": item.pk, **form.cleaned_data}
    if permissions.allowed(
        permissions.review_item_problem, request.user, item
    ) and permissions.second_factor_problem(request.user, permissions.second_factor_from_session(request)):
        return step_up.ask(
            request, decision="review_item", data=data, back=reverse("review_campaign", args=[item.campaign_id]),
            what=f"{data['decision']} {item.grant.request.reference}", button=data["decision"].capitalize(),
        )  # fmt: skip
    return decide_review_item(request, data)


@login_required
@require_POST
def item_evidence_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Retry on an item whose usage evidence could not be read: ask IAM again now."""
    item = selectors.get_review_item_for_user(request.user, pk)
    reference = item.grant.request.reference
    try:
        reviews.review_item_evidence_retry(item_id=item.pk, actor=request.user, http_request=request)
    except (reviews.ReviewError, permissions.NotAllowed) as exc:
        messages.error(request, f"{reference}: {exc}")
    else:
        messages.success(request, f"{reference}: asked IAM again for the usage report; reload in a minute.")
    return redirect(f"{reverse('review_campaign', args=[item.campaign_id])}?item={item.pk}#item-{item.pk}")


@login_required
@require_GET
def campaign_export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse | StreamingHttpResponse:
    """The campaign's audit events with their manifest (``manifest=1``): auditors and admins."""
    if permissions.read_audit_problem(request.user):
        raise Http404("No such page")
    campaign = selectors.get_campaign_for_user(request.user, pk)
    if fmt not in exports.FORMATS:
        raise Http404("No such format")
    try:
        through = exports.parse_through_seq(request.GET.get("through_seq"))
    except ValueError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    if through is None and campaign.status == CampaignStatus.CLOSED:
        # A closed campaign's export ends with its closing event, whenever it is taken.
        through = (
            AuditEvent.objects.filter(action="review.campaign_closed", object_id=str(campaign.pk))
            .values_list("seq", flat=True)
            .first()
        )
    export = reviews.export_plan(campaign, fmt, through_seq=through)
    if request.GET.get("manifest") == "1":
        return manifest_download(export)
    stream = export_download(export, actor=request.user, http_request=request)
    stream["Link"] = f'<{request.path}?through_seq={export.through_seq}&manifest=1>; rel="describedby"'
    return stream
