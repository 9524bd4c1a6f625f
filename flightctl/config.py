"""Server configuration: one validated object built from a YAML file and FLIGHTCTL_* variables.

Every setting has one name used in three places: the YAML key (``database_url``), the
environment variable (``FLIGHTCTL_DATABASE_URL``) and the attribute of :class:`Config`. The
environment wins over the file, the file over the defaults. Scripts and monitoring depend on
these names, so they are part of the product's interface: add new ones, never rename.

The file is ``$FLIGHTCTL_CONFIG`` if set, else ``<data dir>/config.yaml`` if it exists.
Validation happens once at start-up and fails with one precise line per problem.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import yaml

ENV_PREFIX = "FLIGHTCTL_"
_DURATION_RE = re.compile(r"^(\d+)(ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
LOG_LEVELS = ("debug", "info", "warning", "error")
SYNCHRONOUS_COMMIT = ("off", "local", "remote_write", "on", "remote_apply")


class ConfigError(ValueError):
    """Raised with every problem found in the configuration, one per line."""


def default_data_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. about an unset XDG_RUNTIME_DIR: not ours

        return Path(platformdirs.user_data_dir("flightctl", appauthor=False))


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``5m``, ``30s`` or ``1h``."""
    match = _DURATION_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 30s, 5m, 1h)")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_rate(text: str) -> tuple[int, float] | None:
    """``REQUESTS/WINDOW`` (``20/1m``) as ``(requests, seconds)``; None when empty (off)."""
    if not str(text or "").strip():
        return None
    count, sep, window = str(text).strip().partition("/")
    if not sep or not count.isdigit() or int(count) < 1:
        raise ValueError(f"invalid rate {text!r} (expected REQUESTS/WINDOW, e.g. 20/1m)")
    seconds = parse_duration(window)
    if seconds < 1:
        raise ValueError(f"invalid rate {text!r}: the window must be at least 1s")
    return int(count), seconds


