"""``flightctl-server``: run and administer the control plane.

``serve`` is one supervising process: it prepares the database (embedded by default), applies
migrations, then runs the user API and the agent API (each under uvicorn) and the
django-q2 task cluster as children, and stops them all — and the embedded PostgreSQL — on
SIGTERM or SIGINT: the APIs first (waiting long-polls are answered at once), then the task
cluster, PostgreSQL last. A child that dies is restarted; one that keeps dying stops the set and
``serve`` exits non-zero so a service manager restarts it. If ``serve`` itself is killed, its
children die with it and the next ``serve`` kills any straggler before it binds a port
(flightctl/supervision.py).
"""

from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import click
import psycopg

from flightctl.config import LOG_LEVELS, ConfigError, load, parse_address
from flightctl.supervision import AlreadyRunning, RunLock, Supervisor

# Django, the models and the heavier modules are imported inside the commands that use them:
# Django can be set up only once the configuration is loaded and the database is there, and
# `--help` or `check-config` stay fast.
EXIT_CONFIG = 2


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _fail(message: str, code: int = 1):
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _load_config(data_dir: str | None, **overrides):
    for key, value in overrides.items():
        if value:
            os.environ[f"FLIGHTCTL_{key.upper()}"] = str(value)
    try:
        config = load(data_dir)
    except ConfigError as exc:
        _fail(f"invalid configuration:\n{exc}", EXIT_CONFIG)
    os.environ["FLIGHTCTL_DATA_DIR"] = str(config.data_dir)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return config


def server_log_level(level: str) -> str:
    """The level of uvicorn's own messages: they announce every process they
    boot and stop at INFO, so below debug only their warnings and errors are shown (``serve``
    prints the one line that says where the server listens)."""
    return level if level in ("debug", "error") else "warning"


def connections_needed(config) -> int:
    """Database connections the server's processes may hold at once, with room to spare: an
    agent API process pools up to 8 and keeps its LISTEN and version-check connections; a
    user API thread and a task worker hold one each. PostgreSQL's default (100) is the floor."""
    return max(100, 12 * config.agent_api_workers + config.workers * config.threads
               + 2 * config.task_workers + 40)


@contextmanager
def database(config, quiet: bool = False):
    """Yield with FLIGHTCTL_DATABASE_URL set; start/stop the embedded server when needed."""
    embedded = None
    if config.embedded_database:
        from flightctl.database import EmbeddedPostgres

        embedded = EmbeddedPostgres(config.data_dir)
        try:
            config.database_url = embedded.start(connections=connections_needed(config))
        except Exception as exc:  # surface initdb/start failures as one line
            _fail(f"could not start the embedded PostgreSQL in {embedded.pgdata}: {exc}")
        if not quiet:
            click.echo(f"Embedded PostgreSQL running in {embedded.pgdata}", err=True)
    os.environ["FLIGHTCTL_DATABASE_URL"] = config.database_url
    try:
        yield config.database_url
    finally:
        if embedded is not None:
            embedded.stop()


def _django_setup():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flightctl.settings")
    import django

    django.setup()


def _migrate(verbosity: int = 0) -> None:
    """Apply the migrations, once across every process starting at the same time; a database
    of a newer release is refused (flightctl/schema.py)."""
    from flightctl.schema import NewerSchema, migrate_exclusively

    try:
        migrate_exclusively(verbosity, on_wait=lambda: click.echo(
            "Waiting for another process's database migration", err=True))
    except NewerSchema as exc:
        _fail(f"refusing to start: {exc}")
    except Exception as exc:
        _fail(f"database migration failed: {str(exc).splitlines()[0]}")


