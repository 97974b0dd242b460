"""Break-glass pages: the form (with what it means and, before anything is applied, exactly what it would
grant and to whom), the list of uses, and the post-review."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from accessrequests import permissions, policy, roles, selectors
from accessrequests.forms import BreakGlassForm, PostReviewForm
from accessrequests.models import AccessRequest, ApprovalRule, RequestKind
from accessrequests.services.break_glass import break_glass_post_review, break_glass_submit
from accessrequests.services.requests import RequestError, check_filing, prepare
from accessrequests.views.requests import draft_preview
from accessrequests.views.review import has_mfa, step_up_redirect


def _rules_for(user):
    return (
        ApprovalRule.objects.filter(enabled=True)
        .filter(Q(break_glass_users=user) | Q(break_glass_groups__in=user.groups.all()))
        .distinct()
    )


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


@login_required
@require_http_methods(["GET", "POST"])
def break_glass_new(request: HttpRequest) -> HttpResponse:
    if roles.is_auditor(request.user) and not roles.is_admin(request.user):
        raise Http404("No such page")
    rules = list(_rules_for(request.user))
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
        error = "Fix the highlighted fields."
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
        },
        status=400 if error else 200,
    )


@login_required
@require_GET
def break_glass_list(request: HttpRequest) -> HttpResponse:
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
    return render(request, "accessrequests/break_glass_list.html", {"uses": uses, "now": timezone.now()})


@login_required
@require_http_methods(["GET", "POST"])
def post_review(request: HttpRequest, pk: int) -> HttpResponse:
    req: AccessRequest = selectors.get_request_for_user(request.user, pk)
    review = getattr(req, "break_glass_review", None)
    if review is None:
        raise Http404("No such break-glass use")
    form = PostReviewForm(request.POST or None)
    factor = permissions.second_factor_from_session(request)
    problem = permissions.post_review_problem(request.user, review)
    if request.method == "POST" and form.is_valid():
        if problem is None and permissions.second_factor_problem(request.user, factor):
            return step_up_redirect(request, "break_glass_review", req.pk)
        try:
            break_glass_post_review(
                review_id=review.pk,
                reviewer=request.user,
                second_factor=factor,
                outcome=form.cleaned_data["outcome"],
                comment=form.cleaned_data["comment"],
                http_request=request,
            )
        except (RequestError, permissions.NotAllowed) as exc:
            messages.error(request, str(exc))
            return redirect("break_glass_review", req.pk)
        messages.success(request, f"Your review of break-glass {req.reference} is recorded.")
        return redirect("request_detail", req.pk)
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