def parse_address(text: str, any_port: bool = False) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) into its parts, validated; with ``any_port``
    port 0 (any free one) is allowed."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not (0 if any_port else 1) <= int(port) < 65536:
        raise ValueError(f"invalid address {text!r} (expected HOST:PORT, e.g. 0.0.0.0:3443)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@dataclass
class Config:
    """The server's settings after defaults, file and environment have been merged."""

    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str = ""
    address: str = "0.0.0.0:3443"
    agent_address: str = "0.0.0.0:7443"
    # What users and devices are told to connect to; derived from the addresses when empty.
    base_url: str = ""
    agent_endpoint: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    alt_names: list[str] = field(default_factory=list)
    # Device identity: an operator-provided root CA (else created in <data dir>/pki), the TPM
    # manufacturer CA certificates EK certificates must chain to, and how long a device's
    # GET /rendered long-poll waits for a new render before answering 204.
    ca_cert_file: str = ""
    ca_key_file: str = ""
    tpm_ca_files: list[str] = field(default_factory=list)
    rendered_wait_timeout: str = "120s"
    workers: int = 2
    threads: int = 4
    task_workers: int = 1
    # Agent API processes sharing its socket. Each runs one event loop that holds its share of
    # the idle long-polls; two let status writes use both cores (docs/scale.md).
    agent_api_workers: int = 2
    log_level: str = "info"
    device_disconnected_timeout: str = "5m"
    event_retention: str = "168h"
    # Task queue: a task not acknowledged this long after delivery is delivered again (its
    # worker is presumed dead); periodic jobs run at these intervals, once cluster-wide.
    task_timeout: str = "120s"
    rollout_interval: str = "30s"
    # Devices per second a fleet-wide rollout renders (and so wakes): paced below what the
    # agent API serves, each device gets its new spec at once instead of queueing (scale.md).
    rollout_dispatch_rate: int = 120
    connectivity_interval: str = "2m"
    event_cleanup_interval: str = "10m"
    secret_key: str = ""
    # Repositories and GitOps (docs/gitops.md): how often repositories are tested, ResourceSyncs
    # re-read and git/http dependencies of device configuration probed for new content.
    repository_check_interval: str = "2m"
    resource_sync_interval: str = "2m"
    dependency_sync_interval: str = "3m"
    # Repository secrets are encrypted with this key (created 0600 when missing); every server
    # process of one installation must see the same file. Default: <data dir>/encryption.key.
    encryption_key_file: str = ""
    # Host keys git-over-SSH repositories are checked against. Default: <data dir>/ssh/known_hosts.
    ssh_known_hosts_file: str = ""
    # Single sign-on (flightctl/api/oidc.py): JWTs of this OpenID Connect issuer are accepted
    # as bearer tokens, for this client id (the tokens' audience), with these claims.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    # Only for an issuer that registers the web console as a confidential client; a public
    # client (the default) proves itself with PKCE alone (docs/ui.md, Single sign-on).
    oidc_client_secret: str = ""
    oidc_username_claim: str = "preferred_username"
    oidc_roles_claim: str = "groups"
    # Alerts (docs/configuration.md, "Monitoring"): device problems recorded as events are
    # sent to this Alertmanager (empty: no alerts) every alert_polling_interval.
    alertmanager_url: str = ""
    alert_polling_interval: str = "1m"
    # Remote consoles (docs/api.md, "Remote console"): how long a user's WebSocket waits for
    # the device to connect its end; where the user API process holding a WebSocket listens
    # for the agent API process carrying the device's end (port 0: any free port), and the
    # address it tells that process (default: the one it listens on). Loopback unless the
    # agent API runs on other hosts; the bridge is not encrypted, keep it on a private network.
    console_session_timeout: str = "60s"
    console_bridge_address: str = "127.0.0.1:0"
    console_bridge_advertise: str = ""
    # Logins (docs/auth.md): how long a process trusts its cached copy of the AuthProvider
    # table before checking its version; the bundled password issuer ("local", backed by the
    # local users) and the lifetimes of the tokens it issues.
    auth_provider_cache_ttl: str = "5s"
    password_login: bool = True
    password_token_ttl: str = "1h"
    password_refresh_token_ttl: str = "720h"
    # Rate limits (docs/auth.md), REQUESTS/WINDOW per client address and per user where
    # known, counted in PostgreSQL so they hold across processes; empty switches one off.
    # Login and token endpoints; failed passwords per user name and address; the rest of the
    # user API.
    auth_rate_limit: str = "20/1m"
    login_failure_limit: str = "5/15m"
    api_rate_limit: str = ""
    # PostgreSQL's synchronous_commit for what agents send again anyway (status reports and
    # last-seen times): "off" (the default) acknowledges before the commit is on disk, so a
    # database crash or failover can lose the last moments of these (the next report restores
    # them); "on" or "remote_write" with a synchronous standby keeps every acknowledged one
    # across a failover (docs/deploy-multihost.md). Every other write uses the server's setting.
    status_synchronous_commit: str = "off"
    # Peers whose True-Client-IP / X-Real-IP / X-Forwarded-For name the client (CIDRs).
    rate_limit_trusted_proxies: list[str] = field(default_factory=list)
    # JSON pointers ResourceSync drops from fleet manifests, keeping the server's value instead.
    resource_sync_ignore: list[str] = field(
        default_factory=lambda: ["/metadata/resourceVersion"])
    # Hosts a Repository may send credentials to over plain http:// (repos/guards.py); any
    # other host needs https. Loopback by default: that traffic never leaves the machine.
    plain_http_credential_hosts: list[str] = field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"])
    # Enrollment admission (docs/scale.md): in each agent API process at most this many
    # enrollment calls run at once and this many more wait their turn; beyond that a call is
    # answered 503 with Retry-After (agents retry). An enrollment storm then gets a bounded
    # share of the threads, database connections and CPU that connected devices need.
    enrollment_concurrency: int = 2
    enrollment_queue: int = 200
    # New enrollment requests a second across a host's agent API (paced in each process at its
    # share): an enrollment's approval, signing and first render follow its request, so this
    # bounds a storm's CPU, not just its concurrency (docs/scale.md). The default is the
    # goal's rate (100/s); a small host keeps its connected devices' tails with less (on 2
    # shared cores, 20).
    enrollment_rate: int = 100
    # The pace of new enrollment requests adapts, up to enrollment_rate: each agent API
    # process cuts its rate while its status reports (or its event loop's wake-ups) take
    # longer than this many milliseconds, and raises it while they do not (agent_api/
    # admission.py). Below the devices' goal (p99 < 500 ms), which includes their side.
    enrollment_latency_target: int = 150

    @property
    def disconnected_timeout_seconds(self) -> float:
        return parse_duration(self.device_disconnected_timeout)

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    def public_host(self) -> str:
        host, _ = parse_address(self.address)
        return "localhost" if host in ("0.0.0.0", "::") else host

    def user_api_url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"https://{self.public_host()}:{parse_address(self.address)[1]}"

    def agent_api_url(self) -> str:
        if self.agent_endpoint:
            return self.agent_endpoint.rstrip("/")
        return f"https://{self.public_host()}:{parse_address(self.agent_address)[1]}"


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, raw, problems: list[str], source: str):
    kind = _FIELDS[name].type
    try:
        if kind == "int":
            value = int(raw)
            if value < 1:
                raise ValueError("must be at least 1")
            return value
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return str(raw).lower() in ("1", "true", "yes", "on")
            raise ValueError("must be true or false")
        if kind == "list[str]":
            if isinstance(raw, str):
                return [part.strip() for part in raw.split(",") if part.strip()]
            if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
                return raw
            raise ValueError("must be a list of strings")
        if kind == "Path":
            return Path(os.path.expanduser(str(raw)))
        if not isinstance(raw, (str, int, float)):
            raise ValueError("must be a string")
        return str(raw)
    except (TypeError, ValueError) as exc:
        problems.append(f"{source}: {exc}")
        return _FIELDS[name].default


