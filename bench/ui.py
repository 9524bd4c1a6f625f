"""``python -m bench.ui --devices 100000``: how long the web console's pages take at scale.

Creates a database on the local PostgreSQL (``--database-url``, default 127.0.0.1:5432), loads
the inventory of bench/ui_data.py (devices as agents leave them, a fleet mid-rollout, pending
enrollment requests, events), then requests each page ``--repeat`` times through Django's
request handler in this process (view, queries and templates; no TLS or network) and prints
p50/p99 per page as a table and as JSON (docs/ui.md). The overview is timed with its device
summary counted on every request ("cold", the worst case) and from its 10-second cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from urllib.parse import urlencode

PAGES = {
    "device list": "/admin/devices/device/",
    "device list, label selector": "/admin/devices/device/?labelSelector=site%3Ds3",
    "device list, page 100": None,  # a continue token from deep in the list, found at run time
    "device page": "/admin/devices/device/dev-000007/",
    "overview (cold)": "/admin/",
    "overview (cached summary)": "/admin/",
    "fleet list": "/admin/fleets/fleet/",
    "fleet page": "/admin/fleets/fleet/edge/",
    "enrollment": "/admin/enrollment/enrollmentrequest/",
    "events": "/admin/flightctl/event/",
}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", help="also write the JSON report here")
    parser.add_argument("--keep", action="store_true", help="keep the database (to study it)")
    args = parser.parse_args(argv)

    import psycopg

    name = f"bench_ui_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = args.database_url.rsplit("/", 1)[0]
    os.environ["FLIGHTCTL_DATABASE_URL"] = f"{base}/{name}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flightctl.settings")
    try:
        return _run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep:
            print(f"kept database {name}", file=sys.stderr)
            return 0  # noqa: B012 - a kept database is the point of --keep
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(args) -> int:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from bench.ui_data import populate
    from ui import counts

    setup_test_environment()  # Client needs it; DEBUG stays off, so queries are not kept
    call_command("migrate", interactive=False, verbosity=0)
    started = time.monotonic()
    populate(args.devices)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    load_seconds = time.monotonic() - started
    user = get_user_model().objects.create_superuser("bench", password="-")
    client = Client(HTTP_HOST="localhost", secure=True)
    client.force_login(user)

    deep, token = client.get("/admin/devices/device/"), ""
    for _ in range(100):  # walk 100 pages (5,000 devices) into the list, or to its end
        if not deep.context["next_token"]:
            break
        token = deep.context["next_token"]
        deep = client.get("/admin/devices/device/", {"continue": token})
    PAGES["device list, page 100"] = "/admin/devices/device/?" + urlencode({"continue": token})

    report = {"devices": args.devices, "repeat": args.repeat,
              "load_seconds": round(load_seconds, 1), "pages": {}}
    for page, url in PAGES.items():
        times = []
        for attempt in range(args.repeat + 2):
            if page == "overview (cold)":
                counts.forget()
            t0 = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - t0) * 1000
            if response.status_code != 200:
                print(f"{page}: {url} answered {response.status_code}", file=sys.stderr)
                return 1
            if attempt >= 2:  # the first two warm the caches of the database and Django
                times.append(elapsed)
        report["pages"][page] = {"p50_ms": round(statistics.median(times), 1),
                                 "p99_ms": round(_percentile(times, 0.99), 1)}
    print(f"{'page':32} {'p50 ms':>8} {'p99 ms':>8}   ({args.devices} devices)")
    for page, figures in report["pages"].items():
        print(f"{page:32} {figures['p50_ms']:8.1f} {figures['p99_ms']:8.1f}")
    print(json.dumps(report))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
