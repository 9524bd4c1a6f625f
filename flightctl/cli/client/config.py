"""The client configuration: which server to talk to, how to trust it, and who we are.

It lives in ``client.yaml`` (or ``client_<context>.yaml`` with ``--context``) under the config
directory, ``$XDG_CONFIG_HOME/flightctl`` or ``~/.config/flightctl`` unless ``--config-dir`` or
``FLIGHTCTL_CONFIG_DIR`` says otherwise. The layout follows the reference client::

    service:
      server: https://flightctl.example.com:3443
      certificate-authority-data: <base64 PEM>     # or certificate-authority: /path/ca.crt
      insecure-skip-tls-verify: false
    authentication:
      token: <bearer token>
      refresh-token: <refresh token>               # logins through a provider (--web, -u/-p)
      access-token-expiry: "2026-01-01T12:00:00Z"  # refreshed shortly before this
      auth-provider: {name: corp, client-id: flightctl}
    organization: <uuid>                           # sent as org_id when set

``FLIGHTCTL_TOKEN`` overrides the stored token for one invocation (handy in scripts and CI).
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flightctl.cli.client.errors import CliError, yaml_problem

CONFIG_DIR_ENV = "FLIGHTCTL_CONFIG_DIR"
TOKEN_ENV = "FLIGHTCTL_TOKEN"


def default_config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "flightctl"


def config_path(config_dir: str | None = None, context: str | None = None) -> Path:
    """Where the config of ``context`` (``client.yaml`` for the default one) is kept."""
    directory = Path(config_dir or os.environ.get(CONFIG_DIR_ENV) or default_config_dir())
    name = f"client_{context}.yaml" if context else "client.yaml"
    return directory.expanduser() / name


@dataclass
class ClientConfig:
    """One server login: URL, trust settings, token and optional organization."""

    server: str = ""
    certificate_authority: str = ""  # path to a PEM file
    certificate_authority_data: str = ""  # base64 PEM, preferred: the file may move
    insecure_skip_tls_verify: bool = False
    token: str = ""
    organization: str = ""
    auth_certificate_authority: str = ""
    refresh_token: str = ""
    token_expiry: str = ""  # RFC 3339, UTC
    auth_provider: dict = field(default_factory=dict)  # {name, client-id}
    extra: dict = field(default_factory=dict)  # keys we do not manage, kept on save
    path: Path | None = None

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None) -> ClientConfig:
        data = dict(data or {})
        service = dict(data.pop("service", None) or {})
        auth = dict(data.pop("authentication", None) or {})
        return cls(
            server=str(service.pop("server", "") or "").rstrip("/"),
            certificate_authority=str(service.pop("certificate-authority", "") or ""),
            certificate_authority_data=str(service.pop("certificate-authority-data", "") or ""),
            insecure_skip_tls_verify=bool(service.pop("insecure-skip-tls-verify", False)),
            token=str(auth.pop("token", "") or ""),
            auth_certificate_authority=str(auth.pop("auth-certificate-authority", "") or ""),
            refresh_token=str(auth.pop("refresh-token", "") or ""),
            token_expiry=str(auth.pop("access-token-expiry", "") or ""),
            auth_provider=dict(auth.pop("auth-provider", None) or {}),
            organization=str(data.pop("organization", "") or ""),
            extra={"service": service, "authentication": auth, **data},
            path=path,
        )

    def to_dict(self) -> dict:
        extra = dict(self.extra)
        service = dict(extra.pop("service", {}) or {})
        auth = dict(extra.pop("authentication", {}) or {})
        service["server"] = self.server
        if self.certificate_authority_data:
            service["certificate-authority-data"] = self.certificate_authority_data
        elif self.certificate_authority:
            service["certificate-authority"] = self.certificate_authority
        if self.insecure_skip_tls_verify:
            service["insecure-skip-tls-verify"] = True
        if self.token:
            auth["token"] = self.token
        if self.auth_certificate_authority:
            auth["auth-certificate-authority"] = self.auth_certificate_authority
        if self.refresh_token:
            auth["refresh-token"] = self.refresh_token
        if self.token_expiry:
            auth["access-token-expiry"] = self.token_expiry
        if self.auth_provider:
            auth["auth-provider"] = self.auth_provider
        data = {"service": service, "authentication": auth}
        if self.organization:
            data["organization"] = self.organization
        data.update(extra)
        return data

    def ca_pem(self) -> bytes | None:
        """The CA bundle to verify the server with, or None for the system trust store."""
        if self.certificate_authority_data:
            try:
                return base64.b64decode(self.certificate_authority_data, validate=True)
            except ValueError as exc:
                raise CliError(f"{self.path}: certificate-authority-data is not base64") from exc
        if self.certificate_authority:
            try:
                return Path(self.certificate_authority).expanduser().read_bytes()
            except OSError as exc:
                raise CliError(f"cannot read the certificate authority "
                               f"{self.certificate_authority}: {exc.strerror}") from exc
        return None


def load(config_dir: str | None = None, context: str | None = None, *,
         required: bool = True) -> ClientConfig:
    """Read the config; without one, fail with the command that creates it."""
    path = config_path(config_dir, context)
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise CliError(f"not logged in (no {path}): run 'flightctl login URL --token TOKEN' "
                           "first") from None
        return ClientConfig(path=path)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {yaml_problem(exc)}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{path} must contain a mapping")
    config = ClientConfig.from_dict(data, path)
    env_token = os.environ.get(TOKEN_ENV)
    if env_token:
        config.token = env_token
    if required and not config.server:
        raise CliError(f"{path} names no server: run 'flightctl login URL' first")
    return config


def save(config: ClientConfig) -> Path:
    """Write the config atomically with mode 0600: it holds a bearer token."""
    path = config.path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".client-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

