"""Running the agent API: uvicorn with required client certificates.

uvicorn verifies the client certificate during the handshake (``CERT_REQUIRED`` against the
CA bundle) but, like every ASGI server, does not put it into the ASGI scope. The protocol
subclass below reads the verified peer certificate when the connection is made and stores it
in the per-connection copy of ``app_state``, which uvicorn copies into every request's
``scope["state"]``; :class:`agent_api.middleware.AgentMiddleware` reads it there.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import ssl
import sys
import threading

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from flightctl.supervision import die_with_parent

PEERCERT_KEY = "flightctl.peercert"


def _base_protocol():
    try:  # httptools' C parser when it is installed (it is a dependency on most platforms)
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:  # httptools is optional; h11 always ships with uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


class ClientCertificateProtocol(_base_protocol()):
    """An HTTP protocol that hands the verified client certificate (DER) to the application.

    The port also speaks gRPC (agent_api.grpc): TLS offers ALPN ``h2`` besides ``http/1.1``,
    and a connection that chose ``h2`` (gRPC clients do) is handed to the gRPC server here,
    before uvicorn's HTTP/1.1 machinery ever sees it.
    """

    alpn_protocols = ["h2", "http/1.1"]

    def connection_made(self, transport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            from agent_api.grpc import serve_connection  # Django is set up by now

            serve_connection(transport, der)
            return
        super().connection_made(transport)
        # A new dict per connection: the server-wide app_state must not carry one client's
        # certificate into another connection's requests.
        self.app_state = {**self.app_state, PEERCERT_KEY: der}


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which answers every waiting long-poll (204) as soon as it stops
    accepting, rather than let its graceful shutdown wait out their two minutes; each
    connection is closed after its response, and what is left is status writes of a few
    milliseconds each."""

    async def shutdown(self, sockets=None) -> None:
        from agent_api.listener import listener  # loaded with the application

        # Not accepting first: a device answered now must reconnect to another process.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        listener.drain()
        await super().shutdown(sockets)
        # The last second of last-seen times is still in memory; another node serves these
        # devices next, and must not judge them by times this process never wrote.
        from devices.services import last_seen_buffer

        try:
            await asyncio.to_thread(last_seen_buffer.flush)
        except Exception as exc:  # noqa: BLE001 - stale times at worst; the stop goes on
            logging.getLogger("uvicorn.error").warning("could not write last-seen times: %s",
                                                      exc)


def _worker(config: uvicorn.Config, sockets: list[socket.socket], master: int) -> None:
    """One worker process (spawned): it dies with its master, whatever kills the master."""
    die_with_parent(master)
    config.configure_logging()
    DrainingServer(config).run(sockets)


def _run_workers(config: uvicorn.Config, count: int) -> int:
    """The master of ``count`` worker processes accepting on one socket: restarts a worker
    that dies, stops them all (each draining) on SIGTERM/SIGINT. uvicorn's own multi-process
    supervisor runs its own server class in the workers, which could not drain."""
    sock = config.bind_socket()
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    def start():
        process = context.Process(target=_worker, args=(config, [sock], os.getpid()))
        process.start()
        return process

    workers, code = [start() for _ in range(count)], 0
    while not stopping.wait(0.2):
        for index, process in enumerate(workers):
            if process.is_alive():
                continue
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # the same on every restart: give up
                logging.getLogger("uvicorn.error").error("agent API worker failed to start")
                stopping.set()
                code = 1
                break
            workers[index] = start()
    sock.close()  # no backlog of connections nobody will accept
    for process in workers:
        if process.is_alive():
            process.terminate()
    for process in workers:
        process.join(15)
        if process.is_alive():
            process.kill()
            process.join()
    return code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agent_api",
                                     description="Flight Control agent API (mutual TLS)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=7443)
    parser.add_argument("--certfile", required=True, help="server certificate (PEM chain)")
    parser.add_argument("--keyfile", required=True, help="server private key")
    parser.add_argument("--ca-certs", required=True,
                        help="CA bundle client certificates must chain to")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes sharing the socket (each with its own event loop)")
    args = parser.parse_args(argv)

    # Not setdefault: the supervisor runs with the user API's settings in its environment.
    os.environ["DJANGO_SETTINGS_MODULE"] = "agent_api.settings"
    try:  # uvloop roughly halves the event loop's own CPU per request (docs/scale.md)
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    config = uvicorn.Config(
        "agent_api.asgi:application",
        host=args.host,
        port=args.port,
        http=ClientCertificateProtocol,
        loop=loop,
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
        ssl_ca_certs=args.ca_certs,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        lifespan="off",
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        backlog=4096,
        timeout_keep_alive=150,  # longer than a long-poll, so agents keep their connection
        timeout_graceful_shutdown=5,  # long-polls are answered at once (DrainingServer)
    )
    if args.workers <= 1:
        DrainingServer(config).run()
        return
    # With more than one, the socket is bound once and that many processes accept on it;
    # each has its own render listener and last-seen flusher.
    sys.exit(_run_workers(config, args.workers))
