"""Writes of many Device rows at once: the one home of the set-based UPDATEs of devices.

Rollouts, ownership, renders and status recomputations change thousands of devices, a page at a
time; each page is one statement here, never a loop of per-device writes. Every write of what a
device's representation shows (spec, annotations, owner, conditions, status, rendered spec)
bumps its ``resource_version`` and ``updated_at``, so clients' cached versions are invalidated
and an optimistic write based on the old row gets its 409. A write that gives devices a new
rendered version announces it with ``pg_notify`` in the same transaction, which wakes exactly
those devices' waiting long-polls at commit (:data:`RENDER_CHANNEL`).

The one exception is :func:`write_last_seen`: ``last_seen`` is not part of the representation
(the reference never serialises it), and a heartbeat must not invalidate anything.
"""

from __future__ import annotations

import json

from django.db import connection
from django.db.models import F, Func, JSONField, Value
from django.db.models.expressions import RawSQL
from django.utils import timezone

from devices.models import Device

#: PostgreSQL NOTIFY channel on which renders are announced; payload "<org_id>/<name>/<version>"
#: ("<org_id>/<name>/" for a new console session: no new version, the waiter re-reads).
RENDER_CHANNEL = "flightctl_rendered"

#: What a per-row write may set: how its values travel in the ``unnest`` and how each is
#: assigned. JSON documents travel as text (dumped here) and are cast on assignment;
#: ``spec_changed`` and ``rendered`` are flags: the generation moves, the render time is taken.
_COLUMNS = {
    "spec": ("text", "spec = v.spec::jsonb"),
    "annotations": ("text", "annotations = v.annotations::jsonb"),
    "owner": ("text", "owner = v.owner"),
    "service_conditions": ("text", "service_conditions = v.service_conditions::jsonb"),
    "status_members": ("text",
                       "status = COALESCE(d.status, '{}'::jsonb) || v.status_members::jsonb"),
    "rendered_spec": ("text", "rendered_spec = v.rendered_spec::jsonb"),
    "rendered_version": ("bigint", "rendered_version = v.rendered_version"),
    "rendered_hash": ("text", "rendered_hash = v.rendered_hash"),
    "spec_changed": ("boolean",
                     "generation = d.generation + CASE WHEN v.spec_changed THEN 1 ELSE 0 END"),
    "rendered": ("boolean",
                 "rendered_at = CASE WHEN v.rendered THEN %(now)s ELSE d.rendered_at END"),
}
_JSON = frozenset({"spec", "annotations", "service_conditions", "status_members",
                   "rendered_spec"})


def write_each(rows: list[dict], *, notify: list[str] = ()) -> int:
    """Give each device its own values, in one ``UPDATE ... FROM unnest(...)``.

    ``rows`` are ``{"id": pk, column: value, ...}``, every row naming the same columns of
    :data:`_COLUMNS` (JSON documents as Python objects). ``notify`` lists the renders to
    announce (``<org_id>/<name>/<version>``). Returns how many rows were written.

    Raw SQL because the ORM cannot join an UPDATE to a list of values: ``bulk_update`` sends a
    ``CASE WHEN id = ...`` branch per row and column, a statement that grows with the page.
    """
    if not rows:
        return 0
    names = [name for name in rows[0] if name != "id"]
    params: dict = {"ids": [row["id"] for row in rows], "now": timezone.now()}
    arrays = ["%(ids)s::bigint[]"]
    for index, name in enumerate(names):
        values = [row[name] for row in rows]
        params[f"c{index}"] = [json.dumps(v) for v in values] if name in _JSON else values
        arrays.append(f"%(c{index})s::{_COLUMNS[name][0]}[]")
    assignments = ", ".join(_COLUMNS[name][1] for name in names)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE devices_device AS d SET {assignments},"
            f" resource_version = d.resource_version + 1, updated_at = %(now)s"
            f" FROM unnest({', '.join(arrays)}) AS v(id, {', '.join(names)})"
            f" WHERE d.id = v.id",
            params,
        )
        written = cursor.rowcount
        if notify:
            cursor.execute("SELECT pg_notify(%s, n) FROM unnest(%s::text[]) AS n",
                           [RENDER_CHANNEL, list(notify)])
    return written


def _write_all(queryset, **changes) -> int:
    return queryset.update(**changes, resource_version=F("resource_version") + 1,
                           updated_at=timezone.now())


def _merged(annotations: dict):
    return Func(F("annotations"), Value(annotations, output_field=JSONField()),
                function="", arg_joiner=" || ", output_field=JSONField())


def _without(key: str):
    # jsonb '-' removes the key and leaves every other annotation as it is.
    return RawSQL("annotations - %s", (key,), output_field=JSONField())


def merge_annotations(queryset, annotations: dict) -> int:
    """Add (or overwrite) ``annotations`` on every device of ``queryset``; how many."""
    return _write_all(queryset, annotations=_merged(annotations))


def remove_annotation(queryset, key: str) -> int:
    """Remove annotation ``key`` from every device of ``queryset`` (all others stay)."""
    return _write_all(queryset, annotations=_without(key))


def write_console_annotation(device: Device, key: str, value: str | None, *,
                             pending: bool) -> None:
    """Set annotation ``key`` of ``device`` to ``value`` (remove it for None); with
    ``pending``, also flag a console session its agent has not been handed yet and wake the
    device's long-poll at commit (devices.console)."""
    queryset = Device.objects.filter(pk=device.pk)
    changes = {"annotations": _without(key) if value is None else _merged({key: value})}
    if pending:
        changes["console_pending"] = True
    _write_all(queryset, **changes)
    if pending:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)",
                           [RENDER_CHANNEL, f"{device.org_id}/{device.name}/"])


def set_status_member(queryset, member: str, value) -> int:
    """Set one member of the status (e.g. ``updated``) on every device of ``queryset``."""
    return _write_all(queryset, status=RawSQL(
        "jsonb_set(COALESCE(status, '{}'::jsonb), %s::text[], %s::jsonb)",
        ("{" + member + "}", json.dumps(value)), output_field=JSONField()))


def notify_rendered(device: Device) -> None:
    """Announce ``device``'s current render; delivered at commit, so waiters never see an
    uncommitted spec."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, %s)",
            [RENDER_CHANNEL, f"{device.org_id}/{device.name}/{device.rendered_version}"],
        )


def write_last_seen(pending: dict[tuple, object]) -> None:
    """Refresh the last-seen times of ``{(org_id, name): when}`` in one statement; rows locked
    by someone else are skipped (see devices.services.LastSeenBuffer)."""
    orgs, names = zip(*pending.keys(), strict=True)
    with connection.cursor() as cursor:
        # Raw SQL: the ORM has no UPDATE ... FROM. GREATEST keeps a newer time written
        # meanwhile by a status report (record_agent_status writes last_seen itself).
        # Rows locked by someone else are skipped, not waited for: a status report
        # writes last_seen itself, and waiting made reports queue behind this statement
        # and deadlocked with the adoption pass, which locks its page in id order.
        cursor.execute(
            """
            WITH v AS (
                SELECT * FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[])
                    AS v(org, name, seen)
            ), free AS (
                SELECT d.id, v.seen FROM devices_device AS d
                JOIN v ON d.org_id = v.org AND d.name = v.name
                ORDER BY d.id FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE devices_device AS d SET last_seen = GREATEST(d.last_seen, free.seen)
            FROM free WHERE d.id = free.id
            """,
            [list(orgs), list(names), list(pending.values())],
        )
