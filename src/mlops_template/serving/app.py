"""The application factory: `create_app(settings)`.

The model (the ONNX file, checked against its card) is loaded once, when the app is built, so
that the request schema and `/docs` match the model served; the lifespan runs a smoke
prediction and only then marks the server ready.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from .. import __version__
from ..errors import ApiError, ModelOutputError
from ..inference import OnnxModel
from ..settings import Settings
from . import demo  # [demo]
from .assets import STATIC, packed_response
from .batching import InFlight, MicroBatcher
from .metrics import ServingMetrics
from .middleware import ServingMiddleware
from .routes import health, predict, v2
from .schemas import (
    ErrorResponse,
    InferErrorResponse,
    InferResponse,
    PredictSchemas,
    fault_example,
    infer_request_schema,
)
from .service import JSONBytesResponse, ModelService, error_body

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger(__name__.rsplit(".", 1)[0])
_QUIET = 0.1  # seconds with no new connection before a drain may end
_DRAIN_LIMIT = 5  # a drain ends by this many times DRAIN_SECONDS, settled or not

try:
    from .protocol import settled as _settled
except ImportError:  # no httptools: connections are not watched, the drain lasts DRAIN_SECONDS

    def _settled(quiet: float) -> bool:
        return True


def _lifespan(settings: Settings, service: ModelService, model: OnnxModel) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model.check_outputs()  # a model that cannot predict never becomes ready
        service.model = model
        service.batcher = MicroBatcher(
            model,
            max_rows=settings.max_batch_rows,
            enabled=settings.batching,
            on_call=service.metrics.model_calls.inc,
        )
        # Everything loaded so far lives as long as the process: move it out of the collector's
        # way, so collections triggered by requests scan only their own objects.
        gc.collect()
        gc.freeze()
        _drain_before_stopping(settings.drain_seconds)
        service.ready = True
        log.info("model ready", extra={"model": service.card.name, "version": service.card.version})
        try:
            yield
        finally:
            service.ready = False
            log.info("shutting down", extra={"model": service.card.name})

    return lifespan


def _drain_before_stopping(seconds: float) -> None:
    """On SIGTERM, keep accepting and reading before the server's own shutdown.

    uvicorn's shutdown closes the listening socket and every connection with no request under
    way, so a connection the kernel had already accepted, or whose request had arrived but not
    yet been read, would be reset. The event loop takes in what is already there for `seconds`,
    and then until no connection has arrived for `_QUIET` seconds and each has begun its
    request (a busy machine reads them later), at most `_DRAIN_LIMIT` times `seconds`; then the
    handler the server installed runs as it would have (it drains the requests under way). Only
    where the server handles signals: its main thread.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    server_handler = signal.getsignal(signal.SIGTERM)
    if not callable(server_handler):
        return

    def stop_when_settled(signum: int, started: float) -> None:
        waited = loop.time() - started
        if waited >= seconds and (_settled(_QUIET) or waited >= seconds * _DRAIN_LIMIT):
            server_handler(signum, None)
        else:
            loop.call_later(_QUIET / 2, stop_when_settled, signum, started)

    def later(signum: int, frame: FrameType | None) -> None:
        log.info("draining before shutdown", extra={"seconds": seconds})
        loop.call_soon_threadsafe(stop_when_settled, signum, loop.time())

    signal.signal(signal.SIGTERM, later)


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def _install_error_handlers(app: FastAPI) -> None:
    def answer(
        request: Request, status: int, detail: list[str], headers: dict[str, str] | None = None
    ) -> JSONBytesResponse:
        return JSONBytesResponse(
            error_body(detail, _request_id(request), request.url.path),
            status_code=status,
            headers=headers,
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONBytesResponse:
        return answer(request, exc.status, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONBytesResponse:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return answer(request, 422, lines)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONBytesResponse:
        return answer(request, exc.status_code, [str(exc.detail)], dict(exc.headers or {}))

    @app.exception_handler(ModelOutputError)
    async def bad_output(request: Request, exc: ModelOutputError) -> JSONBytesResponse:
        log.error("model output not finite", extra={"request_id": _request_id(request)})
        return answer(request, 500, [str(exc)])

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONBytesResponse:
        log.exception("unhandled error", extra={"request_id": _request_id(request)})
        return answer(request, 500, ["internal server error"])


def _openapi(app: FastAPI, schemas: PredictSchemas) -> Any:
    """The OpenAPI schema, with the request bodies that the routes read themselves."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            # The hot routes are plain ASGI endpoints, which FastAPI does not document.
            paths = document.setdefault("paths", {})
            paths[predict.PATH] = predict.openapi_path(schemas)
            paths[f"{v2.PREFIX}/models/{{model_name}}/infer"] = v2.openapi_path()
            components = document.setdefault("components", {}).setdefault("schemas", {})
            models = (schemas.request, schemas.response, ErrorResponse)
            for model in (*models, InferResponse, InferErrorResponse):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[model.__name__] = schema
            # Errors as this server words them, about this model's own first feature.
            detail = components["ErrorResponse"]["properties"]["detail"]
            detail["examples"] = [[fault_example(schemas.card, "record")]]
            example = fault_example(schemas.card, "row")
            components["InferErrorResponse"]["properties"]["error"]["examples"] = [example]
            # v2: this model's tensors, and its name as the only one the paths take.
            components["InferRequest"] = infer_request_schema(schemas.card, schemas.max_rows)
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    for parameter in operation.get("parameters", ()):
                        if parameter.get("name") == "model_name":
                            parameter["schema"] = {"type": "string", "enum": [schemas.card.name]}
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


_SWAGGER_JS = "swagger-ui/swagger-ui-bundle.js"  # vendored gzip-compressed


def _install_docs(app: FastAPI) -> None:
    """`/docs`: Swagger UI from the package's own copy, so that it works with no network."""

    @app.get(f"/static/{_SWAGGER_JS}", include_in_schema=False)
    async def swagger_js(request: Request) -> Response:
        return packed_response(request, STATIC / f"{_SWAGGER_JS}.gz", "text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: docs",
            swagger_js_url=f"/static/{_SWAGGER_JS}",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI application for the model in `settings.model_dir`."""
    settings = settings or Settings()
    # Read once, file and card together: the schema, `/docs` and the answers all come from the
    # model this process serves. With `model_download` it keeps the bytes it loaded, so a
    # client scores the very file served, even once a newer training run has pruned it.
    model = OnnxModel.load(
        settings.model_dir, threads=settings.threads, keep_file=settings.model_download
    )
    card = model.card
    schemas = PredictSchemas(card, max_rows=settings.max_batch_rows)
    metrics = ServingMetrics(card, settings.drift_window, settings.drift_threshold)
    inflight = InFlight()
    service = ModelService(
        card=card,
        schemas=schemas,
        metrics=metrics,
        inflight=inflight,
    )
    app = FastAPI(
        title=f"{card.name} model server",
        version=__version__,
        description=(
            f"Serves the `{card.name}` {card.task} model (version `{card.version}`, "
            f"{card.estimator}) with onnxruntime. `POST /predict` takes records keyed by feature; "
            "the Open Inference Protocol (v2) is under `/v2`."
        ),
        lifespan=_lifespan(settings, service, model),
        telemetry={"tracing": settings.otel, "metrics": settings.otel, "logs": settings.otel},
        docs_url=None,  # served below from vendored files: FastAPI's page loads them from a CDN
        # `/predict/` is not found: a redirect would name whatever host the client claimed.
        redirect_slashes=False,
        redoc_url=None,
    )
    app.state.service = service
    app.include_router(demo.router)  # [demo]
    _install_docs(app)
    # `/predict` and v2 infer answer from the raw ASGI messages (see `PredictEndpoint`).
    codec = predict.RecordsCodec(card, settings.max_batch_rows)
    hot = [
        Route(predict.PATH, predict.PredictEndpoint(service, codec), methods=["POST"]),
        *(
            Route(f"{v2.PREFIX}{path}/infer", v2.InferEndpoint(service), methods=["POST"])
            for path in ("/models/{model_name}", "/models/{model_name}/versions/{model_version}")
        ),
    ]
    app.router.routes[:0] = hot  # first: the router tries routes in order
    routers = [v2.router, health.router]
    for router in routers:
        app.include_router(router)
    _install_error_handlers(app)
    app.openapi = _openapi(app, schemas)  # type: ignore[method-assign]
    app.add_middleware(
        ServingMiddleware,
        metrics=metrics,
        inflight=inflight,
        max_body_bytes=settings.max_body_bytes,
        max_buffered_bytes=settings.max_buffered_bytes,
        max_concurrency=settings.max_concurrency,
        body_timeout=settings.body_timeout,
        routes=[*hot, *(route for router in routers for route in router.routes)],
        log_requests=settings.log_requests,
    )
    return app


def create_app_from_env() -> FastAPI:
    """The factory uvicorn calls in each worker: settings from the environment."""
    from .server import configure_protocol

    settings = Settings()
    configure_protocol(settings)
    return create_app(settings)
