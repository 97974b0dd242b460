"""Grant actions: revoke now (requester or admin), retry now and abandon (admins). POST only."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from accessrequests import permissions, roles, selectors
from accessrequests.models import Grant


def _grant_for(user, pk: int) -> Grant:
    """A grant is reached through its request, so the request's access helper decides who may see it."""
    grant = Grant.objects.filter(pk=pk).only("pk", "request_id").first()
    if grant is None:
        raise Http404("No such grant")
    selectors.get_request_for_user(user, grant.request_id)
    return Grant.objects.select_related("request", "principal", "account").get(pk=pk)


@login_required
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    from accessrequests.services import provisioning

    grant = _grant_for(request.user, pk)
    if not (roles.is_admin(request.user) or grant.request.requester_id == request.user.pk):
        raise Http404(
            "No such grant"
        )  # seen through an approval rule is not a reason to know it can be revoked
    try:
        provisioning.grant_revoke(grant_id=grant.pk, actor=request.user)
        messages.success(request, "Revocation queued; the access is removed from AWS within moments.")
    except (provisioning.ProvisioningError, permissions.NotAllowed) as exc:
        messages.error(request, str(exc))
    return redirect("request_detail", grant.request_id)


def _admin_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Retry or abandon: admins only (404 for everyone else), then back to the dashboard with the outcome."""
    from accessrequests.services import provisioning

    if not roles.is_admin(request.user):
        raise Http404("No such grant")
    grant = _grant_for(request.user, pk)
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
