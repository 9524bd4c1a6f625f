"""Follow-up work on the PostgreSQL task queue (django-q2, ORM broker).

**Enqueueing is transactional.** django-q2's ORM broker inserts the task row with the same
database connection, so :func:`enqueue` called inside the transaction of a write is an outbox:
the task exists if and only if the write committed. Delivery is at-least-once (a task whose
worker dies is delivered again after ``task_timeout``), so every handler is idempotent.

**Retries.** A handler that raises is retried with exponential backoff (1 s, 2 s, 4 s, ...
capped at 5 min) up to :data:`MAX_ATTEMPTS`; each failure records ``InternalTaskFailed`` and the
last one ``InternalTaskPermanentlyFailed``. The delay uses the broker's visibility time (the
ORM broker only hands out rows whose ``lock`` is in the past).

**Coalesced tasks.** :func:`enqueue_once` queues a task only if no task of the same name and
key is queued already (one adoption pass per organization, not one per device approved): see
its docstring for why no request is lost.

**Periodic jobs** are chains of ticks; see :class:`flightctl.models.PeriodicJob`.

**Registration.** Each app registers its handlers and periodic jobs in its own ``tasks.py``
(``@handler``, ``@periodic``), which its AppConfig imports when Django is ready; so every
process that runs tasks (a django-q worker, a test) has them all, and this module names no app.
"""

from __future__ import annotations

import datetime
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.tasks import async_task

from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT, record_event
from flightctl.config import parse_duration
from flightctl.models import DEFAULT_ORG_ID, PeriodicJob, QueuedOnce

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BASE_DELAY = 1.0
MAX_DELAY = 300.0
#: advisory lock class of coalesced tasks (the second key hashes the task's name and key);
#: the two-key lock space is the one fleets.rollout's DISPATCH_LOCK (7241) uses too
ONCE_LOCK = 7_242

_HANDLERS: dict[str, Callable] = {}
_PERIODIC: dict[str, PeriodicSpec] = {}


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    func: Callable[[], object]
    interval: Callable[[], float]


def setting_interval(setting: str) -> Callable[[], float]:
    """The interval of a periodic job, read from a duration setting each time it is needed
    (so tests and operators can change it without re-registering the job)."""

    def seconds() -> float:
        return parse_duration(getattr(settings.FLIGHTCTL, setting))

    return seconds


def handler(name: str):
    """Register ``func(payload: dict)`` as the handler of task ``name``."""

    def register(func):
        _HANDLERS[name] = func
        return func

    return register


def periodic(name: str, interval: Callable[[], float]):
    """Register ``func()`` to run every ``interval()`` seconds, once cluster-wide."""

    def register(func):
        _PERIODIC[name] = PeriodicSpec(name, func, interval)
        return func

    return register


def _delay_broker(delay: float):
    class DelayedORM(ORM):
        """Makes the task row visible to workers only after ``delay`` seconds."""

        def enqueue(self, task):
            visible = timezone.now() + datetime.timedelta(seconds=delay)
            return self.get_connection().create(
                key=self.list_key or Conf.CLUSTER_NAME, payload=task, lock=visible
            ).pk

    return DelayedORM(list_key=Conf.CLUSTER_NAME)


def enqueue(name: str, payload: dict | None = None, *, delay: float = 0, attempt: int = 0,
            once: str | None = None):
    """Queue task ``name``; inside a transaction it is committed (or not) with it. ``once``
    is for :func:`enqueue_once` only."""
    options = {"task_name": name, "broker": _delay_broker(delay)} if delay else {
        "task_name": name}
    extra = () if once is None else (once,)
    return async_task("flightctl.tasks.execute", name, payload or {}, attempt, *extra,
                      q_options=options)


def enqueue_once(name: str, key: str, payload: dict | None = None) -> bool:
    """Queue task ``name`` for ``key`` unless one is queued already; True if this call queued
    it. Call it in the transaction that writes what the task will look for (e.g. the flag of
    a device to adopt), *after* that write.

    **Invariant**: every write followed by ``enqueue_once(name, key)`` is seen by a run of the
    ``(name, key)`` handler that starts after the write commits. The row of
    :class:`~flightctl.models.QueuedOnce` says "a task is queued whose run will delete this
    row and then run the handler"; this function inserts it, :func:`release_once` deletes it.

    Why it holds, under READ COMMITTED. The insert takes a *shared* advisory lock on
    ``(name, key)``, held until the writer's transaction ends; the release deletes the row
    under the *exclusive* lock, in a transaction of its own that commits before the handler
    starts. Writers never wait for each other on the lock, only for a release (which holds it
    for one DELETE); once per pass, the writers that race to insert the row wait at the unique
    index for the one that inserted it to commit. Either:

    * the insert adds the row: the task is queued in the writer's transaction, so it runs
      after the write commits; or
    * the row is there (committed, or inserted by a concurrent writer that then commits; if
      that one rolls back, the insert goes ahead as above). It was there after this writer
      took its shared lock, so the release that deletes it cannot take the exclusive lock
      before this writer's transaction ends (and one that held it earlier deleted an older
      row, committed before this writer's lock was granted). That release's handler starts
      after that, in statements whose snapshots see the write. Every row has a queued task
      (inserted together), and every delivery of that task begins with a release and goes
      on into the handler (if the handler fails, its retries are plain tasks that run it).

    Without the shared lock the second case loses work: the writer sees the row, then a
    release deletes it and the handler's pass ends (finding nothing flagged) before the
    writer commits, and no task is left. A row lock instead (``ON CONFLICT DO UPDATE``)
    would make every writer of the key wait for the previous one's commit.
    """
    with connection.cursor() as cursor:
        # Raw SQL: the ORM has no insert that ignores the conflict *and* says whether the row
        # was inserted, and the shared lock must be granted before the conflict check; one
        # statement does both in one round trip (the lock's subquery yields the inserted row).
        cursor.execute(
            "INSERT INTO flightctl_queuedonce (name, key, queued_at)"
            " SELECT %s, %s, now()"
            " FROM (SELECT pg_advisory_xact_lock_shared(%s, %s)) AS held"
            " ON CONFLICT (name, key) DO NOTHING RETURNING 1",
            [name, key, ONCE_LOCK, _lock_key(name, key)])
        inserted = cursor.fetchone() is not None
    if inserted:
        enqueue(name, payload, once=key)
    return inserted


