"""The landing page after sign-in: who you are, the access you hold now, and what waits for you."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accessrequests.authz import inbox, selectors
from accessrequests.core import roles
from accessrequests.views.step_up import has_mfa


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = selectors.home_overview(user)
    if roles.is_approver(user):
        waiting = inbox.review_inbox(user, size=selectors.HOME_ROWS)
        inbox.show_in_menu(request, waiting.menu_counts)
        context.update(inbox=waiting, needs_mfa=not has_mfa(user))
    return render(request, "accessrequests/home.html", context)
