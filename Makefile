# One vocabulary for people, hooks, the devcontainer and CI. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# uv manages the environment; `make install` bootstraps it into .tools/ when it is not on PATH,
# so a machine with only python3, pip, make and git is enough.
UV_VERSION := 0.13.8
UV ?= $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
export UV_COMPILE_BYTECODE ?= 1
export UV_PYTHON_DOWNLOADS ?= never
# uv links packages from its cache (hard links where the filesystem allows; the devcontainer,
# whose workspace is another mount, and the image copy).
RUN := $(UV) run --frozen --no-sync
# The environment, made (or brought up to date) by any target that needs it.
VENV := .venv/pyvenv.cfg
PKG := mlops_template
CLI := $(RUN) mlops-template

.PHONY: help
help: ## Show this help (in colour on a terminal)
	@if [ -t 1 ]; then on=$$'\033[36m'; off=$$'\033[0m'; else on=; off=; fi; \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / \
		{printf "  %s%-16s%s %s\n", on, $$1, off, $$2}' $(MAKEFILE_LIST)

# The machine's pip installs uv into a venv without pip of its own (ensurepip alone takes
# seconds, and Debian ships it separately); a pip older than 22.3 (no --python) takes the long way.
$(CURDIR)/.tools/bin/uv:
	python3 -m venv --without-pip .tools
	python3 -m pip --python .tools/bin/python install --quiet "uv==$(UV_VERSION)" 2>/dev/null \
		|| { .tools/bin/python -m ensurepip --default-pip >/dev/null \
		&& .tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"; }

.PHONY: install
install: $(UV) ## Create .venv with every dependency from uv.lock
	$(UV) sync --frozen --all-extras
	@touch $(VENV)

$(VENV): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras
	@touch $(VENV)

.PHONY: hooks
hooks: install ## Install the git pre-commit hooks (they call make)
	$(RUN) pre-commit install

.PHONY: format
format: $(VENV) ## Format and autofix the code
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

.PHONY: lint
lint: check-conflicts $(VENV) ## Lint: ruff, formatting, the lock, the Dockerfile, the Kubernetes manifests, workflows
	$(UV) lock --check
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) hadolint Dockerfile  # [docker]
	$(RUN) hadolint .devcontainer/Dockerfile  # [devcontainer]
	$(RUN) python deploy/validate.py  # [kubernetes]
	$(RUN) zizmor --offline --quiet .github/workflows
	$(RUN) check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(RUN) check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml

# [if kubernetes]
.PHONY: k8s-validate
k8s-validate: $(VENV) ## Render every Kubernetes overlay in deploy/ and validate it, offline
	$(RUN) python deploy/validate.py

.PHONY: k8s-smoke
k8s-smoke: $(VENV) ## Run the image on a kind cluster, predict via the Service (Docker, kind)
	$(RUN) python .ci/kind_smoke.py

# [end kubernetes]
.PHONY: check-conflicts
check-conflicts: ## Fail while an update has left conflict markers or .rej files
	@bash .ci/check-conflicts

.PHONY: typecheck
typecheck: $(VENV) ## Type-check src/ with mypy (strict)
	$(RUN) mypy

.PHONY: test
test: $(VENV) ## Run every test, slow end-to-end ones included (one process per core)
	$(RUN) pytest -m "not container" -n auto

.PHONY: test-fast
test-fast: $(VENV) ## Run the tests, skipping the slow end-to-end ones (one process per core)
	$(RUN) pytest -m "not e2e and not container" -n auto

.PHONY: all
all: install lint typecheck test ## Install, lint, type-check and test: what CI runs

# [if containers]
# Docker where its daemon answers, else Podman (daemonless: no engine to run).
ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)

.PHONY: test-containers
test-containers: $(VENV) ## Build the images and the devcontainer, run them and test them (Docker or Podman)
	ENGINE='$(ENGINE)' $(RUN) pytest -m container -rs -s

