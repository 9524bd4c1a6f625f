"""``flightctl rollout``: follow and steer the rollout of a fleet's template to its devices.

The reference CLI has no rollout command; this one reads what the API already exposes:

* the fleet's ``RolloutInProgress`` condition: reason ``Active`` (rolling out), ``Waiting``
  (a batch finished and the next needs approval), ``Suspended`` (stopped: a batch missed its
  success threshold, or paused by a user), ``Inactive`` (no batched rollout running);
* ``status.rollout.currentBatch`` (or the ``fleet-controller/batchNumber`` annotation) and the
  number of batches in ``spec.rolloutPolicy.deviceSelection.sequence`` (plus the final
  implicit batch);
* the fleet's member devices (``fieldSelector=metadata.owner=Fleet/<name>``): updated
  (``status.updated.status`` UpToDate), updating (Updating), failed (annotation
  ``fleet-controller/lastRolloutError`` or an ``Updating`` condition with reason ``Error``),
  and pending (the rest);
* devices the fleet's ``matchLabels`` select that have no owner yet: the server makes a device
  a member just after it is created or relabelled, so a device approved a moment ago counts
  as pending, not as "nothing to do".

A rollout is *complete* when no batched rollout is running and every member is up to date,
*failed* when it is suspended (not paused) or when every member that is not up to date failed.
A paused rollout is ``Suspended`` with the annotation ``fleet-controller/rolloutPaused=true``
(or "pause" in the condition's message). ``pause``, ``resume`` and ``approve`` are
``POST /api/v1/fleets/{name}/rollout/{action}``, each answering with the Fleet.

Exit codes of ``rollout status``: 0 complete, 1 failed, 3 not finished (without ``--watch``,
or when ``--timeout`` ran out), 4 the server could not be reached. A watch outlives dropped
connections and a restarting server: each read is retried (``http.RETRIES``), and a watch that
still gets no answer keeps trying for :data:`UNREACHABLE_GRACE` seconds before exit 4.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import click

from flightctl.cli.client import output
from flightctl.cli.client.cli import Env, cli, common_options
from flightctl.cli.client.errors import EXIT_UNREACHABLE, CliError, ServerUnreachable
from flightctl.cli.client.http import ApiError
from flightctl.cli.client.kinds import parse_single

EXIT_COMPLETE, EXIT_FAILED, EXIT_UNFINISHED = 0, 1, 3
assert EXIT_UNREACHABLE not in (EXIT_COMPLETE, EXIT_FAILED, EXIT_UNFINISHED)
UNREACHABLE_GRACE = 60.0
ANNOTATION_BATCH = "fleet-controller/batchNumber"
ANNOTATION_PAUSED = "fleet-controller/rolloutPaused"
ANNOTATION_TV = "fleet-controller/templateVersion"
ANNOTATION_ERROR = "fleet-controller/lastRolloutError"
BAR_WIDTH = 30


@dataclass
class RolloutState:
    """What ``rollout status`` shows: phase, batch and device counts of one fleet."""

    phase: str  # complete | failed | rolling out | waiting for approval | paused | pending
    message: str
    batch: int | None
    batches: int | None
    template_version: str
    total: int
    updated: int
    updating: int
    failed: int

    @property
    def finished(self) -> bool:
        return self.phase in ("complete", "failed")

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else int(100 * self.updated / self.total)

    def line(self, name: str) -> str:
        filled = BAR_WIDTH * self.percent // 100
        bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"
        where = []
        if self.batch is not None:
            where.append(f"batch {self.batch}" + (f" of {self.batches}" if self.batches else ""))
        if self.template_version:
            where.append(f"template {self.template_version}")
        head = f"fleet/{name}: {self.phase}" + (f" ({', '.join(where)})" if where else "")
        counts = (f"updated {self.updated}/{self.total}, updating {self.updating}, "
                  f"failed {self.failed}")
        return f"{head} {bar} {self.percent:3d}% {counts}"


def device_state(device: dict) -> str:
    """``failed``, ``updated``, ``updating`` or ``pending`` for one member device."""
    if output.dig(device, "metadata", "annotations", ANNOTATION_ERROR):
        return "failed"
    updating = output.condition(device, "Updating")
    if updating and updating.get("reason") == "Error":
        return "failed"
    status = output.dig(device, "status", "updated", "status")
    if status == "UpToDate":
        return "updated"
    if status == "Updating":
        return "updating"
    return "pending"


def rollout_state(fleet: dict, devices: list[dict], joining: int = 0) -> RolloutState:
    """Combine the fleet's rollout condition with its members' update states (``joining``:
    selected devices not yet members, counted as pending)."""
    annotations = output.dig(fleet, "metadata", "annotations", default={}) or {}
    counts = {"failed": 0, "updated": 0, "updating": 0, "pending": joining}
    for device in devices:
        counts[device_state(device)] += 1
    total = len(devices) + joining
    cond = output.condition(fleet, "RolloutInProgress") or {}
    reason = cond.get("reason") or "Inactive"
    message = cond.get("message") or ""
    batch = output.dig(fleet, "status", "rollout", "currentBatch")
    if batch is None and str(annotations.get(ANNOTATION_BATCH, "")).lstrip("-").isdigit():
        batch = int(annotations[ANNOTATION_BATCH])
    sequence = output.dig(fleet, "spec", "rolloutPolicy", "deviceSelection", "sequence")
    batches = len(sequence) + 1 if isinstance(sequence, list) and sequence else None
    paused = str(annotations.get(ANNOTATION_PAUSED, "")).lower() == "true" or (
        reason == "Suspended" and "pause" in message.lower())

    if paused:
        phase = "paused"
    elif reason == "Suspended":
        phase = "failed"
    elif reason == "Waiting":
        phase = "waiting for approval"
    elif reason == "Active":
        phase = "rolling out"
    elif counts["updated"] == total:
        phase = "complete"
    elif counts["failed"] and counts["updating"] == 0 and counts["pending"] == 0:
        phase = "failed"
        message = message or f"{counts['failed']} device(s) failed to update"
    else:
        phase = "rolling out" if counts["updating"] else "pending"
    return RolloutState(phase, message, batch if batch is not None else None, batches,
                        str(annotations.get(ANNOTATION_TV, "")), total, counts["updated"],
                        counts["updating"], counts["failed"])


def fetch_state(env: Env, name: str) -> RolloutState:
    client = env.client
    fleet = client.get_json(f"fleets/{name}")
    members = client.list_pages("devices", {"fieldSelector": f"metadata.owner=Fleet/{name}"})
    return rollout_state(fleet, members.get("items") or [], joining(env, fleet))


def joining(env: Env, fleet: dict) -> int:
    """How many devices the fleet selects that have no owner yet (one summary query). Only
    plain ``matchLabels`` selectors are counted; with ``matchExpressions`` this is 0."""
    selector = output.dig(fleet, "spec", "selector", default={}) or {}
    labels = selector.get("matchLabels") or {}
    if not labels or selector.get("matchExpressions"):
        return 0
    answer = env.client.get_json("devices", params={
        "labelSelector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "fieldSelector": "!metadata.owner", "summaryOnly": "true"}) or {}
    return int(output.dig(answer, "summary", "total", default=0) or 0)


@cli.group()
def rollout():
    """Follow and steer fleet rollouts: status [--watch], pause, resume, approve."""


@rollout.command("status")
@click.argument("resource", metavar="fleet/NAME")
@click.option("-w", "--watch", is_flag=True, help="Keep watching until it completes or fails.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between checks while watching.")
@click.option("--timeout", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Stop watching after this many seconds (0: no limit); exit code 3.")
@common_options
def status(env: Env, resource, watch, interval, timeout):
    """Show the rollout of a fleet; exit 0 complete, 1 failed, 3 not finished, 4 no server."""
    _, name = parse_single(resource, ("fleets",), "show the rollout of")
    tty = sys.stdout.isatty()
    deadline = time.monotonic() + timeout if timeout else None
    last = ""
    away_since = None
    while True:
        try:
            state = fetch_state(env, name)
        except ServerUnreachable as exc:
            now = time.monotonic()
            if not watch or (away_since is not None and now - away_since > UNREACHABLE_GRACE):
                raise
            if away_since is None:
                away_since = now
                # On a terminal, end the progress line being redrawn first.
                click.echo(("\n" if tty else "") + f"Lost the server ({exc.message}); "
                           f"retrying for up to {UNREACHABLE_GRACE:g}s", err=True)
                last = ""
            if deadline is not None and now >= deadline:
                raise
            time.sleep(interval)
            continue
        if away_since is not None:
            click.echo("Reconnected to the server", err=True)
            away_since = None
        line = state.line(name)
        if line != last:
            # On a terminal the progress line is redrawn in place; in a pipe or a log every
            # change is its own line.
            click.echo(("\r\033[K" + line) if tty else line, nl=not tty)
            last = line
        if state.finished or not watch:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if tty:
        click.echo("")
    if state.phase == "complete":
        click.echo(f"Rollout of fleet/{name} complete: {state.updated}/{state.total} devices "
                   "updated")
        sys.exit(EXIT_COMPLETE)
    if state.phase == "failed":
        click.echo(f"Rollout of fleet/{name} failed: {state.message or 'batch failed'}",
                   err=True)
        sys.exit(EXIT_FAILED)
    if state.phase == "waiting for approval":
        click.echo(f"Waiting for approval: flightctl rollout approve fleet/{name}", err=True)
    elif state.phase == "paused":
        click.echo(f"Paused: flightctl rollout resume fleet/{name}", err=True)
    sys.exit(EXIT_UNFINISHED)


def _action(env: Env, resource: str, action: str, done: str) -> None:
    _, name = parse_single(resource, ("fleets",), f"{action} the rollout of")
    try:
        env.client.send_json("POST", f"fleets/{name}/rollout/{action}", None)
    except ApiError as exc:
        if exc.status in (404, 405) and "path" in exc.message and "not found" in exc.message:
            raise CliError(f"this server cannot {action} rollouts (no POST "
                           f"/api/v1/fleets/{{name}}/rollout/{action})") from None
        raise
    click.echo(f"Rollout of fleet/{name} {done}")


@rollout.command()
@click.argument("resource", metavar="fleet/NAME")
@common_options
def pause(env: Env, resource):
    """Pause a fleet's rollout: no further devices are selected until resumed."""
    _action(env, resource, "pause", "paused")


@rollout.command("resume")
@click.argument("resource", metavar="fleet/NAME")
@common_options
def resume_rollout(env: Env, resource):
    """Resume a paused rollout."""
    _action(env, resource, "resume", "resumed")


@rollout.command("approve")
@click.argument("resource", metavar="fleet/NAME")
@common_options
def approve_rollout(env: Env, resource):
    """Approve the next batch of a rollout that waits for approval."""
    _action(env, resource, "approve", "approved")
