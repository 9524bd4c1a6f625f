"""``flightctl console device/NAME [-- COMMAND [ARG...]]``: a shell on a device.

The reference client's behaviour (agent.md §8.4, §10.12): a WebSocket to
``/ws/v1/devices/{name}/console?metadata=<json>`` with subprotocol ``v5.channel.k8s.io``;
every message is one frame whose first byte is its channel (0 stdin, 1 stdout, 2 stderr,
3 the exit status, 4 a terminal resize, 255 end of a stream). With a terminal on both ends
(or ``--tty``) the device allocates a pseudo-terminal, the local terminal is put in raw mode,
its size follows the window, and ``~.`` at the start of a line disconnects (``~~`` sends one
``~``); ``--notty`` never allocates one. The remote exit status is this command's; a
disconnect with ``~.`` exits 130, a refused session 255.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import sys
import threading
from urllib.parse import quote, urlencode

import click

from flightctl.cli.client.cli import Env, cli, common_options
from flightctl.cli.client.errors import CliError
from flightctl.cli.client.kinds import lookup, parse_single

PROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
EXIT_DETACHED, EXIT_REFUSED = 130, 255
#: how long the server may take to answer the upgrade (it waits for the device, 60 s)
OPEN_TIMEOUT = 120


class Escape:
    """``~.`` after a newline (or at the start) disconnects; ``~~`` is a literal ``~``."""

    def __init__(self):
        self.at_line_start, self.tilde = True, False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """What to send of ``data``, and whether the user asked to disconnect."""
        out = bytearray()
        for byte in data:
            if self.tilde:
                self.tilde = False
                if byte == ord("."):
                    return bytes(out), True
                out.append(ord("~"))
                if byte == ord("~"):
                    self.at_line_start = False
                    continue
            elif byte == ord("~") and self.at_line_start:
                self.tilde = True
                continue
            out.append(byte)
            self.at_line_start = byte in (ord("\r"), ord("\n"))
        return bytes(out), False


def exit_code(status: bytes) -> int:
    """The exit code an error-channel ``Status`` reports."""
    try:
        body = json.loads(status)
    except ValueError:
        raise CliError(f"the device sent an unreadable exit status: {status[:80]!r}",
                       EXIT_REFUSED) from None
    if body.get("status") == "Success":
        return 0
    if body.get("reason") == "NonZeroExitCode":
        for cause in (body.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message"))
                except (TypeError, ValueError):
                    break
    raise CliError(f"the session failed: {body.get('message') or body}", EXIT_REFUSED)


def _target(target: str, command: tuple[str, ...]) -> tuple[str, list[str]]:
    """The device name and the remote command, from ``device/NAME`` or ``device NAME``."""
    command = list(command)
    if "/" in target:
        _, name = parse_single(target, ("devices",), "connect a console to")
    else:
        if lookup(target).plural != "devices":
            raise CliError("only devices can be connected to a console")
        if not command:
            raise CliError("device name is required")
        name = command.pop(0)
    return name, command


def _ssl_context(config) -> ssl.SSLContext:
    if config.insecure_skip_tls_verify:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context
    pem = config.ca_pem()
    return ssl.create_default_context(cadata=pem.decode() if pem else None)


def _terminal_size() -> dict | None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return {"Width": size.columns, "Height": size.lines}


class Session:
    """One console connection: the WebSocket and the local terminal."""

    def __init__(self, socket, tty: bool, raw: bool, forward_stdin: bool):
        self.socket, self.tty, self.raw = socket, tty, raw
        self.forward_stdin = forward_stdin
        self.code: int | None = None
        self.detached = False
        self.done = threading.Event()
        self.resized = threading.Event()
        self.error: CliError | None = None

    def run(self) -> int:
        threading.Thread(target=self._receive, daemon=True).start()
        if self.forward_stdin:
            threading.Thread(target=self._send_stdin, daemon=True).start()
        if self.raw:
            signal.signal(signal.SIGWINCH, lambda *_: self.resized.set())
        while not self.done.wait(0.2):
            if self.resized.is_set():
                self.resized.clear()
                self._send(bytes([RESIZE]) + json.dumps(_terminal_size()).encode())
        if self.detached:
            return EXIT_DETACHED
        if self.error:
            raise self.error
        return self.code or 0

    def _send(self, frame: bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self.socket.send(frame)
        except ConnectionClosed:
            self.done.set()

    def _receive(self) -> None:
        from websockets.exceptions import ConnectionClosed, ConnectionClosedError

        try:
            for message in self.socket:
                if isinstance(message, str) or not message:
                    continue
                channel, data = message[0], message[1:]
                if channel == STDOUT:
                    sys.stdout.buffer.write(data)
                    sys.stdout.buffer.flush()
                elif channel == STDERR:
                    sys.stderr.buffer.write(data)
                    sys.stderr.buffer.flush()
                elif channel == ERROR:
                    self.code = exit_code(data)
        except CliError as exc:
            self.error = exc
        except ConnectionClosedError as exc:
            if not self.detached:
                reason = exc.rcvd.reason if exc.rcvd else "the connection was lost"
                self.error = CliError(f"the console session ended: {reason}", EXIT_REFUSED)
        except ConnectionClosed:
            pass
        finally:
            self.done.set()

    def _send_stdin(self) -> None:
        escape = Escape() if self.raw else None
        fd = sys.stdin.fileno()
        while not self.done.is_set():
            try:
                data = os.read(fd, 1024)
            except OSError:
                data = b""
            if not data:
                self._send(bytes([CLOSE, STDIN]))  # v5: the end of stdin
                return
            detach = False
            if escape is not None:
                data, detach = escape.feed(data)
            if data:
                self._send(bytes([STDIN]) + data)
            if detach:
                self.detached = True
                self.socket.close()
                return


def _refusal(exc) -> CliError:
    """The server's ``Status`` of a refused upgrade, as one line."""
    response = exc.response
    try:
        message = json.loads(response.body or b"{}").get("message") or ""
    except (ValueError, AttributeError):
        message = (response.body or b"").decode(errors="replace").strip()
    return CliError(message or f"{response.status_code} {response.reason_phrase}", EXIT_REFUSED)


