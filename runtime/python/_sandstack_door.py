"""The guest's end of the door to the sandstack host.

Every exchange is one frame each way, over the builtin `_host.call(bytes) -> bytes`:

    b"SSD1" | u32 little-endian header length | header (UTF-8 JSON) | body (raw bytes)

A request header names its `op` (start, http, log, result, error); a reply header has
`ok` and, when false, an `error` object. The host's definition of the same format is
src/sandbox/door.rs: change both together.
"""

import json
import struct

import _host

MAGIC = b"SSD1"
VERSION = 1


class DoorError(Exception):
    """The host refused or could not answer a request."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def encode(header, body=b""):
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return b"".join((MAGIC, struct.pack("<I", len(head)), head, body))


def decode(frame):
    if len(frame) < 8 or frame[:4] != MAGIC:
        raise DoorError("protocol", "malformed reply from the host")
    (n,) = struct.unpack_from("<I", frame, 4)
    header = json.loads(bytes(frame[8 : 8 + n]).decode("utf-8"))
    return header, frame[8 + n :]


def call(op, header=None, body=b""):
    """Send one request; return (reply header, reply body) or raise DoorError."""
    h = {"op": op, "v": VERSION}
    if header:
        h.update(header)
    reply = _host.call(encode(h, body))
    header, rbody = decode(reply)
    if not header.get("ok"):
        err = header.get("error") or {}
        raise DoorError(err.get("kind", "error"), err.get("message", "the host refused the request"))
    return header, rbody


def log(level, message):
    try:
        call("log", {"level": level, "message": str(message)})
    except DoorError:
        pass
