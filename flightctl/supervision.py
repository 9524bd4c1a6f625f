"""What keeps the server's processes from outliving their supervisor, and a restart possible.

Three mechanisms, each covering what the previous one cannot:

* **Parent-death signals on every level.** ``serve`` asks the kernel to signal each child when
  ``serve`` dies, and every worker process of a child (uvicorn's workers, which are started by
  ``multiprocessing``) asks the same of its own master: a SIGKILLed agent API master no longer
  leaves its workers behind holding port 7443 (:func:`die_with_parent`).
* **A process group per child, owned by the supervisor.** Each child leads a group of its own
  (its workers inherit it); when a child ends, ``serve`` SIGKILLs whatever is left of its group.
* **A lock and a record in the data directory.** ``serve`` holds ``<data dir>/serve.lock``
  while it runs (a second ``serve`` on the same directory is refused before it touches the
  database) and writes the groups of its children to ``<data dir>/serve.pids``. A ``serve``
  that was SIGKILLed cannot clean up; the next one reads the record and SIGKILLs every process
  still in those groups — only those whose environment names this data directory, so a
  recycled process id of someone else's is never touched — before it binds any port
  (:class:`RunLock`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
LOCK_FILE = "serve.lock"
PIDS_FILE = "serve.pids"


def _prctl():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def parent_death_signal(signum: int = signal.SIGTERM):
    """A ``preexec_fn`` asking the kernel to send ``signum`` to the child when its parent
    dies, or None where prctl is not available. libc is resolved here, before any fork: the
    function that runs in the child only makes the system call."""
    prctl = _prctl()
    if prctl is None:
        return None

    def set_signal():
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return set_signal


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """In a worker process: be sent ``signum`` when ``parent`` (its master) dies.

    The kernel's setting is cleared on fork, so each level of processes asks for itself. A
    master that died before the call was made is caught by the check that follows it."""
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


def workers_die_with_master() -> None:
    """Called where an ASGI application is loaded: in a uvicorn worker process (started by
    ``multiprocessing``), be sent SIGTERM — a graceful stop — when the master dies; in a
    process of its own, nothing."""
    import multiprocessing

    master = multiprocessing.parent_process()
    if master is not None and master.pid:
        die_with_parent(master.pid)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def ours(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a process of this installation: started by a ``serve`` on
    ``data_dir`` (each child inherits FLIGHTCTL_DATA_DIR from it)."""
    return _environ(pid).get("FLIGHTCTL_DATA_DIR") == str(data_dir)


def kill_group(pgid: int, data_dir: Path, timeout: float = 5.0) -> list[int]:
    """SIGKILL the processes of group ``pgid`` that are ours and wait until they are gone
    (their sockets with them); the process ids that were killed."""
    victims = [pid for pid in group_members(pgid) if pid != os.getpid() and ours(pid, data_dir)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in victims):
        time.sleep(0.02)
    return victims


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


class AlreadyRunning(RuntimeError):
    """Another ``serve`` holds the data directory's lock."""