def _validate(config: Config, problems: list[str]) -> None:
    for name in ("address", "agent_address", "console_bridge_address"):
        try:
            host, _ = parse_address(getattr(config, name),
                                    any_port=name == "console_bridge_address")
            if host not in ("localhost",) and not re.match(r"^[A-Za-z0-9.-]+$", host):
                ipaddress.ip_address(host)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    for name in ("device_disconnected_timeout", "event_retention", "task_timeout",
                 "rollout_interval", "connectivity_interval", "event_cleanup_interval",
                 "repository_check_interval", "resource_sync_interval",
                 "dependency_sync_interval", "alert_polling_interval",
                 "console_session_timeout", "auth_provider_cache_ttl", "password_token_ttl",
                 "password_refresh_token_ttl"):
        try:
            parse_duration(getattr(config, name))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    for name in ("auth_rate_limit", "login_failure_limit", "api_rate_limit"):
        try:
            parse_rate(getattr(config, name))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    for value in config.rate_limit_trusted_proxies:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            problems.append(f"rate_limit_trusted_proxies: {exc}")
    if config.status_synchronous_commit not in SYNCHRONOUS_COMMIT:
        allowed = ", ".join(SYNCHRONOUS_COMMIT)
        problems.append(f"status_synchronous_commit: must be one of {allowed}, "
                        f"not {config.status_synchronous_commit!r}")
    if config.log_level.lower() not in LOG_LEVELS:
        allowed = ", ".join(LOG_LEVELS)
        problems.append(f"log_level: must be one of {allowed}, not {config.log_level!r}")
    if config.enrollment_concurrency < 1 or config.enrollment_queue < 0:
        problems.append("enrollment_concurrency must be at least 1 and enrollment_queue at "
                        "least 0")
    if config.enrollment_rate < 1:
        problems.append("enrollment_rate must be at least 1 (new enrollment requests a second)")
    if config.enrollment_latency_target < 1:
        problems.append("enrollment_latency_target must be at least 1 (milliseconds)")
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        problems.append("tls_cert_file and tls_key_file must be given together")
    if bool(config.ca_cert_file) != bool(config.ca_key_file):
        problems.append("ca_cert_file and ca_key_file must be given together")
    for name in ("tls_cert_file", "tls_key_file", "ca_cert_file", "ca_key_file"):
        value = getattr(config, name)
        if value and not Path(value).is_file():
            problems.append(f"{name}: no such file: {value}")
    for value in config.tpm_ca_files:
        if not Path(value).is_file():
            problems.append(f"tpm_ca_files: no such file: {value}")
    try:
        parse_duration(config.rendered_wait_timeout)
    except ValueError as exc:
        problems.append(f"rendered_wait_timeout: {exc}")
    if config.database_url and not re.match(r"^postgres(ql)?://", config.database_url):
        problems.append("database_url: must be a postgres:// or postgresql:// URL (PostgreSQL is "
                        "the only supported database)")
    if config.console_bridge_advertise:
        try:
            parse_address(config.console_bridge_advertise, any_port=True)
        except ValueError as exc:
            problems.append(f"console_bridge_advertise: {exc}")
    for name in ("base_url", "agent_endpoint", "alertmanager_url", "oidc_issuer"):
        value = getattr(config, name)
        if value and not re.match(r"^https?://[^/\s]+", value):
            problems.append(f"{name}: must be an http(s) URL, not {value!r}")


def load(data_dir: str | os.PathLike | None = None, environ=None) -> Config:
    """Build the configuration; raises :class:`ConfigError` listing every problem."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    values: dict = {}

    dir_value = data_dir or environ.get(ENV_PREFIX + "DATA_DIR")
    if dir_value:
        values["data_dir"] = Path(os.path.expanduser(str(dir_value)))
    base_dir = values.get("data_dir") or default_data_dir()

    config_file = environ.get(ENV_PREFIX + "CONFIG")
    path = Path(config_file) if config_file else base_dir / "config.yaml"
    if config_file and not path.is_file():
        problems.append(f"FLIGHTCTL_CONFIG: no such file: {config_file}")
    elif path.is_file():
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}".splitlines()[0])
        if not isinstance(document, dict):
            raise ConfigError(f"{path}: must be a mapping of setting names to values")
        for key, raw in document.items():
            name = str(key).replace("-", "_")
            if name not in _FIELDS:
                problems.append(f"{path}: unknown setting {key!r}")
            elif name != "data_dir" or "data_dir" not in values:
                values[name] = _coerce(name, raw, problems, f"{path}: {key}")

    for name in _FIELDS:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and name != "data_dir":
            values[name] = _coerce(name, raw, problems, ENV_PREFIX + name.upper())

    config = Config(**values)
    _validate(config, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    return config
