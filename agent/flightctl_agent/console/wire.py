"""The two messages of ``flightctl.v1.RouterService/Stream`` in protobuf's wire format.

agent_api/grpc_v1/router.proto defines them; three scalar fields do not justify a protobuf
runtime on every device, so they are encoded here (and grpclib's codec only needs
``SerializeToString`` and ``FromString``). tests/agent/test_console.py checks them against
the generated classes.
"""

from __future__ import annotations

from dataclasses import dataclass

METHOD = "/flightctl.v1.RouterService/Stream"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes):
    """``(number, value)`` of each field: ints for varints, bytes for length-delimited."""
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, at = _read_varint(data, at)
        elif kind == 2:
            size, at = _read_varint(data, at)
            value, at = data[at:at + size], at + size
        elif kind in (1, 5):  # fixed64 / fixed32: no such field here, skipped
            value, at = None, at + (8 if kind == 1 else 4)
        else:
            raise ValueError(f"unsupported wire type {kind}")
        yield number, value


@dataclass
class StreamRequest:
    """Device → service: a frame of the session's protocol, the end, or a failure."""

    payload: bytes = b""
    closed: bool = False
    error: str = ""

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name, grpclib calls it
        out = b""
        if self.payload:
            out += b"\x0a" + _varint(len(self.payload)) + self.payload
        if self.closed:
            out += b"\x10\x01"
        if self.error:
            text = self.error.encode()
            out += b"\x1a" + _varint(len(text)) + text
        return out


@dataclass
class StreamResponse:
    """Service → device: a frame from the user, or the end of the session."""

    payload: bytes = b""
    closed: bool = False

    @classmethod
    def FromString(cls, data: bytes) -> StreamResponse:  # noqa: N802 - protobuf's name
        message = cls()
        for number, value in _fields(data):
            if number == 1 and isinstance(value, bytes):
                message.payload = bytes(value)
            elif number == 2 and isinstance(value, int):
                message.closed = bool(value)
        return message
