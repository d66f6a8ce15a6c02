"""`/demo`: a page that builds a form from the model card and shows the server's answer.

When the server shares its model file (`serve --model-download`), the page also scores the form
in the browser with onnxruntime-web, vendored under `static/onnxruntime-web/` so that it works
with no network, and shows whether the two answers agree.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_STATIC = Path(__file__).resolve().parent / "static"
# onnxruntime-web's WebAssembly runtime, vendored gzip-compressed.
_WASM = "onnxruntime-web/ort-wasm-simd-threaded.wasm"


@router.get("/demo")
async def demo() -> FileResponse:
    return FileResponse(_STATIC / "demo" / "index.html")


@router.get(f"/static/{_WASM}")
async def wasm(request: Request) -> Response:
    # Sent as stored, gzip-encoded, to every browser (they all accept it); unpacked in memory
    # for a client that refuses gzip.
    packed = _STATIC / f"{_WASM}.gz"
    headers = {"Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        headers["Content-Encoding"] = "gzip"
        return FileResponse(packed, media_type="application/wasm", headers=headers)
    body = await run_in_threadpool(lambda: gzip.decompress(packed.read_bytes()))
    return Response(body, media_type="application/wasm", headers=headers)


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
