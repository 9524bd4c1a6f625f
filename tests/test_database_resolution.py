"""Every command finds the database ``serve`` uses, and none guesses another one.

``manage.py`` and ``flightctl-server`` without ``FLIGHTCTL_DATABASE_URL`` use the embedded
PostgreSQL of the data directory; code that imports the settings with no database at all gets a
clear refusal, never a PostgreSQL that happens to listen on 127.0.0.1:5432 (this machine has
one: the tests' own).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def data_root():
    """A directory outside pytest's tmp_path: pytest runs of other checkouts on this machine
    reset /tmp/pytest-of-<user> to 0700, which locks out the embedded PostgreSQL's own user."""
    root = Path(tempfile.mkdtemp(prefix="fctl-db-resolution-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run(args, data_dir: Path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLIGHTCTL_", "DJANGO_"))}
    return subprocess.run(args, env={**clean, "FLIGHTCTL_DATA_DIR": str(data_dir), **env},
                          capture_output=True, text=True, timeout=180, cwd=CHECKOUT)


def test_manage_py_and_server_commands_use_the_embedded_database_of_the_data_dir(data_root):
    data = data_root / "data"
    migrate = run([sys.executable, "manage.py", "migrate", "-v", "0"], data)
    assert migrate.returncode == 0, migrate.stderr
    assert f"Embedded PostgreSQL running in {data / 'postgres'}" in migrate.stderr
    created = run([sys.executable, "manage.py", "createsuperuser", "--noinput", "--username",
                   "me", "--email", "me@example.com"], data)
    assert created.returncode == 0, created.stderr

    url = run([BIN / "flightctl-server", "db-url"], data)
    assert url.returncode == 0, url.stderr
    assert url.stdout.strip().endswith(f"/flightctl?host={data / 'postgres'}")
    assert "was not running" in url.stderr  # and says the URL needs a running server
    # The user manage.py created is in that database: the same one, not another.
    query = run([BIN / "flightctl-server", "dbshell", "-At", "-c",
                 "SELECT username FROM auth_user"], data)
    assert query.returncode == 0, query.stderr
    assert query.stdout.split() == ["me"]


def test_settings_without_a_database_refuse_to_connect(tmp_path):
    code = ("import django; django.setup(); from django.db import connection; "
            "connection.ensure_connection()")
    result = run([sys.executable, "-c", code], tmp_path,
                 DJANGO_SETTINGS_MODULE="flightctl.settings")
    assert result.returncode != 0
    assert "no database configured" in result.stderr
    assert "FLIGHTCTL_DATABASE_URL" in result.stderr
