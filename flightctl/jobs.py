"""The framework's own periodic jobs: events older than ``event_retention`` are deleted, and
so are the rate-limit counters of windows that are over (flightctl/api/ratelimit.py)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from flightctl.config import parse_duration, parse_rate
from flightctl.models import Event, RateLimitCounter
from flightctl.tasks import periodic, setting_interval


@periodic("event-cleanup", setting_interval("event_cleanup_interval"))
def clean_events() -> None:
    retention = parse_duration(settings.FLIGHTCTL.event_retention)
    Event.objects.filter(created_at__lt=timezone.now() - timedelta(seconds=retention)).delete()


@periodic("rate-limit-cleanup", setting_interval("event_cleanup_interval"))
def clean_rate_limit_counters() -> None:
    """Counters of windows that ended at least the longest configured window ago."""
    config = settings.FLIGHTCTL
    rates = [parse_rate(getattr(config, name))
             for name in ("auth_rate_limit", "login_failure_limit", "api_rate_limit")]
    longest = max([rate[1] for rate in rates if rate], default=3600)
    RateLimitCounter.objects.filter(
        window_start__lt=timezone.now() - timedelta(seconds=2 * longest)).delete()
