"""The console's admin site: who may enter, the navigation by task, and the console's pages.

Any active user with a Flight Control role may log in (the API's roles, flightctl/api/rbac.py;
Django's ``is_staff`` plays no part). The console's pages take the admin URLs of the kinds they
show (``/admin/devices/device/<name>/`` …), ahead of the per-kind ModelAdmins, so every link the
admin builds lands on them; the rest of the admin (tokens, organizations, users, failed tasks)
is the stock one, listed under "Administration".
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm

from ui import access

#: models whose pages the console provides; the admin's app list leaves them out
CONSOLE_MODELS = {("devices", "device"), ("fleets", "fleet"), ("enrollment", "enrollmentrequest"),
                  ("repos", "repository"), ("repos", "resourcesync"), ("flightctl", "event")}

#: the navigation by task: (label, URL name, the API resource the entry needs to be listed)
NAVIGATION = (
    ("Overview", "admin:index", "devices"),
    ("Devices", "admin:ui-devices", "devices"),
    ("Fleets", "admin:ui-fleets", "fleets"),
    ("Enrollment", "admin:ui-enrollment", "enrollmentrequests"),
    ("Repositories", "admin:ui-repositories", "repositories"),
    ("Resource syncs", "admin:ui-resourcesyncs", "resourcesyncs"),
    ("Events", "admin:ui-events", "events"),
)


class ConsoleLoginForm(AdminAuthenticationForm):
    """The admin's login form, asking for a Flight Control role instead of ``is_staff``."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": "Please enter a correct username and password.",
        "no_role": "This account has no Flight Control role: ask an administrator for one.",
    }

    def confirm_login_allowed(self, user):
        from flightctl.api import orgs

        if not user.is_active or not orgs.has_any_role(user):
            raise forms.ValidationError(self.error_messages["no_role"], code="no_role")


class ConsoleSite(admin.AdminSite):
    """The Flight Control console (the default admin site; see ui.apps)."""

    site_header = "Flight Control"
    site_title = "Flight Control"
    index_title = "Overview"
    site_url = None
    login_form = ConsoleLoginForm

    def has_permission(self, request) -> bool:
        return bool(request.user.is_active and access.role(request) is not None)

    def get_urls(self):
        from ui.urls import console_urls

        return console_urls(self) + super().get_urls()

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        for app in apps:
            app["models"] = [m for m in app["models"]
                             if (app["app_label"], m["object_name"].lower()) not in CONSOLE_MODELS]
        return [app for app in apps if app["models"]]

    def each_context(self, request):
        context = super().each_context(request)
        context["console_nav"] = [
            {"label": label, "url": url, "current": request.resolver_match is not None
             and f"admin:{request.resolver_match.url_name}" == url}
            for label, url, resource in NAVIGATION if access.can(request, resource, "list")]
        context["console_role"] = access.role(request)
        context["console_orgs"] = access.organizations(request)
        context["console_org"] = access.org_id(request) if context["console_orgs"] else None
        return context

    def login(self, request, extra_context=None):
        from ui.sso import offered

        choices = offered()
        return super().login(request, {**(extra_context or {}),
                                       "sso": choices[0] if choices else None,
                                       "sso_providers": choices})

    def index(self, request, extra_context=None):
        from ui.views.overview import overview

        return overview(request)
