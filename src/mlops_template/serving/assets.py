"""Vendored browser assets stored gzip-compressed, so that the package stays small.

Every browser accepts gzip, so a stored file is sent as it is, with `Content-Encoding: gzip`; a
client that refuses gzip gets it unpacked as it streams out, never whole in memory.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse, Response, StreamingResponse

__all__ = ["STATIC", "packed_response"]

STATIC = Path(__file__).resolve().parent / "static"
_CHUNK = 1 << 16


def packed_response(request: Request, packed: Path, media_type: str) -> Response:
    """`packed` (a `.gz` file) for this client: as stored where it accepts gzip, else unpacked."""
    headers = {"Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        headers["Content-Encoding"] = "gzip"
        return FileResponse(packed, media_type=media_type, headers=headers)
    return StreamingResponse(_unpacked(packed), media_type=media_type, headers=headers)


def _unpacked(packed: Path) -> Iterator[bytes]:
    with gzip.open(packed, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            yield chunk


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip: its own weight, else `*`'s (RFC 9110)."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights.setdefault(coding, weight)
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0