class RunLock:
    """The data directory's ``serve`` lock and the record of its children's process groups."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.pids_path = self.data_dir / PIDS_FILE
        self._fd: int | None = None

    def acquire(self) -> list[int]:
        """Take the lock (AlreadyRunning if a live ``serve`` has it), then kill what a killed
        predecessor left behind; the process ids that were killed."""
        # Opened close-on-exec (Python's default): no child inherits the lock, so it is free
        # the moment this process dies, however it dies.
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self._recorded().get("serve")
            raise AlreadyRunning(f"another flightctl-server serve (pid {holder or '?'}) is "
                                 f"running on {self.data_dir}") from None
        self._fd = fd
        killed = []
        for pgid in self._recorded().get("groups", {}).values():
            killed += kill_group(int(pgid), self.data_dir)
        return killed

    def _recorded(self) -> dict:
        try:
            return json.loads(self.pids_path.read_text())
        except (OSError, ValueError):
            return {}

    def record(self, groups: dict[str, int]) -> None:
        """Write the children's process groups (replaced atomically, so a reader after a
        kill never sees half a file)."""
        temporary = self.pids_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"serve": os.getpid(), "groups": groups}))
        os.replace(temporary, self.pids_path)

    def release(self) -> None:
        self.pids_path.unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


#: a child that dies more often than this within RESTART_WINDOW seconds is not restarted again:
#: ``serve`` stops everything and exits non-zero, for a service manager to see
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: how long the workers of a child whose master died may take to drain (they were sent
#: SIGTERM by the kernel) before what is left of its group is SIGKILLed
ORPHAN_GRACE = 3.0


class Child:
    """One supervised command: its process and when it was (re)started."""

    def __init__(self, name: str, argv: list[str], env: dict, phase: int):
        self.name, self.argv, self.env, self.phase = name, argv, env, phase
        self.process: subprocess.Popen | None = None
        self.starts: list[float] = []


class Supervisor:
    """Runs the child processes, restarts one that dies, and stops them all in order.

    A child that dies (a SIGKILLed agent API master, a crashed task cluster) is restarted
    after what is left of its process group is gone, so devices lose only that process's
    connections; one that keeps dying stops the whole set. On SIGTERM/SIGINT the children are
    stopped phase by phase (the APIs, then the task cluster; the database after this returns),
    each phase's processes together, within ``grace`` seconds each.
    """

    def __init__(self, data_dir: Path, say, lock: RunLock | None = None):
        self.data_dir = Path(data_dir)
        self.say = say
        self.lock = lock
        self.children: dict[str, Child] = {}
        self.stopping = False
        self.on_parent_death = parent_death_signal()
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def spawn(self, name: str, argv: list[str], env: dict | None = None,
              phase: int = 0) -> None:
        child = Child(name, argv, {**os.environ, **(env or {})}, phase)
        self.children[name] = child
        self._start(child)

    def _start(self, child: Child) -> None:
        # Each child in a session (and so a process group) of its own: a terminal's Ctrl-C
        # (or a group-wide SIGTERM) reaches only this supervisor, which stops each child
        # through its main process. django-q's cluster hangs when its sentinel and workers are
        # signalled directly along with its main process (they run the stop handler each).
        child.process = subprocess.Popen(child.argv, env=child.env, start_new_session=True,
                                         preexec_fn=self.on_parent_death)
        child.starts = [t for t in child.starts if time.monotonic() - t < RESTART_WINDOW]
        child.starts.append(time.monotonic())
        if self.lock is not None:
            self.lock.record({c.name: c.process.pid for c in self.children.values()
                              if c.process is not None})

    def stop(self, *_signal) -> None:
        self.stopping = True

    def wait_for(self, ready, timeout: float) -> None:
        """Wait until ``ready()``, a signal to stop or ``timeout`` seconds, whichever first."""
        deadline = time.monotonic() + timeout
        while not self.stopping and time.monotonic() < deadline and not ready():
            time.sleep(0.05)

    def run(self) -> int:
        code = 0
        while not self.stopping:
            for child in self.children.values():
                if child.process.poll() is None:
                    continue
                self._reap_group(child, ORPHAN_GRACE)
                if len(child.starts) >= MAX_RESTARTS or self.stopping:
                    self.say(f"{child.name} exited with {child.process.returncode} "
                             f"{len(child.starts)} times within {RESTART_WINDOW:.0f}s; stopping")
                    self.stopping, code = True, 1
                    break
                self.say(f"{child.name} exited with {child.process.returncode}; restarting it")
                self._start(child)
            time.sleep(0.1)
        self.terminate()
        return code

    def _reap_group(self, child: Child, grace: float) -> None:
        """Wait up to ``grace`` for the group of a child whose main process ended to empty,
        then SIGKILL what is left of it."""
        deadline = time.monotonic() + grace
        while group_members(child.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_group(child.process.pid, self.data_dir)

    def terminate(self, grace: float = 10.0) -> None:
        for phase in sorted({child.phase for child in self.children.values()}):
            members = [c for c in self.children.values() if c.phase == phase]
            for child in members:
                if child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in members:
                try:
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.say(f"{child.name} did not stop within {grace:.0f}s; killing it")
                    child.process.kill()
                    child.process.wait()
                self._reap_group(child, max(0.0, deadline - time.monotonic()))
