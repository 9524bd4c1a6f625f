"""``flightctl-server db-url`` and ``dbshell``, and the database of ``manage.py``.

Every command of the server resolves its database the way ``serve`` does: the configured
``database_url``, else the embedded PostgreSQL in ``<data dir>/postgres``, started if it is not
running (and stopped again when the command ends, unless ``serve`` still uses it: the wheel
counts the processes using it). Nothing falls back to a PostgreSQL that happens to listen on
127.0.0.1:5432.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from flightctl.cli.server import _fail, _load_config, data_dir_option, database, main


@contextmanager
def configured_database(data_dir: str | None = None, quiet: bool = False):
    """The configuration with FLIGHTCTL_DATABASE_URL set for this process and its children."""
    config = _load_config(data_dir)
    running = _embedded_running(config.data_dir) if config.embedded_database else True
    with database(config, quiet=quiet) as url:
        yield config, url, running


def _embedded_running(data_dir: Path) -> bool:
    return (Path(data_dir) / "postgres" / "postmaster.pid").exists()


@main.command("db-url")
@data_dir_option
def db_url(data_dir):
    """Print the URL of the server's PostgreSQL (embedded: a Unix socket in the data
    directory, valid while `serve` runs)."""
    with configured_database(data_dir, quiet=True) as (config, url, running):
        click.echo(url)
        if not running:
            click.echo("Note: the embedded PostgreSQL was not running and stops again now; "
                       "this URL works while `flightctl-server serve` (or `dbshell`) runs.",
                       err=True)


@main.command("dbshell", context_settings={"ignore_unknown_options": True})
@data_dir_option
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def dbshell(data_dir, psql_args):
    """Open psql on the server's database (extra arguments go to psql, e.g. -c 'SELECT 1')."""
    from flightctl.backup import BackupError, _server_major, client_tool

    with configured_database(data_dir, quiet=True) as (config, url, _):
        try:
            psql = client_tool("psql", _server_major(url))
        except BackupError as exc:
            _fail(str(exc))
        code = subprocess.call([psql, url, *psql_args])
    sys.exit(code)


def run_with_database(argv: list[str]) -> None:
    """``manage.py``: run a Django management command on the server's own database."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flightctl.settings")
    from django.core.management import execute_from_command_line

    with configured_database(os.environ.get("FLIGHTCTL_DATA_DIR")):
        execute_from_command_line(argv)
