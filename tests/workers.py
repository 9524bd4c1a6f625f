"""Real task workers for tests: a ``django qcluster`` process on the test database.

Tests that use it need committed data (``django_db(transaction=True)``), since the worker is
another process with its own connection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager

from django.db import connection


def database_url() -> str:
    s = connection.settings_dict
    host = s["HOST"] or "127.0.0.1"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    if host.startswith("/"):
        return f"postgres://{auth}@/{s['NAME']}?host={host}"
    return f"postgres://{auth}@{host}:{s['PORT'] or 5432}/{s['NAME']}"


def _encryption_key():
    from repos.crypto import key_path

    return key_path()


@contextmanager
def task_workers(tmp_path, **settings):
    """Start a qcluster; ``settings`` become FLIGHTCTL_* variables (e.g. rollout_interval)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
    from django.conf import settings as django_settings

    # Same signing key as this process: django-q signs the task payloads it enqueues.
    env.update({"FLIGHTCTL_DATA_DIR": str(tmp_path), "FLIGHTCTL_DATABASE_URL": database_url(),
                "FLIGHTCTL_SECRET_KEY": django_settings.SECRET_KEY,
                "FLIGHTCTL_ENCRYPTION_KEY_FILE": str(_encryption_key()),
                "DJANGO_SETTINGS_MODULE": "flightctl.settings",
                "FLIGHTCTL_ROLLOUT_INTERVAL": "1s", "FLIGHTCTL_TASK_TIMEOUT": "10s"})
    env.update({f"FLIGHTCTL_{k.upper()}": str(v) for k, v in settings.items()})
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = open(tmp_path / "qcluster.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "django", "qcluster"], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
