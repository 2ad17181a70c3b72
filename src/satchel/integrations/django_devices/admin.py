"""Sessions per user in Django's admin. Sessions are not Django models, so they hang off
the user model's admin: :class:`UserSessionsAdminMixin` adds

- a "Sessions" page per user (``admin:<app>_<model>_sessions``): device, IP, signed in,
  last seen, expires, handle; revoke one, or log out all of them;
- a "Sessions" link in the user list;
- the action "Log out all sessions of the selected users".

Seeing the page needs the view or change permission on that user; revoking needs the
change permission (a staff member without it gets 403; someone not staff, the admin's
login page). Each revocation is written to the admin's history of that user.

When this module is imported (the admin's autodiscovery, in ``INSTALLED_APPS`` order), the
user model's admin registered on ``admin.site`` so far gets the mixin. Register your own
``UserAdmin`` on another site, or after this app, with the mixin yourself:
``class UserAdmin(UserSessionsAdminMixin, auth_admin.UserAdmin)``.
"""

from __future__ import annotations

from typing import Any

from .. import missing_framework

try:
    from django.contrib import admin, messages
    from django.contrib.admin.utils import quote, unquote
    from django.contrib.auth import get_user_model, logout
    from django.core.exceptions import PermissionDenied
    from django.http import Http404, HttpResponseRedirect
    from django.template.response import TemplateResponse
    from django.urls import path, reverse
    from django.utils.html import format_html
    from django.utils.translation import gettext, gettext_lazy, ngettext
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "django") from None

from ..django import satchel_session
from . import devices
from .views import HANDLE_FIELD

TEMPLATE = "admin/satchel_devices/user_sessions.html"
ACTION = "satchel_log_out_everywhere"


class UserSessionsAdminMixin:
    """Mix into the user model's ``ModelAdmin`` (before it): its users' sessions."""

    satchel_sessions_template = TEMPLATE
    opts: Any
    admin_site: Any

    def _sessions_url_name(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_sessions"

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.sessions_view)  # staff only, CSRF, no cache
        urls: list[Any] = [path("<path:object_id>/sessions/", view, name=self._sessions_url_name())]
        urls.extend(super().get_urls())  # type: ignore[misc]  # after: theirs end in a catch-all
        return urls

    def get_list_display(self, request: Any) -> Any:
        shown = tuple(super().get_list_display(request))  # type: ignore[misc]
        return (*shown, "satchel_sessions_link")

    @admin.display(description=gettext_lazy("Sessions"))
    def satchel_sessions_link(self, obj: Any) -> str:
        url = reverse(f"{self.admin_site.name}:{self._sessions_url_name()}", args=[quote(obj.pk)])
        return str(format_html('<a href="{}">{}</a>', url, gettext("Sessions")))

    def get_actions(self, request: Any) -> Any:
        actions = super().get_actions(request)  # type: ignore[misc]
        if self.has_change_permission(request):
            description = gettext("Log out all sessions of the selected %(verbose_name_plural)s")
            actions[ACTION] = (type(self).satchel_log_out_everywhere, ACTION, description)
        return actions

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        """The ModelAdmin's own check (typed here for the calls below)."""
        return bool(super().has_change_permission(request, obj))  # type: ignore[misc]

    def satchel_log_out_everywhere(self, request: Any, queryset: Any) -> None:
        if not self.has_change_permission(request):
            raise PermissionDenied
        ended = 0
        for user in queryset:
            count = devices.revoke_all_of_user(user)
            ended += count
            self.log_change(request, user, f"Logged out all sessions ({count}).")  # type: ignore[attr-defined]
        text = ngettext("%(count)d session ended.", "%(count)d sessions ended.", ended)
        self.message_user(request, text % {"count": ended}, messages.SUCCESS)  # type: ignore[attr-defined]

    def sessions_view(self, request: Any, object_id: str) -> Any:
        user = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if user is None:
            raise Http404("no such user")
        if not self.has_view_or_change_permission(request, user):  # type: ignore[attr-defined]
            raise PermissionDenied
        can_revoke = self.has_change_permission(request, user)
        own = satchel_session(request.session).handle
        if request.method == "POST":
            if not can_revoke:
                raise PermissionDenied
            return self._revoke(request, user, own)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": user,
            "title": gettext("Sessions of %(user)s") % {"user": user},
            "sessions": devices.of_user(user, current=own),
            "can_revoke": can_revoke,
            "handle_field": HANDLE_FIELD,
        }
        return TemplateResponse(request, self.satchel_sessions_template, context)

    def _revoke(self, request: Any, user: Any, own: str | None) -> Any:
        every = request.POST.get("all") == "yes"
        handle = "" if every else str(request.POST.get(HANDLE_FIELD, ""))
        if every:
            note = f"Logged out all sessions ({devices.revoke_all_of_user(user)})."
        elif devices.revoke_of_user(user, handle):
            note = f"Revoked session {handle}."
        else:
            raise Http404("no such session")
        self.log_change(request, user, note)  # type: ignore[attr-defined]
        if own is not None and _is_self(request, user) and (every or handle == own):
            logout(request)  # the admin ended their own session: log in again
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:login"))
        self.message_user(request, note, messages.SUCCESS)  # type: ignore[attr-defined]
        return HttpResponseRedirect(request.path)


def _is_self(request: Any, user: Any) -> bool:
    return bool(request.user.is_authenticated and request.user.pk == user.pk)


def install(site: Any = admin.site) -> bool:
    """Give the user model's admin on ``site`` the mixin; False when the user model is
    not registered there (or already has it)."""
    model = get_user_model()
    if not site.is_registered(model):
        return False
    current = site.get_model_admin(model)
    if isinstance(current, UserSessionsAdminMixin):
        return False
    base = type(current)
    mixed = type(base.__name__, (UserSessionsAdminMixin, base), {"__module__": base.__module__})
    site.unregister(model)
    site.register(model, mixed)
    return True


install()