# [end containers]
# [if docker]
IMAGE ?= mlops-template:dev
# Podman keeps a HEALTHCHECK only in Docker's image format (Docker ignores the variable).
.PHONY: image
image: models/current/model.onnx ## Build the serving image of the current model: IMAGE=name:tag, EXTRA=dask for batch
	BUILDAH_FORMAT=docker $(ENGINE) build $(if $(EXTRA),--build-arg EXTRA=$(EXTRA)) \
		$(BUILD_FLAGS) --tag $(IMAGE) .

models/current/model.onnx: | $(VENV)
	$(CLI) prepare
	$(CLI) train

# [end docker]
.PHONY: schema
schema: $(VENV) ## Print a first dataset.toml for a file: make schema INPUT=data.csv TARGET=column [OUTPUT=dataset.toml]
	@$(CLI) schema "$(INPUT)" --target "$(TARGET)" $(if $(OUTPUT),--output "$(OUTPUT)")

.PHONY: prepare
prepare: $(VENV) ## Check and split data/raw into data/processed
	$(CLI) prepare

.PHONY: train
train: $(VENV) ## Train, export models/current/model.onnx and its card model.json
	$(CLI) train

.PHONY: evaluate
evaluate: $(VENV) ## Score the model on the test split, plot its errors
	$(CLI) evaluate

.PHONY: predict
predict: $(VENV) ## Score a file: make predict INPUT=data.csv OUTPUT=predictions.parquet
	$(CLI) predict "$(or $(INPUT),data/processed/current/test.parquet)" --output "$(or $(OUTPUT),predictions.parquet)"

.PHONY: drift
drift: $(VENV) ## Each feature's drift in a file from the training data: make drift INPUT=data.csv
	$(CLI) drift "$(or $(INPUT),data/processed/current/test.parquet)"

# [if tracking]
.PHONY: track-ui
track-ui: $(VENV) ## Browse the runs `train --track` logged, in MLflow's UI on 127.0.0.1 (PORT=5000)
	@# The UI is not in the project's environment: uv fetches the full MLflow, at the version
	@# of the project's client, on first use, and runs it on its own: one worker, no job
	@# runner (browsing needs neither), no telemetry. `exec` hands make's SIGTERM to uv, which
	@# passes it (and Ctrl-C's SIGINT) on to MLflow.
	@set -- $$($(RUN) python -c 'import importlib.metadata as m, $(PKG).settings as s; \
		print(m.version("mlflow-skinny"), s.Settings().tracking_uri)'); \
	echo "MLflow $$1's UI on http://127.0.0.1:$(or $(PORT),5000) for $$2 (Ctrl-C stops it)"; \
	MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
		exec $(UV) tool run --from "mlflow==$$1" mlflow ui --backend-store-uri "$$2" \
		--host 127.0.0.1 --port "$(or $(PORT),5000)" --workers 1

# [end tracking]
.PHONY: serve
serve: $(VENV) ## Serve the model on http://127.0.0.1:8000 (API docs at /docs)
	$(CLI) serve --model-download

.PHONY: info
info: $(VENV) ## Show the trained model's card
	$(CLI) info

.PHONY: bench
bench: $(VENV) ## Print performance figures on your data (QUICK=1: small sizes, to try it)
	UV=$(UV) $(RUN) python -m benchmarks $(if $(QUICK),--quick)

.PHONY: update
update: $(VENV) ## Take the template's latest release (copier update), keeping your own changes
	@RUN='$(RUN)' UV='$(UV)' bash .ci/update $(ARGS)

.PHONY: lock
lock: check-conflicts | $(UV) ## Write uv.lock for pyproject.toml (after resolving an update's conflicts)
	$(UV) lock

.PHONY: clean
clean: ## Remove generated data, models and caches
	rm -rf data/processed models predictions.parquet reports .pytest_cache .mypy_cache \
		.ruff_cache .hypothesis .bench

# The project's own targets: a file of its own, so that updates of this one never conflict.
-include project.mk

# [if template]
# The template's own targets (new, sync-template, …); projects made from it never see these lines.
-include generator.mk
# [end template]
