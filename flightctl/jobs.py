"""The framework's own periodic job: events older than ``event_retention`` are deleted."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from flightctl.config import parse_duration
from flightctl.models import Event
from flightctl.tasks import periodic, setting_interval


@periodic("event-cleanup", setting_interval("event_cleanup_interval"))
def clean_events() -> None:
    retention = parse_duration(settings.FLIGHTCTL.event_retention)
    Event.objects.filter(created_at__lt=timezone.now() - timedelta(seconds=retention)).delete()
