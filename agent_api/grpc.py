"""gRPC on the agent port: ``flightctl.v1.RouterService`` and ``flightctl.v1.Enrollment``.

Flight Control's agents open their console streams and answer TPM credential challenges over
gRPC on the management endpoint, the agent API's own port. A TLS connection that negotiated
ALPN ``h2`` is handed to grpclib's HTTP/2 protocol when it is made (agent_api.server); every
other connection stays HTTP/1.1 for the REST operations. The caller is the verified client
certificate of the connection, exactly as for the REST operations (agent_api.middleware).

``RouterService/Stream`` is the device's end of a console session (docs/api.md, "Remote
console"): the metadata names the session (``session-id``), the device (``client-name``,
which must be the certificate's) and the protocol the agent chose (``selected-protocol``).
The session's row (devices.console.sessions) says which user API process holds the user's
WebSocket; this process joins that process's bridge and relays the payloads both ways.

``Enrollment/TPMChallenge`` is the credential challenge of a TPM enrollment, the gRPC form of
the HTTPS operations of agent_api.views (same checks, same outcome on the request).
"""

from __future__ import annotations

import asyncio
import logging
import os

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Server

from agent_api.grpc_v1 import enrollment_grpc, enrollment_pb2, router_grpc, router_pb2
from agent_api.middleware import peer_from_certificate
from agent_api.views import finish_tpm_challenge, org_of, require_device, start_tpm_challenge
from devices.console import bridge, sessions
from flightctl.api.conditions import get_condition
from flightctl.api.errors import ApiError
from flightctl.threads import in_thread

log = logging.getLogger(__name__)

#: gRPC status of a refusal the REST operations answer with this HTTP code
_STATUS_OF = {400: Status.INVALID_ARGUMENT, 401: Status.UNAUTHENTICATED,
              403: Status.PERMISSION_DENIED, 404: Status.NOT_FOUND,
              409: Status.FAILED_PRECONDITION}


def _refused(exc: ApiError) -> GRPCError:
    return GRPCError(_STATUS_OF.get(exc.status_code, Status.INTERNAL), exc.message)


class _Authenticated:
    """A service of one connection, whose verified client certificate is ``der``."""

    def __init__(self, der: bytes | None):
        self.der = der

    def peer(self):
        peer = peer_from_certificate(self.der) if self.der else None
        if peer is None:
            raise GRPCError(Status.UNAUTHENTICATED, "client certificate carries no valid "
                                                    "signer or organization")
        return peer


def _metadata(stream, key: str) -> str:
    values = stream.metadata.getall(key, []) if stream.metadata else []
    return values[0] if len(values) == 1 else ""


class RouterService(_Authenticated, router_grpc.RouterServiceBase):
    async def Stream(self, stream) -> None:
        peer = self.peer()
        session_id, client = _metadata(stream, "session-id"), _metadata(stream, "client-name")
        if not session_id or not client:
            raise GRPCError(Status.INVALID_ARGUMENT, "missing session-id or client-name")
        try:
            require_device(peer, client)
        except ApiError as exc:
            raise _refused(exc)
        session = await in_thread(sessions.agent_session, org_of(peer), client, session_id)
        if session is None:
            raise GRPCError(Status.NOT_FOUND, f"no console session {session_id} is open for "
                                              f"device {client}")
        protocol = _metadata(stream, "selected-protocol")
        try:
            link = await bridge.connect(session.bridge, session_id, protocol)
        except bridge.BridgeError as exc:
            await in_thread(sessions.close_session, session.id, str(exc))
            raise GRPCError(Status.UNAVAILABLE, str(exc))
        try:
            if not protocol:  # the user is told (500), as by the reference
                raise GRPCError(Status.INVALID_ARGUMENT, "missing selected-protocol")
            await in_thread(sessions.mark_connected, session.id)
            log.info("console session %s of device %s: agent stream held by process %d",
                     session_id, client, os.getpid())
            outcome = await _relay(stream, link)
        finally:
            await link.close()
        await in_thread(sessions.close_session, session.id, outcome)


async def _relay(stream, link: bridge.Link) -> str:
    """Relay until one end finishes; what happened."""

    async def from_device():
        while True:
            message = await stream.recv_message()
            if message is None:
                await link.send(bridge.CLOSE, b"")
                return "the device ended the session"
            if message.error:
                await link.send(bridge.ERROR, message.error.encode())
                return f"the device failed: {message.error}"
            if message.payload:
                await link.send(bridge.DATA, message.payload)
            if message.closed:
                await link.send(bridge.CLOSE, b"")
                return "the device ended the session"

    async def from_user():
        while True:
            kind, payload = await link.recv()
            if kind != bridge.DATA:
                await stream.send_message(router_pb2.StreamResponse(closed=True))
                return payload.decode(errors="replace") or "the user disconnected"
            await stream.send_message(router_pb2.StreamResponse(payload=payload))

    tasks = [asyncio.ensure_future(from_device()), asyncio.ensure_future(from_user())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        try:
            return next(iter(done)).result()
        except (StreamTerminatedError, ConnectionError) as exc:
            await link.send(bridge.ERROR, b"the device's stream broke")
            return f"the device's stream broke: {exc}"
    finally:
        for task in tasks:
            task.cancel()


class EnrollmentService(_Authenticated, enrollment_grpc.EnrollmentBase):
    async def TPMChallenge(self, stream) -> None:
        peer = self.peer()
        first = await stream.recv_message()
        if first is None or first.WhichOneof("payload") != "challenge_request":
            raise GRPCError(Status.INVALID_ARGUMENT, "expected challenge request")
        name = first.challenge_request.enrollment_request_name
        try:
            blob, encrypted = await in_thread(start_tpm_challenge, peer, name)
        except ApiError as exc:
            await _challenge_error(stream, exc.message)
            raise _refused(exc)
        await stream.send_message(enrollment_pb2.ServerChallenge(
            challenge=enrollment_pb2.Challenge(credential_blob=blob, encrypted_secret=encrypted)))
        answer = await stream.recv_message()
        if answer is None:
            raise GRPCError(Status.CANCELLED, "failed to receive challenge response: client "
                                              "closed stream")
        secret = (answer.challenge_response.secret
                  if answer.WhichOneof("payload") == "challenge_response" else b"")
        ok, er = await in_thread(finish_tpm_challenge, peer, name, secret)
        if ok:
            await stream.send_message(enrollment_pb2.ServerChallenge(
                success=enrollment_pb2.ChallengeComplete(
                    message="TPM challenge completed successfully")))
        else:
            condition = get_condition(er.status, "TPMVerified") or {}
            await _challenge_error(stream, condition.get("message") or "TPM challenge failed")


async def _challenge_error(stream, message: str) -> None:
    await stream.send_message(enrollment_pb2.ServerChallenge(
        error=enrollment_pb2.ChallengeError(message=message)))


def serve_connection(transport, der: bytes | None) -> None:
    """Serve gRPC on ``transport``, a TLS connection that negotiated ``h2``, whose verified
    client certificate is ``der``."""
    server = Server([RouterService(der), EnrollmentService(der)])
    # grpclib's per-connection HTTP/2 protocol, as its own listener would create it; the
    # connection is already accepted (by uvicorn's listener), so it is attached here.
    protocol = server._protocol_factory()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
