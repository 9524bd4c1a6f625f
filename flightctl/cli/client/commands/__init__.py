"""The commands of ``flightctl``; importing this package registers them on the click group."""

from flightctl.cli.client.commands import enroll, get, rollout, session, write  # noqa: F401
