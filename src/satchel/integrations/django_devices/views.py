"""The "Your sessions" page and its two actions, for the logged-in user
(``django.contrib.auth``). The actions are POST only and checked by Django's CSRF
protection (``csrf_protect``, whether or not ``CsrfViewMiddleware`` is installed); the
page is never cached. A handle that names no session of this user, another user's
included, is a 404: the answer never tells whether that session exists.

Templates, each overridable by name: ``satchel/devices/sessions.html`` (the page, which
extends ``satchel/devices/base.html``: override that one to put the page in your site's
layout). Messages go through ``django.contrib.messages`` when it is installed.
"""

from __future__ import annotations

from typing import Any

from .. import missing_framework

try:
    from django.conf import settings
    from django.contrib import messages
    from django.contrib.auth import logout
    from django.contrib.auth.decorators import login_required
    from django.http import Http404, HttpResponseRedirect
    from django.shortcuts import render, resolve_url
    from django.urls import reverse
    from django.utils.translation import gettext, ngettext
    from django.views.decorators.cache import never_cache
    from django.views.decorators.csrf import csrf_protect
    from django.views.decorators.http import require_GET, require_POST
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "django") from None

from . import devices

TEMPLATE = "satchel/devices/sessions.html"
HANDLE_FIELD = "session"


def _url(request: Any, name: str) -> str:
    """This app's URL ``name`` under the namespace the request came through."""
    match = request.resolver_match
    namespace = match.namespace if match is not None and match.namespace else "satchel_devices"
    return str(reverse(f"{namespace}:{name}"))


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303  # after a POST: GET the page
    return response


@require_GET
@never_cache
@login_required
def sessions_page(request: Any) -> Any:
    sessions = devices.of_request(request)
    context = {
        "sessions": sessions,
        "others": sum(not s.current for s in sessions),
        "revoke_url": _url(request, "revoke"),
        "others_url": _url(request, "others"),
        "handle_field": HANDLE_FIELD,
    }
    return render(request, TEMPLATE, context)


@require_POST
@csrf_protect
@login_required
def revoke(request: Any) -> Any:
    handle = str(request.POST.get(HANDLE_FIELD, ""))
    if devices.is_current(request, handle):  # revoking this device: a logout
        logout(request)
        return _see_other(resolve_url(settings.LOGIN_URL))
    if not devices.revoke(request, handle):
        raise Http404("no such session")
    text = gettext("Session revoked: that device is signed out.")
    messages.success(request, text, fail_silently=True)
    return _see_other(_url(request, "list"))


@require_POST
@csrf_protect
@login_required
def logout_others(request: Any) -> Any:
    ended = devices.logout_others(request)
    text = ngettext(
        "Signed out %(count)d other session: only this device is still signed in.",
        "Signed out %(count)d other sessions: only this device is still signed in.",
        ended,
    ) % {"count": ended}
    messages.success(request, text, fail_silently=True)
    return _see_other(_url(request, "list"))
