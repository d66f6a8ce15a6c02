"""The yardstick: a bare ASGI app that answers `/predict` with the same model and orjson.

No framework, no validation beyond what encoding needs, no middleware, no metrics: the fastest
honest server for the same work. Our FastAPI server is measured against it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from mlops_template.inference import OnnxModel

_model_dir = Path(os.environ.get("MLOPS_TEMPLATE_MODEL_DIR", "models"))
_model = OnnxModel.load(_model_dir, threads=1)
_names = _model.card.feature_names
_classes = _model.card.classes or ()
_version = _model.card.version
_name = _model.card.name
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Parse, encode, run, render: the same JSON in and out as our `/predict`."""
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
    prediction = _model.run(_model.encode({n: [r[n] for r in records] for n in _names}))
    if prediction.values is not None:
        predictions: list[dict[str, Any]] = [{"value": v} for v in prediction.values.tolist()]
    else:
        assert prediction.labels is not None
        assert prediction.probabilities is not None
        predictions = [
            {"label": label, "probabilities": dict(zip(_classes, row, strict=True))}
            for label, row in zip(
                prediction.labels.tolist(), prediction.probabilities.tolist(), strict=True
            )
        ]
    answer = orjson.dumps(
        {"model_name": _name, "model_version": _version, "predictions": predictions}
    )
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": answer})
