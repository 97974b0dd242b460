"""The Slack app's endpoints: interactive callbacks (button clicks), the signed link an "Approve" click answers,
and the ``/gatehouse break-glass`` slash command.

A callback or a command is believed only when Slack's signature over its exact body verifies with
SLACK_SIGNING_SECRET, it was signed within five minutes, and its payload id was not seen before (the shared cache
remembers ids longer than the five minutes). The Slack user is matched to a portal user by the e-mail address both
sides have verified; anyone else is told so privately and nothing happens, and so is someone whose address more
than one portal account has verified (compared without case): the click (or the command) is then nobody's.

"Approve" decides nothing by itself: it answers, privately, with a link to the portal's decision page that is
signed for that person and lives a few minutes; the page asks for the second factor (allauth's reauthentication)
before anything is decided. Only a rule that allows chat approval, for a low-risk request, lets the click be the
approval (``permissions.chat_approval_problem`` says when).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accessrequests.authz import permissions, selectors
from accessrequests.intake.parse import parse_access_denied
from accessrequests.intake.resolve import resolve_denial
from accessrequests.models import AccessRequest, Source
from accessrequests.notify import slack_api
from accessrequests.slack import text as slack_text
from accessrequests.slack.claims import ClaimError, request_claim
from accessrequests.workflow.break_glass import break_glass_submit
from accessrequests.workflow.drafts import DraftError, DraftInput, build_draft
from accessrequests.workflow.requests import RequestError, request_approve

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
REPLAY_SECONDS = 10 * 60  # longer than the five minutes a signature is accepted
LINK_SALT = "gatehouse.slack.decision-link"


def _refuse(status: int, message: str) -> JsonResponse:
    return JsonResponse({"ok": False, "error": message}, status=status)


def _portal_user(slack_user_id: str) -> tuple[Any, str | None]:
    """The one active portal user whose verified e-mail address is this Slack user's confirmed one, or nobody:
    an address two portal accounts verified (in any case) names neither of them."""
    info = slack_api.user_info(slack_user_id)
    if not info or info.get("deleted") or info.get("is_bot"):
        return None, "Gatehouse does not know your Slack account, so nothing was done."
    email = ((info.get("profile") or {}).get("email") or "").strip()
    if not email or info.get("is_email_confirmed") is False:
        return None, (
            "Your Slack account has no confirmed e-mail address, so Gatehouse cannot tell who you are; "
            "nothing was done. Open the request in Gatehouse instead."
        )
    users = selectors.users_with_verified_email(email)
    if not users:
        return None, (
            f"No Gatehouse account has the verified e-mail address {slack_text.slack_escape(email)}, so nothing "
            "was done. Sign in to Gatehouse once with single sign-on, or ask an admin to verify your address."
        )
    if len(users) > 1:
        logger.warning("Slack user %s matches several portal users by e-mail; refused", slack_user_id)
        return None, (
            f"More than one Gatehouse account has verified the e-mail address {slack_text.slack_escape(email)}, "
            "so Gatehouse cannot tell which one is you and nothing was done. Open the request in Gatehouse, and "
            "ask a Gatehouse admin to remove the address from the account that is not yours."
        )
    [user] = users
    if not user.is_active:
        return None, "Your Gatehouse account is deactivated, so nothing was done."
    return user, None


def decision_link(req: AccessRequest, user, verb: str) -> str:
    token = signing.dumps({"r": req.pk, "u": user.pk, "v": verb}, salt=LINK_SALT, compress=True)
    return settings.SITE_URL + reverse("slack_decision_link", args=[token])


def _act(payload: dict[str, Any], user, action: dict[str, Any], http_request: HttpRequest) -> str:
    """Do what the button says, as ``user``; returns what to tell them (privately)."""
    action_id = action.get("action_id")
    try:
        req = selectors.get_request_for_user(user, str(action.get("value", "")))
    except Http404:
        return "That request does not exist, or it is not yours to see."
    if action_id == slack_text.CLAIM:
        try:
            request_claim(request_id=req.pk, user=user, http_request=http_request)
        except (permissions.NotAllowed, ClaimError) as exc:
            return str(exc)
        return f"You claimed {req.reference}; the channel sees it."
    problem = permissions.decide_problem(user, req)
    if problem:
        return f"{req.reference}: {problem}"
    minutes = max(1, settings.GATEHOUSE_SLACK_LINK_SECONDS // 60)
    if action_id == slack_text.APPROVE:
        if permissions.chat_approval_problem(user, req) is None:
            factor = permissions.SecondFactor(user_id=user.pk, method="slack", at=timezone.now(), via="slack")
            try:
                done = request_approve(
                    request_id=req.pk, reviewer=user, second_factor=factor, comment="Approved in Slack",
                    http_request=http_request,
                )  # fmt: skip
            except (RequestError, permissions.NotAllowed) as exc:
                return f"{req.reference}: {exc}"
            return f"You approved {done.reference} ({done.get_status_display().lower()})."
        return slack_text.step_up_link(req, decision_link(req, user, "approve"), minutes, "approve")
    return slack_text.step_up_link(req, decision_link(req, user, "deny"), minutes, "deny")


def _unverified(request: HttpRequest) -> JsonResponse | None:
    """Why this is not a request Slack signed just now (the refusal to answer with), or None."""
    if not settings.SLACK_SIGNING_SECRET or not slack_api.enabled():
        return _refuse(404, "Slack is not configured here.")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = MAX_BODY + 1
    if length > MAX_BODY:
        return _refuse(413, "The body is too large.")
    problem = slack_api.verification_problem(
        request.body,
        request.headers.get("X-Slack-Request-Timestamp"),
        request.headers.get("X-Slack-Signature"),
    )
    if problem:
        logger.warning("Slack callback refused: %s", problem)
        return _refuse(401, problem)
    return None


def _seen_before(what: str, payload_id: str, body: bytes) -> bool:
    """Whether this payload came before: a replay (Slack sends each interaction and each command once)."""
    key = (
        f"slack-{what}:"
        + hashlib.sha256((payload_id or hashlib.sha256(body).hexdigest()).encode()).hexdigest()
    )
    return not cache.add(key, 1, timeout=REPLAY_SECONDS)


@csrf_exempt
@require_POST
def interactions(request: HttpRequest) -> HttpResponse:
    unverified = _unverified(request)
    if unverified is not None:
        return unverified
    body = request.body
    try:
        payload = json.loads(request.POST.get("payload", ""))
        slack_user = str(payload["user"]["id"])
        channel = str((payload.get("channel") or {}).get("id") or "")
        action = (payload.get("actions") or [])[0]
        if not isinstance(action, dict):
            raise TypeError("an action is an object")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return _refuse(400, "The payload is not a Slack block action.")
    payload_id = str(payload.get("trigger_id") or action.get("action_ts") or "")
    if _seen_before("interaction", payload_id, body):
        logger.warning("Slack callback refused: payload %s seen before", payload_id[:40])
        return _refuse(409, "This Slack interaction was received before.")
    if action.get("action_id") not in slack_text.ACTIONS:
        return HttpResponse(status=200)  # "Open in Gatehouse" is a plain link; Slack tells us anyway
    try:
        user, refusal = _portal_user(slack_user)
        reply = refusal or _act(payload, user, action, request)
        if channel:
            slack_api.post_ephemeral(channel=channel, user=slack_user, text=reply)
    except slack_api.SlackError as exc:
        logger.warning("Slack callback not answered: %s", exc)
        return _refuse(502, "Slack could not be reached; try again.")
    return HttpResponse(status=200)


def break_glass_command(user, text: str, http_request: HttpRequest) -> str:
    """``break-glass INC-123 <AccessDenied message> -- <reason>``, as ``user``: the message read as the paste page
    reads it, the draft from the same builder, break-glass from the same service (for one hour, the least any
    rule allows). Returns what to tell them."""
    words = text.strip().split(None, 2)
    if not words or words[0].lower() != "break-glass":
        return slack_text.COMMAND_USAGE
    message, separator, reason = (words[2] if len(words) == 3 else "").partition(" -- ")
    if not separator or not message.strip() or not reason.strip():
        return (
            "Say the incident, the AccessDenied message, then ` -- ` and the reason. "
            + slack_text.COMMAND_USAGE
        )
    result = parse_access_denied(message)
    if result.denial is None or not result.denial.fixable:
        return slack_text.command_refused(
            (result.error if result.denial is None else result.denial.explanation) or ""
        )
    resolution = resolve_denial(result.denial, user=user)
    if resolution.error:
        return slack_text.command_refused(resolution.error)
    if resolution.region_choices:
        return slack_text.command_refused(
            f"that pipeline exists in several regions ({', '.join(resolution.region_choices)}); "
            "break the glass in Gatehouse, where you can choose one."
        )
    if not resolution.complete:
        # As the API: nothing is applied half-read; the page lets one choose what the message did not name.
        reasons = [f"{what} {why}" if what else why for what, why in resolution.unmatched]
        return slack_text.command_refused(" ".join(reasons))
    data = DraftInput.from_resolution(
        resolution.initial,
        justification=reason.strip(),
        duration_hours=1,
        source=Source.SLACK,
        pasted_text=message.strip(),
    )
    try:
        req = break_glass_submit(
            requester=user,
            draft=build_draft(user=user, data=data),
            incident=words[1],
            http_request=http_request,
            source=Source.SLACK,
        )
    except (DraftError, RequestError, permissions.NotAllowed) as exc:
        return slack_text.command_refused(str(exc))
    return slack_text.break_glass_applied(req)


@csrf_exempt
@require_POST
def commands(request: HttpRequest) -> HttpResponse:
    """The ``/gatehouse`` slash command, checked like a button click (signature, five minutes, once, the person
    by their verified e-mail address); the answer is the response body, which Slack shows to them alone."""
    unverified = _unverified(request)
    if unverified is not None:
        return unverified
    slack_user = request.POST.get("user_id", "")
    if not slack_user or not request.POST.get("command"):
        return _refuse(400, "The body is not a Slack slash command.")
    if _seen_before("command", request.POST.get("trigger_id", ""), request.body):
        logger.warning("Slack command refused: received before")
        return _refuse(409, "This Slack command was received before.")
    try:
        user, reply = _portal_user(slack_user)
    except slack_api.SlackError as exc:
        logger.warning("Slack command not answered: %s", exc)
        user, reply = None, "Gatehouse could not ask Slack who you are, so nothing was done; try again."
    if user is not None:
        reply = break_glass_command(user, request.POST.get("text", ""), request)
    return JsonResponse({"response_type": "ephemeral", "text": reply})


@require_GET
@login_required
def decision_link_view(request: HttpRequest, token: str) -> HttpResponse:
    """Where a Slack button's private link lands: for its person only, for a few minutes, through the step-up."""
    try:
        data = signing.loads(token, salt=LINK_SALT, max_age=settings.GATEHOUSE_SLACK_LINK_SECONDS)
        request_id, user_id = int(data["r"]), int(data["u"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return render(
            request,
            "accessrequests/slack_link.html",
            {
                "problem": "This link has expired or is not valid. Click the button in Slack again for a new one."
            },
            status=400,
        )
    if user_id != request.user.pk:
        return render(
            request,
            "accessrequests/slack_link.html",
            {"problem": "This link was made for someone else. Click the button in Slack yourself."},
            status=403,
        )
    review = reverse("review", args=[request_id])
    factor = permissions.second_factor_from_session(request)
    if permissions.second_factor_problem(request.user, factor):
        return redirect(f"{reverse('mfa_reauthenticate')}?{urlencode({'next': review})}")
    return redirect(review)