def _set_role(username: str, role: str):
    """The user ``username`` (created if new) with ``role`` (admin: a superuser; others: the
    one ``flightctl-<role>`` group)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from flightctl.api.rbac import ROLES

    user, _ = get_user_model().objects.get_or_create(username=username)
    admin = role == "admin"
    user.is_staff = user.is_superuser = admin
    user.save(update_fields=["is_staff", "is_superuser"])
    user.groups.remove(*Group.objects.filter(name__in=[f"flightctl-{r}" for r in ROLES]))
    if not admin:
        user.groups.add(Group.objects.get_or_create(name=f"flightctl-{role}")[0])
    return user


def _issue_token(username: str, description: str, role: str = "admin") -> str:
    """A new token for ``username``, created with ``role`` if new; an existing user's role is
    set to ``role``."""
    from flightctl.models import ApiToken

    return ApiToken.issue(_set_role(username, role), description=description)


data_dir_option = click.option(
    "--data-dir",
    envvar="FLIGHTCTL_DATA_DIR",
    type=click.Path(file_okay=False),
    help="State directory (database, PKI, secrets). Env: FLIGHTCTL_DATA_DIR.",
)


@click.group()
@click.version_option(package_name="flightctl", prog_name="flightctl-server")
def main():
    """Flight Control server."""


@main.command()
@data_dir_option
@click.option("--wait-for-database", type=float, default=0, metavar="SECONDS",
              help="Retry connecting for this long first (a database starting beside it).")
def migrate(data_dir, wait_for_database):
    """Apply database migrations and exit (once, even when started concurrently)."""
    config = _load_config(data_dir)
    with database(config):
        _django_setup()
        if wait_for_database:
            from flightctl.schema import wait_for_database as wait

            try:
                wait(wait_for_database)
            except Exception as exc:
                _fail(f"the database did not answer within {wait_for_database:g}s: "
                      f"{str(exc).strip().splitlines()[-1]}")
        _migrate(verbosity=1)


@main.command("create-token")
@data_dir_option
@click.option("--username", required=True, help="User to issue the token for (created as an "
              "administrator if it does not exist).")
@click.option("--description", default="created by flightctl-server create-token")
@click.option("--role", type=click.Choice(["admin", "org-admin", "operator", "viewer",
                                           "installer"]), default="admin", show_default=True,
              help="The user's role (docs/api.md, Roles); sets it for an existing user too.")
def create_token(data_dir, username, description, role):
    """Print a new bearer token for USERNAME."""
    config = _load_config(data_dir)
    with database(config):
        _django_setup()
        _migrate()
        click.echo(_issue_token(username, description, role))


@main.command("create-user")
@data_dir_option
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "org-admin", "operator", "viewer",
                                           "installer"]), default="viewer", show_default=True,
              help="The user's role (docs/api.md, Roles); sets it for an existing user too.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input instead of prompting.")
def create_user(data_dir, username, role, password_stdin):
    """Create (or update) a local user who logs in to the web console with a password."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        _fail("the password must not be empty")
    config = _load_config(data_dir)
    with database(config):
        _django_setup()
        _migrate()
        user = _set_role(username, role)
        user.set_password(password)
        user.save(update_fields=["password"])
    click.echo(f"User {username!r} ({role}) can log in at {config.user_api_url()}/admin/")


@main.command()
@data_dir_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Archive to write (mode 0600: it holds private keys).")
def backup(data_dir, output):
    """Write the database and the data directory's keys to one archive."""
    from flightctl import __version__
    from flightctl.backup import BackupError
    from flightctl.backup import backup as write_backup

    config = _load_config(data_dir)
    with database(config) as url:
        try:
            manifest = write_backup(url, config.data_dir, Path(output), __version__)
        except (BackupError, OSError) as exc:
            _fail(str(exc))
        except psycopg.Error as exc:
            _fail(f"cannot use the database: {_first_line(exc)}")
    click.echo(f"Backup written to {output} ({len(manifest['sha256'])} files)")


@main.command()
@data_dir_option
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
def restore(data_dir, archive):
    """Restore ARCHIVE (from `backup`) with the server stopped, then run post-restore."""
    from flightctl.backup import BackupError
    from flightctl.backup import restore as read_backup

    config = _load_config(data_dir)
    with database(config) as url:
        try:
            manifest = read_backup(url, config.data_dir, Path(archive))
        except (BackupError, OSError) as exc:
            _fail(str(exc))
        except psycopg.Error as exc:
            _fail(f"cannot use the database: {_first_line(exc)}")
        click.echo(f"Restored the backup of {manifest['created']}", err=True)
        _mark_restored()


