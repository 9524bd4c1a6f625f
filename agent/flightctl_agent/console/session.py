"""One console session on the device: a shell (or command) and its gRPC stream.

The stream's payloads are k8s remotecommand ``v5.channel.k8s.io`` frames, first byte the
channel. From the user: 0 stdin, 4 a terminal resize (``{"Width": w, "Height": h}``), 255
close a stream (its id follows: 0 is stdin). To the user: 1 stdout, 2 stderr and, when the
process has ended, 3 its exit status as a k8s ``Status`` (the reference client turns
``NonZeroExitCode`` into its own exit code). With a terminal (``tty``) the process runs in
a new pseudo-terminal whose output is all stdout; without, stdin, stdout and stderr are
pipes.

The process runs as the console user in its home directory: with a terminal the user's login
shell (``-l``, or ``-l -c COMMAND``), without one the command itself (or the shell reading
stdin).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pty
import pwd
import shlex
import signal
import struct
import termios

log = logging.getLogger(__name__)

PROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READ_SIZE = 4096


class ConsoleError(Exception):
    """The session cannot be started; the message goes to the user."""


def exit_status(code: int) -> bytes:
    """The error channel's ``Status`` for an exit code, as the reference agent sends it."""
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps({
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(abs(code))}]},
        "code": code}).encode()


def _set_size(fd: int, size: dict | None) -> None:
    """Apply ``{"Width", "Height"}`` (any letter case, as Go decodes it) to a terminal."""
    if not isinstance(size, dict):
        return
    lowered = {str(k).lower(): v for k, v in size.items()}
    try:
        rows, cols = int(lowered.get("height") or 0), int(lowered.get("width") or 0)
    except (TypeError, ValueError):
        return
    if rows > 0 and cols > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Account:
    """Who the session runs as."""

    def __init__(self, name: str):
        if os.geteuid() != 0:
            # Only root can become someone else: the session runs as the agent's own user.
            entry = pwd.getpwuid(os.geteuid())
        else:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                raise ConsoleError(f"console user {name} does not exist on the device") from None
        self.entry = entry
        self.switch = entry.pw_uid != os.geteuid()

    def popen_args(self) -> dict:
        if not self.switch:
            return {}
        e = self.entry
        return {"user": e.pw_uid, "group": e.pw_gid,
                "extra_groups": os.getgrouplist(e.pw_name, e.pw_gid)}

    def environment(self, term: str | None) -> dict:
        e = self.entry
        env = {"HOME": e.pw_dir, "USER": e.pw_name, "LOGNAME": e.pw_name,
               "SHELL": self.shell, "PATH": DEFAULT_PATH}
        for key in ("LANG", "LC_ALL", "TZ"):
            if key in os.environ:
                env[key] = os.environ[key]
        if term:
            env["TERM"] = term
        return env

    @property
    def shell(self) -> str:
        return self.entry.pw_shell if os.path.exists(self.entry.pw_shell or "") else "/bin/sh"

    @property
    def home(self) -> str:
        return self.entry.pw_dir if os.path.isdir(self.entry.pw_dir) else "/"


def command_line(account: Account, metadata: dict) -> list[str]:
    command = metadata.get("command") or {}
    argv = [command["command"], *(command.get("args") or [])] if command.get("command") else []
    if metadata.get("tty"):
        return [account.shell, "-l"] + (["-c", shlex.join(argv)] if argv else [])
    return argv or [account.shell]


class Process:
    """The session's process and its standard streams, as frames."""

    def __init__(self, metadata: dict, account: Account):
        self.metadata, self.account = metadata, account
        self.tty = bool(metadata.get("tty"))
        self.master: int | None = None
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        argv = command_line(self.account, self.metadata)
        kwargs = dict(env=self.account.environment(self.metadata.get("term")),
                      cwd=self.account.home, start_new_session=True,
                      **self.account.popen_args())
        try:
            if self.tty:
                self.master, slave = pty.openpty()
                _set_size(slave, self.metadata.get("initialDimensions"))
                try:
                    self.proc = await asyncio.create_subprocess_exec(
                        *argv, stdin=slave, stdout=slave, stderr=slave,
                        preexec_fn=_controlling_terminal, **kwargs)
                finally:
                    os.close(slave)
                os.set_blocking(self.master, False)
            else:
                self.proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, **kwargs)
        except OSError as exc:
            raise ConsoleError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None

    async def output(self, send) -> None:
        """Send every output as frames until the process's streams are closed."""
        if self.tty:
            await self._read_terminal(send)
            return

        async def pump(stream, channel):
            while chunk := await stream.read(READ_SIZE):
                await send(bytes([channel]) + chunk)

        await asyncio.gather(pump(self.proc.stdout, STDOUT), pump(self.proc.stderr, STDERR))

    async def _read_terminal(self, send) -> None:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(self.master, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                try:
                    chunk = os.read(self.master, READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: every process of the terminal has closed it
                    return
                if not chunk:
                    return
                await send(bytes([STDOUT]) + chunk)
        finally:
            loop.remove_reader(self.master)

    async def handle(self, frame: bytes) -> None:
        """One frame from the user."""
        channel, data = frame[0], frame[1:]
        if channel == STDIN:
            await self._write(data)
        elif channel == RESIZE and self.master is not None:
            try:
                _set_size(self.master, json.loads(data))
            except (ValueError, OSError) as exc:
                log.warning("console: ignoring a bad resize %r: %s", data[:80], exc)
        elif channel == CLOSE and data[:1] == bytes([STDIN]):
            if self.tty:
                await self._write(b"\x04")  # end of input, as a terminal says it
            elif self.proc.stdin is not None:
                self.proc.stdin.close()

    async def _write(self, data: bytes) -> None:
        if not self.tty:
            if self.proc.stdin is not None and not self.proc.stdin.is_closing():
                self.proc.stdin.write(data)
                with contextlib.suppress(ConnectionError):
                    await self.proc.stdin.drain()
            return
        while data:
            try:
                written = os.write(self.master, data)
                data = data[written:]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return

    async def wait(self) -> int:
        code = await self.proc.wait()
        return 128 - code if code < 0 else code  # a signal N as the shell says it: 128+N

    def stop(self) -> None:
        """End the process (the user left): hang up its terminal, or terminate it."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGHUP if self.tty else signal.SIGTERM)
        asyncio.get_running_loop().call_later(5, self._kill)

    def _kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None


def _controlling_terminal() -> None:
    """In the child, a session leader already: make its terminal (stdin) the controlling one,
    so that job control and ^C work as in any login."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