@cli.command("console")
@click.argument("target", metavar="device/NAME")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND [ARG...]]")
@click.option("--tty", is_flag=True, help="Allocate a remote pseudo-terminal.")
@click.option("--notty", is_flag=True, help="Do not allocate a remote pseudo-terminal.")
@common_options
def console(env: Env, target, command, tty, notty):
    """Connect a console to the remote device through the server.

    Without COMMAND, a login shell; '~.' at the start of a line disconnects.
    """
    from websockets.exceptions import InvalidHandshake, InvalidStatus
    from websockets.sync.client import connect

    # The library logs its own safety net ("unexpected internal error", seen when the server
    # refuses a handshake on a loaded machine) at ERROR, and Python's last-resort handler would
    # print it as a second line beside our one-line error; what happened reaches the user
    # through the exception the call raises.
    logging.getLogger("websockets").addHandler(logging.NullHandler())
    if tty and notty:
        raise CliError("--tty and --notty are mutually exclusive")
    name, remote = _target(target, command)
    config = env.load_config()
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    remote_tty = tty or (terminal and not notty)
    raw = remote_tty and sys.stdin.isatty()
    metadata: dict = {"tty": remote_tty}
    if remote_tty and (size := _terminal_size()):
        metadata["initialDimensions"] = size
    if os.environ.get("TERM"):
        metadata["term"] = os.environ["TERM"]
    if remote:
        metadata["command"] = {"command": remote[0], "args": remote[1:]}
    query = {"metadata": json.dumps(metadata)}
    if env.org or config.organization:
        query["org_id"] = env.org or config.organization
    base = config.server.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    url = f"{base}/ws/v1/devices/{quote(name, safe='')}/console?{urlencode(query)}"
    headers = {"Flightctl-API-Version": "v1beta1"}
    if config.token:
        headers["Authorization"] = f"Bearer {config.token}"
    try:
        socket = connect(url, subprotocols=[PROTOCOL], additional_headers=headers,
                         ssl=_ssl_context(config) if url.startswith("wss:") else None,
                         open_timeout=OPEN_TIMEOUT, max_size=None, compression=None)
    except InvalidStatus as exc:
        raise _refusal(exc) from None
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise CliError(f"cannot open a console on device {name}: {exc}", EXIT_REFUSED) from None
    saved = None
    if raw:
        import termios
        import tty as tty_module

        saved = termios.tcgetattr(sys.stdin.fileno())
        tty_module.setraw(sys.stdin.fileno())
    try:
        code = Session(socket, remote_tty, raw,
                       forward_stdin=raw or not sys.stdin.isatty()).run()
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
        socket.close()
    sys.exit(code)
