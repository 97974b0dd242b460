"""Break-glass pages: the form (with what it means and, before anything is applied, exactly what it would
grant and to whom), the list of uses, and the post-review."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from accessrequests.authz import inbox, permissions, selectors
from accessrequests.core import roles
from accessrequests.models import AccessRequest, ApprovalRule, RequestKind
from accessrequests.policy import documents as policy
from accessrequests.views import step_up
from accessrequests.views.forms import BreakGlassForm, PostReviewForm
from accessrequests.views.requests import draft_preview
from accessrequests.views.step_up import has_mfa
from accessrequests.workflow.break_glass import break_glass_post_review, break_glass_submit
from accessrequests.workflow.requests import RequestError, check_filing, prepare
from portal.middleware import form_removes_nul_bytes


def _rules_for(request: HttpRequest) -> list[ApprovalRule]:
    """The rules naming the person for break-glass, read now (and remembered for the menu)."""
    rules = list(selectors.break_glass_rules_for(request.user))
    if request.session.get(selectors.MAY_BREAK_GLASS) != bool(rules):  # a session write only when it changed
        request.session[selectors.MAY_BREAK_GLASS] = bool(rules)
    return rules


def _kinds(rules: list[ApprovalRule]) -> list[str]:
    """The kinds break-glass gives under the rules naming the person (what the form offers)."""
    named = {kind for rule in rules for kind in rule.allowed_break_glass_kinds()}
    return [kind for kind in RequestKind.values if kind in named] or [RequestKind.PIPELINE]


def _preview(request: HttpRequest, form: BreakGlassForm) -> tuple[dict | None, str]:
    """The exact change and who it reaches, with the service's refusal of its shape if it has one (the page
    asks; ``break_glass_submit`` decides)."""
    draft = form.draft()
    try:
        check_filing(request.user, draft)
        prepare(draft, preview=True)
    except (RequestError, permissions.NotAllowed) as exc:
        return None, str(exc)
    preview = draft_preview(draft)
    preview["refusal"] = permissions.break_glass_shape_problem(
        request.user, rule=draft.rule, request=draft.as_unsaved_request()
    )
    return preview, ""


@form_removes_nul_bytes
@login_required
@require_http_methods(["GET", "POST"])
def break_glass_new(request: HttpRequest) -> HttpResponse:
    if roles.is_auditor(request.user) and not roles.is_admin(request.user):
        raise Http404("No such page")
    rules = _rules_for(request)
    kinds = _kinds(rules)
    intent = request.POST.get("intent") if request.method == "POST" else None
    data: QueryDict | None = request.POST if request.method == "POST" else None
    if data is None and "account" in request.GET:
        # The Continue step (a GET, so it works without JavaScript): the account chosen, the rest at its defaults.
        data = request.GET.copy()
    if data is not None and intent not in ("preview", "submit"):
        data = data.copy()
        data.setdefault("duration_hours", "1")
        data.setdefault("kind", RequestKind.PIPELINE)
    form = BreakGlassForm(data, user=request.user, kinds=kinds, initial={"duration_hours": 1})
    preview, error = None, ""
    if intent not in ("preview", "submit"):
        if data is not None:
            form.errors.clear()  # nothing was submitted yet: no field is "missing"
    elif not form.is_valid():
        pass  # each field's problem is listed at the top of the form and said again at the field
    elif intent == "preview":
        preview, error = _preview(request, form)
    else:
        try:
            req = break_glass_submit(
                requester=request.user,
                draft=form.draft(),
                incident=form.cleaned_data.get("incident") or "",
                http_request=request,
            )
        except (RequestError, permissions.NotAllowed) as exc:
            error = str(exc)
        else:
            messages.warning(
                request,
                f"Break-glass {req.reference} is being applied now. Every approver of the rule, the admins and "
                "the auditors have been told; another approver reviews it afterwards.",
            )
            return redirect("request_detail", req.pk)
    return render(
        request,
        "accessrequests/break_glass_new.html",
        {
            "form": form,
            "error": error,
            "preview": preview,
            "step_one": form.chosen_account is None,
            "rules": rules,
            "kinds": kinds,
            "submitted": intent == "submit",
        },
        status=400 if error or (intent in ("preview", "submit") and form.errors) else 200,
    )


@login_required
@require_GET
def break_glass_list(request: HttpRequest) -> HttpResponse:
    """The uses the person may see, newest first, under the ones waiting for their post-review (most urgent
    first); the way to break the glass only for those a rule names."""
    if not (
        roles.is_approver(request.user) or roles.is_auditor(request.user) or roles.is_admin(request.user)
    ):
        raise Http404("No such page")
    uses = (
        selectors.requests_visible_to(request.user)
        .filter(break_glass=True)
        .select_related("requester", "principal", "account", "rule", "break_glass_review__reviewer")
        .order_by("-created_at")[:100]
    )
    waiting = inbox.review_inbox(request.user, filters=inbox.Filters(work=inbox.POST_REVIEW))
    inbox.show_in_menu(request, waiting.menu_counts)
    return render(
        request,
        "accessrequests/break_glass_list.html",
        {
            "uses": uses,
            "now": timezone.now(),
            "waiting": waiting,
            "may_use": bool(_rules_for(request)),
        },
    )


@step_up.resumable("post_review")
def decide_post_review(request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
    """Record the review after a break-glass use with the session's second factor."""
    req: AccessRequest = selectors.get_request_for_user(request.user, data["pk"])
    review = getattr(req, "break_glass_review", None)
    if review is None:
        raise Http404("No such break-glass use")
    try:
        break_glass_post_review(
            review_id=review.pk,
            reviewer=request.user,
            second_factor=permissions.second_factor_from_session(request),
            outcome=data["outcome"],
            comment=data["comment"],
            http_request=request,
        )
    except (RequestError, permissions.NotAllowed) as exc:
        messages.error(request, str(exc))
        return redirect("break_glass_review", req.pk)
    messages.success(request, f"Your review of break-glass {req.reference} is recorded.")
    return redirect("request_detail", req.pk)


@login_required
@require_http_methods(["GET", "POST"])
def post_review(request: HttpRequest, pk: int) -> HttpResponse:
    req: AccessRequest = selectors.get_request_for_user(request.user, pk)
    review = getattr(req, "break_glass_review", None)
    if review is None:
        raise Http404("No such break-glass use")
    page = reverse("break_glass_review", args=[req.pk])
    typed = step_up.held(request, page) if request.method == "GET" else {}
    form = PostReviewForm(request.POST or None, initial=typed or None)
    problem = permissions.post_review_problem(request.user, review)
    if request.method == "POST" and form.is_valid():
        data = {"pk": req.pk, **form.cleaned_data}
        if problem is None and permissions.second_factor_problem(
            request.user, permissions.second_factor_from_session(request)
        ):
            return step_up.ask(
                request, decision="post_review", data=data, back=page,
                what=f"record your review of break-glass {req.reference}", button="Record the review",
            )  # fmt: skip
        return decide_post_review(request, data)
    return render(
        request,
        "accessrequests/break_glass_review.html",
        {
            "req": req,
            "review": review,
            "document": policy.pretty(req.statements),
            "allows": policy.in_words(req.statements),
            "form": form,
            "problem": "Set up two-factor authentication to review."
            if not has_mfa(request.user)
            else problem,
            "late": review.reviewed_at is None and review.due_at <= timezone.now(),
        },
        status=400 if form.errors else 200,
    )
