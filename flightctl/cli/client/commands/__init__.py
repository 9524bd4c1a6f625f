"""The commands of ``flightctl``; importing this package registers them on the click group."""

from flightctl.cli.client.commands import (  # noqa: F401
    console,
    enroll,
    get,
    rollout,
    session,
    write,
)
