"""Running the agent API: uvicorn with required client certificates.

uvicorn verifies the client certificate during the handshake (``CERT_REQUIRED`` against the
CA bundle) but, like every ASGI server, does not put it into the ASGI scope. The protocol
subclass below reads the verified peer certificate when the connection is made and stores it
in the per-connection copy of ``app_state``, which uvicorn copies into every request's
``scope["state"]``; :class:`agent_api.middleware.AgentMiddleware` reads it there.
"""

from __future__ import annotations

import argparse
import os
import ssl

import uvicorn

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

    def shutdown(self) -> None:
        """uvicorn's stop, once it no longer accepts: answer every waiting long-poll now (204)
        rather than let the graceful shutdown wait out their two minutes; uvicorn then closes
        each connection after its response."""
        from agent_api.listener import listener

        listener.drain()
        super().shutdown()


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
    uvicorn.run(
        "agent_api.asgi:application",
        host=args.host,
        port=args.port,
        http=ClientCertificateProtocol,
        loop=loop,
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
        ssl_ca_certs=args.ca_certs,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        # With more than one, uvicorn binds the socket once and starts that many processes
        # accepting on it; each has its own render listener and last-seen flusher.
        workers=args.workers,
        lifespan="off",
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        backlog=4096,
        timeout_keep_alive=150,  # longer than a long-poll, so agents keep their connection
        # Long-polls are answered at once on a stop (ClientCertificateProtocol.shutdown); what
        # is left is status writes of a few milliseconds each.
        timeout_graceful_shutdown=5,
    )
