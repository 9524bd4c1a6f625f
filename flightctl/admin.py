"""Admin building blocks shared by every kind, and the framework's own admin pages.

The admin is a window onto the API's objects: it lists, filters and shows them but neither
edits nor deletes them, because every write must go through the API's validation, events and
follow-up work. Changes are made with the web console (ui/), the API or the ``flightctl`` CLI.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.db import connection
from django.utils.html import format_html

from flightctl.models import ApiToken, Event, Organization

admin.site.site_header = "Flight Control"
admin.site.site_title = "Flight Control"
admin.site.index_title = "Fleet management"


class LabelFilter(admin.SimpleListFilter):
    """Filter by one ``key=value`` label, offering the most common pairs of the table."""

    title = "label"
    parameter_name = "label"

    def lookups(self, request, model_admin):
        table = model_admin.model._meta.db_table
        # jsonb_each_text has no ORM equivalent; one grouped query over a bounded sample keeps
        # the page cheap on large tables.
        sql = (
            f"SELECT kv.key || '=' || kv.value AS pair, count(*) AS n FROM "  # noqa: S608
            f"(SELECT labels FROM {connection.ops.quote_name(table)} LIMIT 5000) t, "
            "jsonb_each_text(t.labels) kv GROUP BY pair ORDER BY n DESC, pair LIMIT 25"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return [(pair, pair) for pair, _ in cursor.fetchall()]

    def queryset(self, request, queryset):
        if not self.value() or "=" not in self.value():
            return queryset
        key, _, value = self.value().partition("=")
        return queryset.filter(labels__contains={key: value})


class ResourceAdmin(admin.ModelAdmin):
    """Read-only admin for an API resource."""

    search_fields = ("name",)
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = ("name", "org_id", "owner", "generation", "resource_version", "created_at",
                       "updated_at", "labels_pretty", "annotations_pretty", "spec_pretty",
                       "status_pretty")
    exclude = ("labels", "annotations", "spec", "status")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a delete here would skip the API's rules and record no event

    @staticmethod
    def _pretty(value):
        return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))

    @admin.display(description="labels")
    def labels_pretty(self, obj):
        return self._pretty(obj.labels)

    @admin.display(description="annotations")
    def annotations_pretty(self, obj):
        return self._pretty(obj.annotations)

    @admin.display(description="spec")
    def spec_pretty(self, obj):
        return self._pretty(obj.spec)

    @admin.display(description="status")
    def status_pretty(self, obj):
        return self._pretty(obj.status)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "involved_kind", "involved_name", "reason", "type", "actor",
                    "message")
    list_filter = ("type", "involved_kind", "reason")
    search_fields = ("involved_name", "message")
    show_full_result_count = False
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the audit trail; retention (event_retention) removes old events


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "description", "created_at", "expires_at")
    fields = ("user", "description", "expires_at")

    def has_add_permission(self, request):
        # A token is only ever shown once, by `flightctl-server create-token`.
        return False


admin.site.register(Organization)
