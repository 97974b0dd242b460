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

from accessrequests.authz import permissions
from accessrequests.identity.tokens import LIFETIME_DAYS, token_issue, token_revoke
from accessrequests.models import ApiToken, TokenScope


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Where you will use it, e.g. “release CI job”.")
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices,
        initial=[TokenScope.READ],
        widget=forms.CheckboxSelectMultiple,
        help_text="Give it only what the job needs.",
    )
    days = forms.TypedChoiceField(
        coerce=int,
        choices=[(d, f"{d} days") for d in LIFETIME_DAYS],
        initial=30,
        label="Expires after",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # Offer only the scopes this person may hold: a box that could only be refused is no choice.
        field = self.fields["scopes"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [
            (value, label)
            for value, label in TokenScope.choices
            if permissions.allowed(permissions.token_scopes_problem, user, {value})
        ]


# never_cache: the answer to the POST carries the only copy of the secret; no cache or back button may keep it.
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert user.is_authenticated  # login_required
    form = TokenForm(request.POST or None, user=user)
    secret = None
    if request.method == "POST" and form.is_valid():
        try:
            _, secret = token_issue(
                user=user,
                name=form.cleaned_data["name"].strip(),
                scopes=form.cleaned_data["scopes"],
                days=form.cleaned_data["days"],
                http_request=request,
            )
        except IntegrityError:
            form.add_error("name", "You already have a live token with this name.")
        except permissions.NotAllowed as exc:
            form.add_error("scopes", str(exc))
    live = ApiToken.objects.filter(user=user, revoked_at__isnull=True, expires_at__gt=timezone.now())
    return render(
        request,
        "accessrequests/tokens.html",
        {"form": form, "secret": secret, "tokens": live},
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    token = token_revoke(user=request.user, token_id=pk, http_request=request)
    if token is None:
        raise Http404("No such token")
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("tokens")
