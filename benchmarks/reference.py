"""The yardstick: a bare ASGI app that answers `/predict` with the same ONNX session.

orjson parses the body, numpy builds the columns, onnxruntime is called once, and labels and
probabilities go back as plain lists: no framework, no checks, no middleware, no metrics. It
is the floor for a server of the same model; ours, which checks every value, is measured
against it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from mlops_template.inference import OnnxModel

_model_dir = Path(os.environ.get("MLOPS_TEMPLATE_MODEL_DIR", "models"))
_model = OnnxModel.load(_model_dir, threads=1)
_card = _model.card
_session = _model.session  # the bare floor: the ONNX session itself, nothing around it
_outputs = [o.name for o in _session.get_outputs()]
_columns = [
    (_card.inputs[f.name], f.name, np.float32 if f.is_numeric else object) for f in _card.features
]
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """orjson in, numpy columns, one onnxruntime call, plain lists out; no checks at all."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    records = orjson.loads(body)["records"]
    feed = {
        onnx: np.array(
            [r[name] if r[name] is not None else "" for r in records], dtype=kind
        ).reshape(-1, 1)
        if kind is object
        else np.array([r[name] for r in records], dtype=np.float32).reshape(-1, 1)
        for onnx, name, kind in _columns
    }
    outputs = _session.run(_outputs, feed)
    if len(outputs) == 1:
        answer: dict[str, Any] = {"values": outputs[0].reshape(-1)}
    else:
        answer = {"labels": outputs[0].tolist(), "probabilities": outputs[1]}
    content = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = [*_HEADERS, (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})
