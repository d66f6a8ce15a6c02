"""The peer: a minimal MLServer custom runtime for the same `model.onnx`.

MLServer loads this file in its own environment (`benchmarks/serving.py` installs it there), so
it imports nothing of this project: it reads the model card as plain JSON. It decodes each input
with MLServer's own codecs, makes one onnxruntime call and encodes the label and probabilities
(or the value) back: what a user of MLServer would write for this model, no more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):  # type: ignore[misc]
    """One onnxruntime session on one thread; one input tensor per feature."""

    async def load(self) -> bool:
        folder = Path(self.settings.parameters.uri)
        card: dict[str, Any] = json.loads((folder / "model.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._onnx_names: dict[str, str] = card["inputs"]
        self._strings = {f["name"] for f in card["features"] if f["type"] in ("category", "text")}
        self._regression = card["task"] == "regression"
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.ready = True
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {}
        for tensor in payload.inputs:
            if tensor.name in self._strings:
                column = np.array(StringCodec.decode_input(tensor), dtype=object)
            else:
                column = NumpyCodec.decode_input(tensor).astype(np.float32)
            feed[self._onnx_names[tensor.name]] = column.reshape(-1, 1)
        outputs = self._session.run(self._outputs, feed)
        if self._regression:
            encoded = [NumpyCodec.encode_output("value", outputs[0].reshape(-1))]
        else:
            encoded = [
                StringCodec.encode_output("label", [str(v) for v in outputs[0].tolist()]),
                NumpyCodec.encode_output("probabilities", outputs[1]),
            ]
        return InferenceResponse(model_name=self.name, outputs=encoded)
