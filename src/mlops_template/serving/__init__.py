"""The model server: FastAPI on uvicorn, onnxruntime behind it, the model card in front.

`create_app(settings)` builds the application; `run(settings)` serves it.
"""

from .app import create_app

__all__ = ["create_app"]
