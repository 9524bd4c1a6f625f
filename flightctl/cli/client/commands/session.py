"""Session commands: ``login``, ``config``, ``version`` and ``completion``.

``login`` checks the server (``GET /auth/config``), gets a token (``--token``; ``--web``: the
browser flow with PKCE through a provider; ``-u/-p``: the server's password issuer; see
flightctl/cli/client/logins.py), validates it (``GET /auth/validate``) and saves URL, trust
settings, token and refresh token in the client config.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import click

from flightctl import __version__
from flightctl.cli.client import config as client_config
from flightctl.cli.client import logins, output
from flightctl.cli.client.cli import Env, cli, common_options
from flightctl.cli.client.errors import CliError
from flightctl.cli.client.http import ApiClient, ApiError

NO_PROVIDER_HINT = ("this server has no login provider for usernames and passwords: create a "
                    "token on the server with 'flightctl-server create-token --username NAME' "
                    "and log in with --token")


def _credentials_file(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: must be a JSON object with token or username/password")
    return data


@cli.command()
@click.argument("url", required=False)
@click.option("-t", "--token", help="Bearer token (env FLIGHTCTL_TOKEN).")
@click.option("--credentials-file", type=click.Path(dir_okay=False),
              help="JSON file with token, or username and password (takes precedence).")
@click.option("-u", "--username", help="Username (env FLIGHTCTL_USERNAME).")
@click.option("-p", "--password", help="Password (env FLIGHTCTL_PASSWORD).")
@click.option("--provider", help="Authentication provider to log in with.")
@click.option("--show-providers", is_flag=True, help="List the server's login providers.")
@click.option("--web", is_flag=True, help="Log in through a browser (OAuth2/OIDC providers).")
@click.option("--no-browser", is_flag=True, help="With --web: print the URL instead.")
@click.option("--callback-port", type=int, default=8080, show_default=True,
              help="With --web: local port of the OAuth2 callback.")
@click.option("--certificate-authority", type=click.Path(dir_okay=False),
              help="CA certificate (PEM) that signed the server's certificate.")
@click.option("--auth-certificate-authority", type=click.Path(dir_okay=False),
              help="CA certificate of the authentication provider.")
@click.option("-k", "--insecure-skip-tls-verify", is_flag=True,
              help="Do not verify the server's certificate (insecure).")
@common_options
def login(env: Env, url, token, credentials_file, username, password, provider, show_providers,
          web, no_browser, callback_port, certificate_authority, auth_certificate_authority,
          insecure_skip_tls_verify):
    """Log in to the Flight Control server at URL and save the session."""
    previous = env.load_config(required=False)
    config = client_config.ClientConfig(path=env.config_path(), extra=previous.extra)
    config.server = (url or previous.server or "").rstrip("/")
    if not config.server:
        raise CliError("give the server URL: flightctl login https://HOST:3443 --token TOKEN")
    if not config.server.startswith(("https://", "http://")):
        config.server = "https://" + config.server
    config.organization = env.org or (previous.organization if not url else "")
    config.insecure_skip_tls_verify = insecure_skip_tls_verify
    if certificate_authority:
        try:
            pem = Path(certificate_authority).read_bytes()
        except OSError as exc:
            raise CliError(f"{certificate_authority}: cannot read: {exc.strerror}") from None
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise CliError(f"{certificate_authority}: not a PEM certificate")
        # Stored inline so the login keeps working if the file moves.
        config.certificate_authority_data = base64.b64encode(pem).decode()
    elif not url or url.rstrip("/") == previous.server:
        config.certificate_authority_data = previous.certificate_authority_data
        config.certificate_authority = previous.certificate_authority
    if auth_certificate_authority:
        config.auth_certificate_authority = str(Path(auth_certificate_authority).resolve())

    client = ApiClient(config, timeout=env.request_timeout)
    try:
        try:
            auth_config = client.get_json("auth/config", auth=False)
        except ApiError as exc:
            if exc.status != 418:  # 418: authentication is switched off on the server
                raise
            auth_config = None
        providers = (auth_config or {}).get("providers") or []
        if show_providers:
            rows = [[output.dig(p, "metadata", "name"), output.dig(p, "spec", "providerType"),
                     output.dig(p, "spec", "displayName")] for p in providers]
            click.echo(output.render_table(["NAME", "TYPE", "DISPLAY NAME"], rows)
                       if rows else "The server has no login providers; use --token.")
            return

        creds = _credentials_file(credentials_file) if credentials_file else {}
        token = creds.get("token") or token or os.environ.get(client_config.TOKEN_ENV)
        username = creds.get("username") or username or os.environ.get("FLIGHTCTL_USERNAME")
        password = creds.get("password") or password or os.environ.get("FLIGHTCTL_PASSWORD")
        if auth_config is None:
            config.token = token or ""
        elif token:
            client.request("GET", "auth/validate", token=token)
            config.token = token
        elif web or username or password or provider:
            if not providers:
                raise CliError(NO_PROVIDER_HINT)
            browser = web or not (username or password)
            chosen = logins.pick_provider(providers, provider,
                                          auth_config.get("defaultProvider") or "",
                                          browser=browser)
            if browser:
                answer = logins.browser_login(
                    client, chosen, port=callback_port, open_browser=not no_browser,
                    auth_verify=False if insecure_skip_tls_verify else (
                        config.auth_certificate_authority or True))
            elif not (username and password):
                raise CliError("give both -u USERNAME and -p PASSWORD")
            else:
                try:
                    answer = logins.password_login(client, chosen, username, password)
                except ApiError as exc:
                    if exc.status != 401:
                        raise
                    raise CliError("invalid username or password") from None
            logins.keep_tokens(config, answer, chosen)
            client.request("GET", "auth/validate", token=config.token)
        else:
            raise CliError("no credentials: pass --token TOKEN (or set FLIGHTCTL_TOKEN); "
                           + NO_PROVIDER_HINT.split(": ", 1)[1])
    finally:
        client.close()
    path = client_config.save(config)
    click.echo(f"Login successful: {config.server} (saved in {path})")


@cli.group("config")
def config_group():
    """Show or change the saved client configuration."""


@config_group.command("current-organization")
@common_options
def current_organization(env: Env):
    """Print the organization commands act in."""
    config = env.load_config()
    click.echo(config.organization or "<none> (the server picks your only organization)")


@config_group.command("set-organization")
@click.argument("organization")
@common_options
def set_organization(env: Env, organization):
    """Act in ORGANIZATION (a UUID, or '' to clear) from now on."""
    config = env.load_config()
    if organization:
        try:
            organization = str(uuid.UUID(organization))
        except ValueError:
            raise CliError(f'"{organization}" is not an organization id (a UUID)') from None
    config.organization = organization
    client_config.save(config)
    click.echo(f"Organization set to {organization or '<none>'}")


@cli.command()
@click.option("-o", "--output", "fmt", type=click.Choice(["json", "yaml"]),
              help="Print as JSON or YAML.")
@common_options
def version(env: Env, fmt):
    """Print the client and server versions."""
    info: dict = {"clientVersion": __version__}
    error = None
    try:
        answer = env.client.get_json("version") or {}
        info["serverVersion"] = answer.get("version", "")
    except CliError as exc:
        error = exc
    if fmt:
        output.emit(info, fmt)
    else:
        click.echo(f"Client Version: {info['clientVersion']}")
        if "serverVersion" in info:
            click.echo(f"Server Version: {info['serverVersion']}")
    if error is not None:
        raise CliError(f"cannot get the server version: {error.message}")


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish", "powershell"]))
def completion(shell):
    """Print the shell completion script: 'source <(flightctl completion bash)'."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:
        raise CliError(f"no completion for {shell}; bash, zsh and fish are supported")
    click.echo(cls(cli, {}, "flightctl", "_FLIGHTCTL_COMPLETE").source())
