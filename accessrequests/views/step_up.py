"""Step-up: a decision whose second factor is too old asks for it again, then is carried out once.

Deciding on access needs a second factor from the last few minutes (``permissions.second_factor_problem``). When
the reviewer's is older, the page hands its decision to ``ask``: allauth's reauthentication asks for the code (only
a second factor is offered there once a person has one: ``portal.adapters.AccountAdapter``), and when the code is
right allauth calls ``resume`` with what was held, which decides through the same function the page calls when the
second factor is fresh. allauth takes the held decision out of the session before it calls back, so it runs once;
``resume`` also runs it only for the user who pressed the button, within the step-up window, and only when the code
was asked for that decision. Otherwise nothing is decided and the page shows what was typed, with a hint to press
the button again.

Without two-factor authentication set up there is nothing to ask for: ``ask`` sends the person to set it up, and
back to the page afterwards (``AFTER_MFA``, ``continue_after_mfa``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from allauth.account.internal.flows.reauthentication import STATE_SESSION_KEY
from allauth.mfa.models import Authenticator
from allauth.utils import get_request_param
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

AFTER_MFA = "gatehouse_after_mfa"  # where to go back once two-factor authentication is set up
HELD = "gatehouse_held_decision"  # what a reviewer typed, for the page when the decision was not carried out
RESUME = "accessrequests.views.step_up.resume"  # what allauth calls once the second factor is given

Decide = Callable[[HttpRequest, dict[str, Any]], HttpResponse]
_DECISIONS: dict[str, Decide] = {}


def has_mfa(user) -> bool:
    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def resumable(name: str) -> Callable[[Decide], Decide]:
    """Register the function that carries out one kind of decision (the page calls it too), under ``name``."""

    def register(decide: Decide) -> Decide:
        _DECISIONS[name] = decide
        return decide

    return register


def ask(
    request: HttpRequest, *, decision: str, data: dict[str, Any], back: str, what: str, button: str
) -> HttpResponse:
    """Ask for the second factor, holding ``data`` for the ``decision`` registered with ``resumable``. ``back`` is the
    decision's page, ``what`` says what the code is for ("approve GH-000012"), ``button`` is the button to press
    again when the decision cannot be carried out by itself."""
    if not has_mfa(request.user):
        request.session[AFTER_MFA] = back
        messages.warning(request, "Deciding needs two-factor authentication: set it up, then you come back.")
        return redirect("mfa_activate_totp")
    request.session[STATE_SESSION_KEY] = {
        "callback": RESUME,
        "state": {
            "decision": decision,
            "data": data,
            "user": request.user.pk,
            "at": time.time(),
            "back": back,
            "button": button,
        },
    }
    messages.info(
        request,
        f"Enter the code your authenticator app shows (or a recovery code) to {what}: it is done as soon as the "
        "code is accepted.",
    )
    return redirect(f"{reverse('mfa_reauthenticate')}?{urlencode({'next': back})}")


def _not_carried_out(request: HttpRequest, state: dict[str, Any]) -> str | None:
    """Why a held decision must not be carried out now, or None."""
    if state.get("decision") not in _DECISIONS:
        return "it was not one Gatehouse knows"
    if state.get("user") != request.user.pk:
        return "it was held for someone else"
    held_for = time.time() - float(state.get("at") or 0)
    if not 0 <= held_for <= settings.GATEHOUSE_STEP_UP_SECONDS:
        minutes = max(1, settings.GATEHOUSE_STEP_UP_SECONDS // 60)
        return f"it waited more than {minutes} minutes for the code"
    return None


def resume(request: HttpRequest, state: dict[str, Any]) -> HttpResponse | None:
    """allauth's callback once the second factor is accepted (it has already removed ``state`` from the session).
    Returns the decision's answer, or None for allauth to go on to the page (``next``)."""
    if get_request_param(request, "next") != state.get("back"):
        return None  # the code was asked for something else (another tab, the admin): decide nothing
    problem = _not_carried_out(request, state)
    if problem:
        request.session[HELD] = {"back": state["back"], "data": state.get("data") or {}}
        messages.info(
            request,
            f"Confirmed — now press {state.get('button') or 'the button'} again. Your decision was not sent by "
            f"itself because {problem}; what you typed is kept.",
        )
        return None
    return _DECISIONS[state["decision"]](request, state["data"])


def held(request: HttpRequest, back: str) -> dict[str, Any]:
    """What the reviewer typed before a decision that was not carried out, once, for the page at ``back``."""
    value = request.session.get(HELD)
    if not value or value.get("back") != back:
        return {}
    del request.session[HELD]
    return dict(value.get("data") or {})


@login_required
@require_http_methods(["GET"])
def continue_after_mfa(request: HttpRequest) -> HttpResponse:
    """Back to the page that sent the user to set up two-factor authentication (a path of this site only)."""
    target = request.session.pop(AFTER_MFA, None) or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}
    ) or not target.startswith("/"):
        target = reverse("home")
    return redirect(target)
