"""The Open Inference Protocol's binary tensor extension: tensors as raw bytes after the JSON.

A request may send any input's values as bytes after its JSON header (whose length the
`Inference-Header-Content-Length` header gives), and ask for outputs the same way; the stock
Triton client does both by default.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from msgspec import UNSET

from ...errors import ApiError
from ..schemas import InferBody, InferTensor

__all__ = ["HEADER_LENGTH", "encode", "split_body", "tensor_values"]

HEADER_LENGTH = "inference-header-content-length"
_BINARY_TYPES = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}


def split_body(length: str | None, body: bytes) -> tuple[bytes, bytes]:
    """The JSON header and the binary data of a request in the binary tensor extension, split
    at its Inference-Header-Content-Length (`length`, None for a JSON request)."""
    if length is None:
        return body, b""
    if not length.isdigit() or int(length) > len(body):
        raise ApiError(400, [f"{HEADER_LENGTH}: {length[:20]!r} is not a length within the body"])
    return body[: int(length)], body[int(length) :]


def _values(tensor: InferTensor, index: int, blob: memoryview) -> list[Any]:
    """A tensor's values from the binary tensor extension: little-endian numbers (NaN for a
    missing number), or BYTES as 4-byte lengths and UTF-8 text (empty for a missing label)."""
    where = f"inputs[{index}]"
    if tensor.datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset < len(blob):
            if offset + 4 > len(blob):
                raise ApiError(400, [f"{where}: BYTES data ends inside an element's length"])
            (size,) = struct.unpack_from("<I", blob, offset)
            text = bytes(blob[offset + 4 : offset + 4 + size])
            if len(text) != size:
                raise ApiError(400, [f"{where}: BYTES data ends inside an element"])
            try:
                values.append(text.decode("utf-8"))  # empty: the protocol's missing label
            except UnicodeDecodeError:
                raise ApiError(400, [f"{where}: BYTES element is not UTF-8 text"]) from None
            offset += 4 + size
        return values
    if tensor.datatype not in _BINARY_TYPES:
        raise ApiError(422, [f"{where}.datatype: no binary form for {tensor.datatype}"])
    dtype = np.dtype(_BINARY_TYPES[tensor.datatype])
    if len(blob) % dtype.itemsize:
        raise ApiError(400, [f"{where}: {len(blob)} bytes is not a whole number of {dtype}"])
    array = np.frombuffer(blob, dtype=dtype)
    return list(array.tolist())  # NaN stays NaN: the protocol's missing number


def tensor_values(parsed: InferBody, binary: bytes) -> list[list[Any] | None]:
    """Every input tensor's values, from its `data` or from the binary data that follows."""
    blob = memoryview(binary)
    offset = 0
    values: list[list[Any] | None] = []
    for i, tensor in enumerate(parsed.inputs):
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            values.append(None if tensor.data is UNSET else tensor.data)
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ApiError(422, [f"inputs[{i}].parameters.binary_data_size: not a size"])
        if offset + size > len(blob):
            raise ApiError(400, [f"inputs[{i}]: binary data shorter than binary_data_size"])
        values.append(_values(tensor, i, blob[offset : offset + size]))
        offset += size
    if offset != len(blob):
        raise ApiError(400, [f"{len(blob) - offset} bytes of binary data belong to no input"])
    return values


def encode(datatype: str, array: Any) -> bytes:
    """An output tensor in the binary tensor extension's encoding."""
    if datatype == "BYTES":
        encoded = [str(v).encode("utf-8") for v in array.tolist()]
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    return bytes(np.ascontiguousarray(array, dtype="<f4").tobytes())