def _lock_key(name: str, key: str) -> int:
    """The second key of ``(name, key)``'s advisory lock: a 32-bit hash (two keys that
    collide only share a lock, which costs waits, never correctness)."""
    value = zlib.crc32(f"{name}/{key}".encode())
    return value - 2**32 if value >= 2**31 else value  # PostgreSQL's int4 is signed


def release_once(name: str, key: str) -> None:
    """Forget that task ``(name, key)`` is queued, before its handler runs (the next
    :func:`enqueue_once` queues a new one); see :func:`enqueue_once` for why this order is
    safe. Its own transaction: the delete must be committed (and the exclusive lock
    released) before the handler starts."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Raw SQL: advisory locks have no ORM form. The lock waits for the transactions that
        # found this row queued (shared holders) to end, so the handler sees their writes.
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ONCE_LOCK, _lock_key(name, key)])
        QueuedOnce.objects.filter(name=name, key=key).delete()


def backoff(attempt: int) -> float:
    return min(MAX_DELAY, BASE_DELAY * 2**attempt)


def execute(name: str, payload: dict, attempt: int = 0, once: str | None = None) -> None:
    """Entry point of every task in a worker: run the handler, retry on failure. ``once`` is
    the key of a task queued by :func:`enqueue_once`, released before the handler runs (its
    retries are plain tasks: each still runs the handler)."""
    func = _HANDLERS.get(name)
    if func is None:
        log.error("no handler for task %s; dropped", name)
        return
    if once is not None:
        release_once(name, once)
    try:
        func(payload)
    except Exception as exc:  # every failure is retried or reported, never lost
        log.exception("task %s failed (attempt %d)", name, attempt + 1)
        message = f"{name} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        details = {"detailType": "InternalTaskFailed", "errorMessage": message[:1000],
                   "retryCount": attempt, "originalEvent": {"task": name, "payload": payload}}
        kind, obj = payload.get("kind", "System"), payload.get("name", "flightctl-system")
        org_id = payload.get("org_id") or DEFAULT_ORG_ID
        with transaction.atomic():
            if attempt + 1 < MAX_ATTEMPTS:
                record_event(org_id, kind, obj, "InternalTaskFailed", message, type="Warning",
                             details=details, actor=WORKER_ACTOR, component=WORKER_COMPONENT)
                enqueue(name, payload, delay=backoff(attempt), attempt=attempt + 1)
            else:
                details["detailType"] = "InternalTaskPermanentlyFailed"
                record_event(org_id, "System", "queue", "InternalTaskPermanentlyFailed",
                             message, type="Warning", details=details, actor=WORKER_ACTOR,
                             component=WORKER_COMPONENT)


# -- periodic jobs ------------------------------------------------------------------------


def tick(name: str) -> None:
    """Run periodic job ``name`` if it is due and nobody else is running it; schedule the next."""
    spec = _PERIODIC.get(name)
    if spec is None:
        return
    now = timezone.now()
    with transaction.atomic():
        job = PeriodicJob.objects.select_for_update(skip_locked=True).filter(name=name).first()
        if job is None or job.next_due > now + datetime.timedelta(seconds=1):
            return  # running elsewhere, or a duplicate chain: let it end here
        try:
            with transaction.atomic():
                spec.func()
            job.last_error = ""
        except Exception as exc:  # a failing job must not break its chain
            log.exception("periodic job %s failed", name)
            job.last_error = str(exc)[:2000]
        interval = spec.interval()
        job.last_run = now
        job.next_due = timezone.now() + datetime.timedelta(seconds=interval)
        job.save()
        _enqueue_tick(name, delay=interval)


def _enqueue_tick(name: str, delay: float = 0) -> None:
    options = {"task_name": f"tick:{name}"}
    if delay:
        options["broker"] = _delay_broker(delay)
    async_task("flightctl.tasks.tick", name, q_options=options)


def ensure_periodic_jobs() -> int:
    """Seed missing or stalled chains. Runs at start-up and from a one-minute schedule."""
    now = timezone.now()
    seeded = 0
    for name, spec in _PERIODIC.items():
        with transaction.atomic():
            job, created = PeriodicJob.objects.select_for_update().get_or_create(
                name=name, defaults={"next_due": now})
            stale = now - job.next_due > datetime.timedelta(seconds=2 * spec.interval() + 30)
            if created or stale:
                job.next_due = now
                job.save(update_fields=["next_due"])
                _enqueue_tick(name)
                seeded += 1
    return seeded


def install_schedule() -> None:
    """The django-q schedule that keeps the periodic chains alive (idempotent)."""
    from django.db import connection

    from flightctl.schema import MIGRATION_LOCK

    with transaction.atomic():
        # Schedule names are not unique in django-q: nodes of several hosts starting together
        # would each create one (and then fail on the duplicate). The migrations' lock, held
        # until the transaction ends, makes the check and the insert one step.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        Schedule.objects.update_or_create(
            name="flightctl-periodic-watchdog",
            defaults={"func": "flightctl.tasks.ensure_periodic_jobs",
                      "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
        )
    ensure_periodic_jobs()
