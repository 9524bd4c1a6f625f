"""The console's URLs, mounted by the admin site under ``/admin/`` (see ui.site)."""

from __future__ import annotations

from django.urls import path

from ui import sso
from ui.views import devices, enrollment, events, fleets, overview, repos


def console_urls(site) -> list:
    def page(route: str, view, name: str):
        return path(route, site.admin_view(view), name=name)

    return [
        # Before login, so not behind admin_view.
        path("sso/login", sso.start, name="ui-sso-login"),
        path("sso/callback", sso.callback, name="ui-sso-callback"),
        page("devices/device/", devices.device_list, "ui-devices"),
        page("devices/device/<str:name>/", devices.device_page, "ui-device"),
        page("devices/device/<str:name>/console/", devices.device_console, "ui-device-console"),
        page("devices/device/<str:name>/<str:action>", devices.device_action, "ui-device-action"),
        page("enrollment/enrollmentrequest/", enrollment.waiting_room, "ui-enrollment"),
        page("enrollment/enrollmentrequest/<str:name>/", enrollment.request_page,
             "ui-enrollmentrequest"),
        page("fleets/fleet/", fleets.fleet_list, "ui-fleets"),
        page("fleets/fleet/add/", fleets.fleet_edit, "ui-fleet-add"),
        page("fleets/fleet/<str:name>/", fleets.fleet_page, "ui-fleet"),
        page("fleets/fleet/<str:name>/edit/", fleets.fleet_edit, "ui-fleet-edit"),
        page("fleets/fleet/<str:name>/rollout/<str:action>", fleets.rollout_action,
             "ui-fleet-rollout"),
        page("repos/repository/", repos.repository_list, "ui-repositories"),
        page("repos/repository/add/", repos.repository_edit, "ui-repository-add"),
        page("repos/repository/<str:name>/", repos.repository_page, "ui-repository"),
        page("repos/repository/<str:name>/edit/", repos.repository_edit, "ui-repository-edit"),
        page("repos/resourcesync/", repos.resourcesync_list, "ui-resourcesyncs"),
        page("repos/resourcesync/add/", repos.resourcesync_edit, "ui-resourcesync-add"),
        page("repos/resourcesync/<str:name>/", repos.resourcesync_page, "ui-resourcesync"),
        page("repos/resourcesync/<str:name>/edit/", repos.resourcesync_edit,
             "ui-resourcesync-edit"),
        page("flightctl/event/", events.event_list, "ui-events"),
        page("organization/", overview.switch_organization, "ui-organization"),
    ]
