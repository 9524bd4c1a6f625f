"""The ``flightctl`` click group, the options most commands share, and the error boundary.

Commands receive an :class:`Env`: the shared options of this invocation (``--org``,
``--context``, ``--config-dir``, ``--request-timeout``) and a lazily built API client.
:func:`main` turns every failure into one ``Error: ...`` line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import os
import sys

import click

from flightctl.cli.client import config as client_config
from flightctl.cli.client.errors import CliError
from flightctl.cli.client.http import ApiClient


class Env:
    """The shared options of one invocation and the API client built from them."""

    def __init__(self, org: str | None = None, context: str | None = None,
                 config_dir: str | None = None, request_timeout: float | None = None):
        self.org = org
        self.context = context
        self.config_dir = config_dir
        self.request_timeout = request_timeout
        self._client: ApiClient | None = None

    def load_config(self, required: bool = True) -> client_config.ClientConfig:
        return client_config.load(self.config_dir, self.context, required=required)

    def config_path(self):
        return client_config.config_path(self.config_dir, self.context)

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient(self.load_config(), timeout=self.request_timeout,
                                     organization=self.org)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def common_options(fn):
    """Add the shared options to a command and pass it an :class:`Env` first."""

    @click.option("--org", "org", metavar="UUID", help="Organization to act in (sets org_id).")
    @click.option("-c", "--context", metavar="NAME",
                  help="Use the login saved as client_NAME.yaml.")
    @click.option("--config-dir", metavar="DIR", envvar=client_config.CONFIG_DIR_ENV,
                  help="Directory of the client config (default ~/.config/flightctl).")
    @click.option("--request-timeout", type=click.FloatRange(min=0.1), metavar="SECONDS",
                  help="Give up on a request after this many seconds (default 30).")
    @functools.wraps(fn)
    def wrapper(*args, org, context, config_dir, request_timeout, **kwargs):
        env = Env(org, context, config_dir, request_timeout)
        try:
            return fn(env, *args, **kwargs)
        finally:
            env.close()

    return wrapper


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
def cli():
    """flightctl: manage Flight Control devices, fleets and enrollment from the command line.

    Log in once with 'flightctl login URL --token TOKEN'; the session is kept in
    ~/.config/flightctl/client.yaml.
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, never show a traceback for a failure."""
    # Importing the commands registers them on ``cli``; done here to keep ``import
    # flightctl.cli.client`` cheap.
    from flightctl.cli.client import commands  # noqa: F401

    try:
        code = cli.main(args=argv, prog_name="flightctl", standalone_mode=False)
    except CliError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(exc.code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # ``flightctl get devices | head``: the reader left; that is not an error.
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:  # the last line of defence: still one line, no traceback
        if os.environ.get("FLIGHTCTL_DEBUG"):
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(f"Error: unexpected {type(exc).__name__}: {message} "
                   "(set FLIGHTCTL_DEBUG=1 for details)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int = 1):
    raise CliError(message, code)
