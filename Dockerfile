# The serving image: only the model server, its dependencies and the trained model.
# Build after `make train`:  docker build -t mlops-template .
# Run:                       docker run --rm -p 8000:8000 mlops-template
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG UV_VERSION=0.13.8
# The extra installed beside the package: `serve` for the model server (the default).
# [if dask]
# `dask` makes a batch image whose pods score a file on a Dask cluster:
#   docker build --build-arg EXTRA=dask -t mlops-template-batch .
# The DaskJob in deploy/dask/ runs that image.  # [kubernetes]
# [end dask]
ARG EXTRA=serve
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m pip install "uv==${UV_VERSION}"
WORKDIR /app
# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra "${EXTRA}" --no-install-project
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra "${EXTRA}" --no-editable

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build --chown=10001:10001 /app/.venv /app/.venv
# The current model and its card, from the set `make train` published last.
COPY --chown=10001:10001 models/current/model.onnx models/current/model.json /app/models/
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    MLOPS_TEMPLATE_HOST=0.0.0.0 \
    MLOPS_TEMPLATE_PORT=8000 \
    MLOPS_TEMPLATE_MODEL_DIR=/app/models
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MLOPS_TEMPLATE_PORT', '8000') + '/health/live', timeout=2)"]
CMD ["mlops-template", "serve"]
