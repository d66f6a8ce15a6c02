"""`/demo`: a page that builds a form from the model card and shows the server's answer.

When the server shares its model file (`serve --model-download`), the page also scores the form
in the browser with onnxruntime-web, vendored under `static/onnxruntime-web/` so that it works
with no network, and shows whether the two answers agree.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from .assets import STATIC, packed_response

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

# onnxruntime-web's WebAssembly runtime, vendored gzip-compressed.
_WASM = "onnxruntime-web/ort-wasm-simd-threaded.wasm"


@router.get("/demo")
async def demo() -> FileResponse:
    return FileResponse(STATIC / "demo" / "index.html")


@router.get(f"/static/{_WASM}")
async def wasm(request: Request) -> Response:
    return packed_response(request, STATIC / f"{_WASM}.gz", "application/wasm")
