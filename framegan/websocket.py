"""The server side of WebSocket (RFC 6455), just enough for framegan.play: stdlib only.

Why a WebSocket and not a ``fetch`` per frame: in headless chromium a fetch costs the browser about
11 ms of CPU per frame (a URL loader in the network service, IPC to and fro), a message on an open
WebSocket about 2 ms (measured with an instant server on the shared 2-core machine: 80 vs 600
frames/s ceiling). On 2 cores that CPU is taken from G.

Supported: the opening handshake, unfragmented text / binary messages from the client (browsers
do not fragment small ones), ping -> pong, close. Client frames are masked (the RFC requires it),
server frames are not.
"""
from __future__ import annotations

import base64
import hashlib
import struct
from typing import BinaryIO

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 20  # the page sends key names; anything this big is not the page


class WebSocketError(ValueError):
    """A frame this server does not accept (fragmented, unmasked, too large)."""


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def _read(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def read_message(stream: BinaryIO) -> tuple[int, bytes] | None:
    """Next ``(opcode, payload)`` from a client; None when the connection ended."""
    head = _read(stream, 2)
    if head is None:
        return None
    fin, opcode, masked, n = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
    if not fin or opcode == 0x0:
        raise WebSocketError("fragmented message")
    if not masked:
        raise WebSocketError("unmasked client frame")
    if n >= 126:
        ext = _read(stream, 2 if n == 126 else 8)
        if ext is None:
            return None
        n = struct.unpack(">H" if n == 126 else ">Q", ext)[0]
    if n > MAX_MESSAGE:
        raise WebSocketError(f"message of {n} bytes")
    mask = _read(stream, 4)
    payload = _read(stream, n) if mask is not None else None
    if payload is None:
        return None
    # XOR with the 4-byte mask repeated, as one big-integer operation instead of a byte loop.
    key = (mask * (n // 4 + 1))[:n]
    return opcode, (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(payload: bytes, opcode: int = BINARY) -> bytes:
    """One unmasked, unfragmented server frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return head + payload
