"""Personal API tokens: create (the secret is shown once), list, revoke."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accessrequests import audit
from accessrequests.models import ApiToken


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Where you will use it, e.g. “release CI job”.")


# never_cache: the answer to the POST carries the only copy of the secret; no cache or back button may keep it.
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert user.is_authenticated  # login_required
    form = TokenForm(request.POST or None)
    secret = None
    if request.method == "POST" and form.is_valid():
        try:
            token, secret = ApiToken.issue(user=user, name=form.cleaned_data["name"].strip())
        except IntegrityError:
            form.add_error("name", "You already have a live token with this name.")
        else:
            audit.record(
                action="token.created", object_type="api_token", object_id=token.pk, actor=request.user,
                after={"name": token.name}, http_request=request,
            )  # fmt: skip
    live = ApiToken.objects.filter(user=user, revoked_at__isnull=True)
    return render(
        request,
        "accessrequests/tokens.html",
        {"form": form, "secret": secret, "tokens": live},
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    assert user.is_authenticated  # login_required
    token = ApiToken.objects.filter(pk=pk, user=user, revoked_at__isnull=True).first()
    if token is None:
        raise Http404("No such token")
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    audit.record(
        action="token.revoked", object_type="api_token", object_id=token.pk, actor=request.user,
        before={"name": token.name}, http_request=request,
    )  # fmt: skip
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("tokens")
