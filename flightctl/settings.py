"""Django settings, derived entirely from :mod:`flightctl.config`.

Nothing here is meant to be edited per deployment: operators set FLIGHTCTL_* variables or the
YAML file, which are validated at start-up. With no ``database_url`` the ``flightctl-server``
command starts an embedded PostgreSQL and passes its URL down to the processes it spawns; a bare
``manage.py`` without a URL talks to the PostgreSQL on 127.0.0.1:5432 (the developer default).
"""

from __future__ import annotations

import os
import secrets
import warnings
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
DEVELOPER_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"


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
    host = query.pop("host", [parsed.hostname or ""])[0]
    options = {key: values[0] for key, values in query.items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or "postgres"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": "test_flightctl"},
    }


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
    # gunicorn included: no separate web server to configure.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "flightctl.api.middleware.ApiVersionMiddleware",
    "flightctl.api.middleware.SecurityHeadersMiddleware",
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

DATABASES = {"default": database_from_url(CONFIG.database_url or DEVELOPER_DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
# WhiteNoise serves the apps' static directories as found at start-up, so no collectstatic
# step is needed before `serve`.
WHITENOISE_USE_FINDERS = True
# ... and STATIC_ROOT only exists once someone ran collectstatic: no warning for its absence.
warnings.filterwarnings("ignore", message="No directory at")
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
        "rest_framework.parsers.JSONParser",
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": CONFIG.log_level.upper()},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
