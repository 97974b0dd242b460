"""The pickers' search endpoint: JSON for the typeahead, a plain search page with paged results without it."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from accessrequests.catalog import pickers

# Where a result chosen on the plain page leads: the field it fills, on the page that asked.
_TARGETS = {
    ("account", "request"): ("new_request", "account"),
    ("account", "review"): ("queue", "account"),
}


def _wants_json(request: HttpRequest) -> bool:
    return request.GET.get("format") == "json" or "application/json" in request.headers.get("Accept", "")


@login_required
@require_GET
def catalog_search(request: HttpRequest) -> HttpResponse:
    params = {name: request.GET.get(name, "") for name in ("kind", "q", "ou", "account", "scope", "after")}
    params["kind"] = params["kind"] or "account"
    params["scope"] = params["scope"] or "request"
    try:
        results = pickers.search(request.user, **params)
    except pickers.SearchError as exc:
        if _wants_json(request):
            return JsonResponse({"error": str(exc)}, status=400)
        return render(
            request, "accessrequests/catalog_search.html", {"params": params, "error": str(exc)}, status=400
        )
    if _wants_json(request):
        return JsonResponse(results.as_json())
    target = _TARGETS.get((params["kind"], params["scope"]))
    choose = [
        (item, f"{reverse(target[0])}?{urlencode({target[1]: item.value})}" if target else "")
        for item in results.items
    ]
    more = (
        urlencode({**{k: v for k, v in params.items() if v}, "after": results.after}) if results.after else ""
    )
    return render(
        request,
        "accessrequests/catalog_search.html",
        {"params": params, "results": results, "choose": choose, "more": more},
    )
