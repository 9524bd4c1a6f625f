"""``flightctl-agent simulate``: the simulator's command line."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click


def _labels(values) -> dict:
    labels = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint="--label")
        labels[key] = text
    return labels


@click.command("simulate")
@click.option("--user-api", required=True, envvar="FLIGHTCTL_USER_API",
              help="User API URL (enrollment certificate, approvals), e.g. https://127.0.0.1:3443")
@click.option("--token", required=True, envvar="FLIGHTCTL_TOKEN", help="User API bearer token.")
@click.option("--ca-file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CA certificate of the user API.")
@click.option("--devices", "count", type=int, default=1, show_default=True)
@click.option("--concurrency", type=int, default=100, show_default=True,
              help="Enrollments in flight at once.")
@click.option("--approve/--no-approve", default=True, show_default=True,
              help="Approve each enrollment request through the user API.")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE approval label (repeatable).")
@click.option("--failing-share", type=float, default=0.0, show_default=True,
              help="Fraction of devices reporting a critical disk and failed applications.")
@click.option("--status-interval", type=float, default=60.0, show_default=True)
@click.option("--jitter", type=float, default=0.1, show_default=True,
              help="+- fraction applied to every interval.")
@click.option("--source-ips", default="127.0.0.1", show_default=True,
              help="Comma-separated local addresses devices bind to, round-robin.")
@click.option("--duration", type=float, help="Seconds to run after enrolling (default: until "
              "SIGTERM/SIGINT).")
@click.option("--stats-file", type=click.Path(dir_okay=False),
              help="Rewritten every 2 s with cumulative counts and latency histograms.")
@click.option("--work-dir", type=click.Path(file_okay=False),
              help="Where device keys and certificates go (default: a new temporary directory).")
def simulate_command(user_api, token, ca_file, count, concurrency, approve, labels,
                     failing_share, status_interval, jitter, source_ips, duration, stats_file,
                     work_dir):
    """Run COUNT simulated devices against a Flight Control service and print a JSON report."""
    try:
        from flightctl_agent.simulator.device import Cadence
        from flightctl_agent.simulator.run import Options, SimulationError, simulate
    except ImportError as exc:
        raise click.ClickException(f"the simulator needs the 'simulator' extra "
                                   f"(pip install 'flightctl-agent[simulator]'): {exc}")
    options = Options(
        user_api=user_api, token=token, ca_file=Path(ca_file), devices=count,
        work_dir=Path(work_dir or tempfile.mkdtemp(prefix="flightctl-sim-")),
        concurrency=concurrency, approve=approve, labels=_labels(labels),
        failing_share=failing_share,
        source_ips=[ip.strip() for ip in source_ips.split(",") if ip.strip()],
        duration=duration, stats_file=Path(stats_file) if stats_file else None,
        cadence=Cadence(status_interval=status_interval, jitter=jitter),
    )
    try:
        report = simulate(options)
    except SimulationError as exc:
        raise click.ClickException(str(exc))
    click.echo(json.dumps(report, indent=2))
    sys.exit(0 if report["errors"] == 0 and report["enrolled"] == count else 1)
