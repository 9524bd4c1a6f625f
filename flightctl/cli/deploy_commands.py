"""One process per command, for deployments where a service manager supervises each one.

``serve`` runs everything in one supervised process tree on one host. A deployment with
systemd (deploy/quadlets/, docs/deploy.md) gives each process its own unit and container
instead, so each needs an entry point that does exactly one thing and then *is* that process
(``exec``): systemd and podman see the real server's exit status and signals.

- ``init-pki``: the CA, its client signer and the server certificate, created once in the data
  directory (or the operator's files taken as they are); safe to run on every start.
- ``migrate`` (in server.py): the schema, once across concurrent starts, never backwards.
- ``user-api``, ``agent-api``, ``worker``: the three long-running processes of ``serve``.
- ``healthcheck``: exit 0 when this host's user API is ready, for the image's HEALTHCHECK.

They all read the same configuration as ``serve`` (``$FLIGHTCTL_CONFIG``, e.g.
/etc/flightctl/config.yaml, and ``FLIGHTCTL_*``); they need an external ``database_url``
because the embedded PostgreSQL belongs to ``serve``'s supervision.
"""

from __future__ import annotations

import fcntl
import os
import socket
import ssl
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import click

from flightctl.cli.server import (
    _django_setup,
    _fail,
    _load_config,
    agent_api_command,
    agent_api_env,
    data_dir_option,
    main,
    server_tls,
    user_api_command,
)
from flightctl.config import parse_address


@contextmanager
def _pki_lock(data_dir: Path):
    """Held while the PKI is created: two processes starting together on a fresh volume must
    not each create a CA (the second would overwrite the key of the first one's certificates)."""
    path = Path(data_dir) / ".pki.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_pki(config):
    """The PKI and the served certificate and key, created on the first call; later calls
    change nothing (unless the server certificate's names changed or it nears expiry)."""
    from flightctl.pki import PKI

    with _pki_lock(config.data_dir):
        pki = PKI.from_config(config)
        cert_file, key_file = server_tls(config, pki)
    return pki, cert_file, key_file


def ensure_keys() -> None:
    """The data directory's other secrets, created once: Django's secret key (created when
    the settings load) and the key repository secrets are encrypted with."""
    _django_setup()
    from flightctl import sealing

    sealing._key()


def _external_database(config) -> None:
    if config.embedded_database:
        _fail("this command needs database_url (an external PostgreSQL): the embedded "
              "PostgreSQL runs only under `flightctl-server serve`")
    os.environ["FLIGHTCTL_DATABASE_URL"] = config.database_url


def _exec(argv: list[str], env: dict[str, str] | None = None):
    """Become ``argv`` (same PID: the service manager's signals reach the server itself)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, {**os.environ, **(env or {})})


@main.command("init-pki")
@data_dir_option
def init_pki(data_dir):
    """Create the CA, its signers, the server certificate and the data directory's keys unless
    they exist (or take the operator's files: ca_cert_file, tls_cert_file, ...)."""
    config = _load_config(data_dir)
    existed = (Path(config.data_dir) / "pki" / "ca-bundle.crt").exists()
    try:
        pki, cert_file, _ = ensure_pki(config)
        with _pki_lock(config.data_dir):
            ensure_keys()
    except (OSError, ValueError) as exc:
        _fail(f"could not prepare the PKI in {config.data_dir / 'pki'}: {exc}")
    state = "in place" if existed else "created"
    click.echo(f"PKI {state}: CA {pki.root.cert_path}, CA bundle {pki.bundle_path}, "
               f"server certificate {cert_file}", err=True)


@main.command("user-api")
@data_dir_option
def user_api(data_dir):
    """Run the user API (HTTPS on `address`) in the foreground."""
    config = _load_config(data_dir)
    _external_database(config)
    _, cert_file, key_file = ensure_pki(config)
    click.echo(f"Flight Control API on {config.user_api_url()}", err=True)
    _exec(user_api_command(config, cert_file, key_file))


@main.command("agent-api")
@data_dir_option
def agent_api(data_dir):
    """Run the agent API (mutual TLS on `agent_address`) in the foreground."""
    config = _load_config(data_dir)
    _external_database(config)
    pki, cert_file, key_file = ensure_pki(config)
    click.echo(f"Flight Control agent API on {config.agent_api_url()}", err=True)
    _exec(agent_api_command(config, cert_file, key_file, pki.bundle_path), agent_api_env())


@main.command()
@data_dir_option
def worker(data_dir):
    """Run the task workers (the django-q2 cluster) in the foreground."""
    config = _load_config(data_dir)
    _external_database(config)
    _django_setup()
    from flightctl.tasks import install_schedule

    # Idempotent; here rather than in `migrate` so that a worker started against a database
    # restored from elsewhere still gets its periodic chains.
    install_schedule()
    from django.db import connections

    connections.close_all()  # not inherited by the exec'd cluster
    _exec([sys.executable, "-m", "django", "qcluster"])


@main.command()
@data_dir_option
@click.option("--component", type=click.Choice(["user-api", "agent-api"]), default="user-api",
              show_default=True, help="user-api: /readyz answers 200 (its database is "
              "reachable); agent-api: its port accepts connections (it admits devices only).")
@click.option("--timeout", default=3.0, show_default=True, help="Seconds to wait for an answer.")
def healthcheck(data_dir, component, timeout):
    """Exit 0 when this host's API answers, else 1 with the reason."""
    config = _load_config(data_dir)
    if component == "agent-api":
        host, port = parse_address(config.agent_address)
        try:
            socket.create_connection(
                ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host, port), timeout).close()
        except OSError as exc:
            click.echo(f"unhealthy: agent API: {exc}", err=True)
            sys.exit(1)
        click.echo("ok")
        return
    host, port = parse_address(config.address)
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    # The server's own address: its certificate names the public host, not necessarily this
    # one, and what is checked here is that it answers, not who it is.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://{host}:{port}/readyz", timeout=timeout,
                                    context=context) as response:
            status = response.status
    except OSError as exc:
        click.echo(f"unhealthy: {exc}", err=True)
        sys.exit(1)
    if status != 200:
        click.echo(f"unhealthy: /readyz answered {status}", err=True)
        sys.exit(1)
    click.echo("ok")
