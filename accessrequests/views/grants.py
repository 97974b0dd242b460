"""Grant actions: revoke now (requester or admin), retry now and abandon (admins). POST only."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accessrequests.authz import permissions, selectors
from accessrequests.core import roles


def confirmation(
    request: HttpRequest, *, title: str, explanation: str, action: str, keep: str, back: str
) -> HttpResponse:
    """The second step of a change that cannot be taken back: a page that asks (it works without JavaScript)."""
    return render(
        request,
        "accessrequests/confirm.html",
        {"title": title, "explanation": explanation, "action": action, "keep": keep, "back": back},
    )


@login_required
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    from accessrequests.provisioning import engine as provisioning

    grant = selectors.get_grant_for_user(request.user, pk)
    if not (roles.is_admin(request.user) or grant.request.requester_id == request.user.pk):
        # Seeing a grant through an approval rule is not a reason to learn that it can be revoked.
        raise Http404("No such grant")
    if request.POST.get("confirm") != "yes" and permissions.allowed(
        permissions.revoke_problem, request.user, grant
    ):
        return confirmation(
            request,
            title=f"Revoke {grant.request.reference} now?",
            explanation=(
                f"{grant.principal.get_kind_display()} {grant.principal.label} loses this access in AWS within "
                "moments. This cannot be undone; to get it back, file a new request."
            ),
            action="Revoke now",
            keep="Keep the access",
            back=reverse("request_detail", args=[grant.request_id]),
        )
    try:
        provisioning.grant_revoke(grant_id=grant.pk, actor=request.user)
        messages.success(request, "Revocation queued; the access is removed from AWS within moments.")
    except (provisioning.ProvisioningError, permissions.NotAllowed) as exc:
        messages.error(request, str(exc))
    return redirect("request_detail", grant.request_id)


def _admin_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Retry or abandon: admins only (404 for everyone else), then back to the dashboard with the outcome."""
    from accessrequests.provisioning import engine as provisioning

    if permissions.operate_problem(request.user):
        raise Http404("No such grant")
    grant = selectors.get_grant_for_user(request.user, pk)
    service, done = {
        "retry": (provisioning.grant_retry_now, f"Retrying {grant.request.reference} now."),
        "abandon": (
            provisioning.grant_abandon,
            f"Abandoned {grant.request.reference}; whatever was applied is being removed.",
        ),
    }[action]
    try:
        service(grant_id=grant.pk, actor=request.user)
        messages.success(request, done)
    except (provisioning.ProvisioningError, permissions.NotAllowed) as exc:
        messages.error(request, str(exc))
    return redirect("dashboard")


@login_required
@require_POST
def retry(request: HttpRequest, pk: int) -> HttpResponse:
    return _admin_action(request, pk, "retry")


@login_required
@require_POST
def abandon(request: HttpRequest, pk: int) -> HttpResponse:
    return _admin_action(request, pk, "abandon")