@main.command("post-restore")
@data_dir_option
def post_restore(data_dir):
    """Run once after restoring the database by other means than `restore`, before serving:
    every device awaits its reconnection and nothing is rendered for it until it called in."""
    config = _load_config(data_dir)
    with database(config):
        _mark_restored()


def _mark_restored() -> None:
    _django_setup()
    _migrate()  # a backup from an older release gets this release's schema
    from flightctl.backup import run_restored_hooks  # the apps register them once set up

    for line in run_restored_hooks():
        click.echo(line)


@main.command("check-config")
@data_dir_option
def check_config(data_dir):
    """Validate the configuration and print the effective settings."""
    config = _load_config(data_dir)
    for key, value in sorted(vars(config).items()):
        if key not in ("secret_key", "oidc_client_secret"):
            click.echo(f"{key}: {value}")


def _bootstrap_admin_token(config) -> None:
    """On a fresh installation, create user ``admin`` and show its token once."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from flightctl.pki import write_private
    from flightctl.schema import MIGRATION_LOCK

    with transaction.atomic():
        # Nodes of several hosts may make their first start on one database together: the
        # lock (the migrations' own, held until the transaction ends) lets one create admin.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        if get_user_model().objects.exists():
            return
        token = _issue_token("admin", "bootstrap token of the first start")
    path = Path(config.data_dir) / "admin-token"
    write_private(path, (token + "\n").encode())
    click.echo(f"Created user 'admin'. Its API token (also saved in {path}, mode 0600):\n"
               f"  {token}", err=True)


def user_api_command(config, cert_file, key_file) -> list[str]:
    """The command line of the user API server: uvicorn running flightctl.asgi (Django
    behind a thread pool, and the WebSocket routes) on ``config.address`` with TLS, in
    ``config.workers`` processes of ``config.threads`` request threads each."""
    host, port = parse_address(config.address)
    argv = [sys.executable, "-m", "uvicorn", "flightctl.asgi:application",
            "--host", host, "--port", str(port),
            "--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file),
            "--workers", str(config.workers), "--ws", "websockets-sansio", "--lifespan", "off",
            "--log-level", server_log_level(config.log_level),
            # A stop must end within seconds: a console WebSocket does not hold it up longer.
            "--timeout-graceful-shutdown", "3",
            # Only these proxies may name the client (X-Forwarded-For): the address rate
            # limits count by (flightctl/api/ratelimit.py). None by default, not loopback.
            "--forwarded-allow-ips", ",".join(config.rate_limit_trusted_proxies)]
    if config.log_level != "debug":
        argv.append("--no-access-log")
    return argv


def server_tls(config, pki) -> tuple[str, str]:
    """The certificate and key both APIs serve: the operator's files when configured, else
    the PKI's own server certificate (issued on the first call, reissued when the SANs change
    or it nears expiry)."""
    if config.tls_cert_file:
        return config.tls_cert_file, config.tls_key_file
    cert_file, key_file = pki.server_certificate("server", config.alt_names)
    return str(cert_file), str(key_file)


def agent_api_command(config, cert_file, key_file, ca_bundle) -> list[str]:
    """The command line of the agent API server (mutual TLS against the CA bundle)."""
    host, port = parse_address(config.agent_address)
    return [sys.executable, "-m", "agent_api", "--host", host, "--port", str(port),
            "--certfile", str(cert_file), "--keyfile", str(key_file),
            "--ca-certs", str(ca_bundle), "--log-level", server_log_level(config.log_level),
            "--workers", str(config.agent_api_workers)]


def agent_api_env() -> dict[str, str]:
    """Environment the agent API runs with. Status writes run in short-lived threads; glibc
    gives threads their own malloc arenas (8 per core), which kept freed memory of thousands of
    requests resident."""
    return {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}


@main.command()
@data_dir_option
@click.option("--address", envvar="FLIGHTCTL_ADDRESS", help="User API HOST:PORT "
              "(default 0.0.0.0:3443). Env: FLIGHTCTL_ADDRESS.")
@click.option("--agent-address", envvar="FLIGHTCTL_AGENT_ADDRESS", help="Agent API HOST:PORT "
              "(default 0.0.0.0:7443). Env: FLIGHTCTL_AGENT_ADDRESS.")
@click.option("--workers", type=int, envvar="FLIGHTCTL_WORKERS", help="Worker processes "
              "of the user API (default 2).")
# No envvar here: the configuration reads FLIGHTCTL_LOG_LEVEL and reports a bad value along
# with every other problem of the configuration.
@click.option("--log-level", type=click.Choice(LOG_LEVELS),
              help="info (default): starts, failures and significant events; debug: also "
              "every task, request and server message. Env: FLIGHTCTL_LOG_LEVEL.")
def serve(data_dir, address, agent_address, workers, log_level):
    """Run the API servers and the task workers until SIGTERM/SIGINT."""
    config = _load_config(data_dir, address=address, agent_address=agent_address,
                          workers=workers, log_level=log_level)
    lock = RunLock(config.data_dir)
    try:
        # Before the database: a second serve is refused without touching (or stopping) the
        # database the first one runs on, and a killed one's stragglers free their ports.
        killed = lock.acquire()
    except AlreadyRunning as exc:
        _fail(str(exc))
    if killed:
        click.echo(f"Stopped {len(killed)} processes a previous serve left behind", err=True)
    try:
        code = _serve(config, lock)
    finally:
        lock.release()  # after the database has stopped
    sys.exit(code)


def _accepts(address: str) -> bool:
    host, port = parse_address(address)
    try:
        socket.create_connection((host if host not in ("0.0.0.0", "::", "") else "127.0.0.1",
                                  port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _serve(config, lock: RunLock) -> int:
    """Prepare the database, run the children until a signal, stop them; the exit code."""
    from flightctl.pki import PKI

    pki = PKI.from_config(config)  # creates the CA and its signers on the first start
    cert_file, key_file = server_tls(config, pki)
    with database(config):
        _django_setup()
        _migrate()
        _bootstrap_admin_token(config)
        from flightctl.tasks import install_schedule

        install_schedule()  # periodic jobs: seed their chains and the watchdog schedule
        supervisor = Supervisor(config.data_dir, lambda text: click.echo(text, err=True), lock)
        # Devices first: on a restart, their agent API competes with the other children for
        # the CPU while every one of them imports Django.
        supervisor.spawn("agent-api", agent_api_command(config, cert_file, key_file,
                                                        pki.bundle_path),
                         env=agent_api_env())
        supervisor.spawn("api", user_api_command(config, cert_file, key_file))
        # The task cluster once both APIs answer (10 s at most): a restart after a crash is
        # what devices and users wait for, and four processes importing Django at once on a
        # small machine took a second or two longer each. It is stopped after the APIs,
        # whose requests may still enqueue tasks while they drain.
        supervisor.wait_for(lambda: _accepts(config.address) and _accepts(config.agent_address),
                            10)
        supervisor.spawn("tasks", [sys.executable, "-m", "django", "qcluster"], phase=1)
        click.echo(f"Flight Control API on {config.user_api_url()} "
                   f"(CA: {Path(config.data_dir) / 'pki' / 'ca.crt'}), agent API on "
                   f"{config.agent_api_url()}", err=True)
        try:
            return supervisor.run()
        finally:
            supervisor.terminate()  # a no-op after a normal run; kills all on an exception


# Commands kept in modules of their own register themselves on ``main``.
import flightctl.cli.cluster_commands  # noqa: E402, F401, I001
from flightctl.cli import database_commands  # noqa: E402, F401, I001
from flightctl.cli import deploy_commands  # noqa: E402, F401

if __name__ == "__main__":
    main()
