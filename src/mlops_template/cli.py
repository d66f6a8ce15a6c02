"""The command line: `schema`, `prepare`, `train`, `evaluate`, `predict`, `serve` and `info`.

Heavy libraries are imported inside the command that needs them, so `--help` is instant. A
`UserError` is printed as one `error:` line and a hint (exit 1); bad usage exits 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import MissingExtraError, UserError
from .settings import ENV_PREFIX, Settings

__all__ = ["app", "main"]

PROG = __name__.split(".")[0].replace("_", "-")
app = typer.Typer(
    name=PROG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Prepare data, train and export an ONNX model, evaluate it, predict in batch, serve it.",
)
console = Console()
errors = Console(stderr=True, highlight=False, soft_wrap=True)  # one line per message

SchemaOption = Annotated[
    Path | None,
    typer.Option("--schema", help=f"Dataset schema file [env: {ENV_PREFIX}SCHEMA_PATH]"),
]
ProcessedOption = Annotated[
    Path | None,
    typer.Option("--processed-dir", help=f"Prepared data folder [env: {ENV_PREFIX}PROCESSED_DIR]"),
]
ModelOption = Annotated[
    Path | None, typer.Option("--model-dir", help=f"Model folder [env: {ENV_PREFIX}MODEL_DIR]")
]
# [if tracking]
TrackOption = Annotated[
    bool | None,
    typer.Option(
        "--track/--no-track",
        help=f"Log the run to MLflow (the `track` extra) [env: {ENV_PREFIX}TRACK]",
        show_default=False,
    ),
]
RegisterOption = Annotated[
    str | None,
    typer.Option(help="Register the model in MLflow's registry under this name (implies --track)"),
]
AliasOption = Annotated[str, typer.Option(help="The alias that --register sets on the version")]
# [end tracking]


def _settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the CLI's explicit options on top."""
    from pydantic import ValidationError

    from .errors import ConfigError
    from .schema import describe_validation_error

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = "; ".join(
            f"{ENV_PREFIX}{line.split(':', 1)[0].upper()}:{line.split(':', 1)[1]}"
            for line in describe_validation_error(exc)
        )
        raise ConfigError(
            f"bad setting: {lines}",
            hint=f"fix the {ENV_PREFIX}* environment variable (or .env entry) named above",
        ) from None


def _table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


@app.command()
def schema(
    source: Annotated[Path, typer.Argument(help="A CSV or Parquet file", show_default=False)],
    target: Annotated[str, typer.Option("--target", help="The column to predict")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write it there (a file there is kept as FILE.bak), instead of printing it",
        ),
    ] = None,
) -> None:
    """Print a first dataset.toml for a file: each column's type, bounds or categories guessed
    from what it holds, with a comment on each guess to check."""
    from ._fs import atomic_write_text
    from .draft import draft_schema

    text = draft_schema(source, target, relative_to=output.parent if output else Path.cwd())
    if output is None:
        sys.stdout.write(text)
        return
    if output.is_file():  # the schema it replaces, kept whole: the draft is a starting point
        backup = output.with_name(output.name + ".bak")
        atomic_write_text(backup, output.read_text(encoding="utf-8"))
        console.print(f"kept the previous {output} as {backup}")
    atomic_write_text(output, text)
    console.print(f"wrote {output}: read each guess, then `make prepare train`")


@app.command()
def prepare(schema: SchemaOption = None, processed_dir: ProcessedOption = None) -> None:
    """Check the raw data against dataset.toml, split it, write Parquet files and a manifest."""
    from .data import prepare_dataset
    from .schema import load_schema

    settings = _settings(schema_path=schema, processed_dir=processed_dir)
    manifest = prepare_dataset(load_schema(settings.schema_path), settings.processed_dir)
    console.print(
        _table(
            f"prepared {manifest.dataset} -> {settings.processed_dir}",
            {
                "rows read": manifest.rows_in,
                "dropped (missing target)": manifest.rows_dropped_missing_target,
                "train rows": manifest.rows_train,
                "test rows": manifest.rows_test,
                "source sha256": manifest.source_sha256[:12],
            },
        )
    )


@app.command()
def train(
    schema: SchemaOption = None,
    processed_dir: ProcessedOption = None,
    model_dir: ModelOption = None,
    track: TrackOption = None,  # [tracking]
    register: RegisterOption = None,  # [tracking]
    alias: AliasOption = "candidate",  # [tracking]
) -> None:
    """Fit the scikit-learn pipeline, export it to ONNX, write the model card."""
    from .schema import load_schema

    try:
        from .train import train_model
    except ImportError as exc:
        raise MissingExtraError("training", "train", exc.name) from None
    settings = _settings(
        schema_path=schema,
        processed_dir=processed_dir,
        model_dir=model_dir,
        track=True if register else track,  # [tracking]
    )
    with console.status("training and exporting to ONNX…"):
        card = train_model(
            load_schema(settings.schema_path), settings.processed_dir, settings.model_dir
        )
    rows = {"task": card.task, "estimator": card.estimator, "version": card.version, **card.metrics}
    console.print(_table(f"trained {card.name} -> {settings.model_dir}", rows))
    # [if tracking]
    if settings.track:
        from ._fs import current_version
        from .tracking import log_training

        run, version = log_training(
            card,
            current_version(settings.model_dir),
            uri=settings.tracking_uri,
            experiment=settings.experiment or card.name,
            register=register,
            alias=alias,
        )
        console.print(f"tracked: run {run} in {settings.tracking_uri}")
        if version is not None:
            console.print(f"registered: models:/{register}@{alias} is version {version}")
    # [end tracking]


@app.command()
def evaluate(
    processed_dir: ProcessedOption = None,
    model_dir: ModelOption = None,
    track: TrackOption = None,  # [tracking]
) -> None:
    """Score the ONNX model on the test split; write metrics.json and a plot next to the card."""
    from .train import evaluate_model

    settings = _settings(
        processed_dir=processed_dir,
        model_dir=model_dir,
        track=track,  # [tracking]
    )
    metrics, plot = evaluate_model(settings.processed_dir, settings.model_dir)
    console.print(_table("held-out metrics (ONNX model, test split)", metrics))
    console.print(f"plot: {plot}")
    # [if tracking]
    if settings.track:
        from .card import CARD_FILE, load_card
        from .tracking import log_evaluation

        card = load_card(plot.parent / CARD_FILE)  # the set evaluate_model scored
        run = log_evaluation(
            card,
            metrics,
            plot,
            uri=settings.tracking_uri,
            experiment=settings.experiment or card.name,
        )
        console.print(f"tracked: run {run} in {settings.tracking_uri}")
    # [end tracking]


@app.command()
def predict(
    # Not Typer's check (a usage error, exit 2): the reader names what is wrong with the file.
    source: Annotated[
        Path,
        typer.Argument(help="CSV or Parquet file with the feature columns", readable=False),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write (.csv or .parquet)")
    ] = Path("predictions.parquet"),
    # batch.CHUNK_ROWS, spelt out so that `--help` need not import Polars (a test holds them equal)
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows per chunk")] = 100_000,
    # [if dask]
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Score on Dask: synchronous, processes, or a scheduler's tcp://HOST:PORT "
            "(needs the `dask` extra; writes a Parquet dataset, a folder). "
            "Default: this process, in chunks",
        ),
    ] = None,
    partition_rows: Annotated[
        int, typer.Option(min=1, help="Rows per Dask task (with --scheduler)")
    ] = 200_000,
    # [end dask]
    model_dir: ModelOption = None,
) -> None:
    """Score a file in chunks; write its rows plus prediction columns."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    settings = _settings(model_dir=model_dir)
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(
        *columns, console=errors, transient=True, disable=not errors.is_terminal
    ) as progress:
        task = progress.add_task("predicting", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        # [if dask]
        if scheduler is not None:
            from ._fs import current_version
            from .card import CARD_FILE, load_card
            from .distributed import predict_distributed

            model_set = current_version(settings.model_dir)  # resolved once, for every worker
            version = load_card(model_set / CARD_FILE).version
            rows = predict_distributed(
                model_set,
                source,
                output,
                scheduler=scheduler,
                partition_rows=partition_rows,
                chunk_size=chunk_size,
                on_progress=advance,
            )
            console.print(f"scored {rows} rows with model {version} -> {output}")
            return
        # [end dask]
        from .batch import predict_file
        from .inference import OnnxModel

        model = OnnxModel.load(settings.model_dir)
        rows = predict_file(model, source, output, chunk_size=chunk_size, on_progress=advance)
    console.print(f"scored {rows} rows with model {model.card.version} -> {output}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help=f"Bind address [env: {ENV_PREFIX}HOST]")] = None,
    port: Annotated[int | None, typer.Option(help=f"Port [env: {ENV_PREFIX}PORT]")] = None,
    workers: Annotated[
        int | None, typer.Option(help=f"Processes [env: {ENV_PREFIX}WORKERS]")
    ] = None,
    model_dir: ModelOption = None,
    model_download: Annotated[
        bool | None,
        typer.Option(
            "--model-download/--no-model-download",
            help="Serve the ONNX file at /model.onnx, for clients that score it themselves "
            f"[env: {ENV_PREFIX}MODEL_DOWNLOAD; off]",
        ),
    ] = None,
) -> None:
    """Serve the model over HTTP: FastAPI on uvicorn, docs at /docs."""
    try:
        from .serving.server import run
    except ImportError as exc:
        raise MissingExtraError("serving", "serve", exc.name) from None
    settings = _settings(
        host=host, port=port, workers=workers, model_dir=model_dir, model_download=model_download
    )
    url = f"http://{settings.host}:{settings.port}"
    run(settings, banner=f"serving {settings.model_dir} on {url} (docs at {url}/docs)")


@app.command()
def drift(
    # Not Typer's check (a usage error, exit 2): the reader names what is wrong with the file.
    source: Annotated[
        Path,
        typer.Argument(help="CSV or Parquet file with the feature columns", readable=False),
    ],
    plot: Annotated[Path, typer.Option(help="Where to draw each feature's bins (PNG)")] = Path(
        "reports/drift.png"
    ),
    threshold: Annotated[
        float | None,
        typer.Option(
            help=f"PSI above which a feature has drifted [env: {ENV_PREFIX}DRIFT_THRESHOLD]"
        ),
    ] = None,
    model_dir: ModelOption = None,
) -> None:
    """Compare a file with the data the model was trained on: each feature's drift (PSI)."""
    from ._fs import atomic_write_bytes, current_version
    from .batch import read_features
    from .card import CARD_FILE, load_card
    from .drift import drift as measure
    from .drift import plot_drift

    settings = _settings(model_dir=model_dir)
    limit = settings.drift_threshold if threshold is None else threshold
    model_set = current_version(settings.model_dir)
    card = load_card(model_set / CARD_FILE)
    found = measure(card.profile, read_features(card, model_set, source))
    title = f"drift of {source} from {card.name}'s training data"
    table = Table("feature", "PSI", "verdict", "noise", title=title, title_justify="left")
    noisy, rows = 0.0, 0
    for feature, (psi, bins, counts) in sorted(found.items(), key=lambda item: -item[1][0]):
        verdict = "[bold red]drifted[/]" if psi > limit else "moderate" if psi > 0.1 else "stable"
        rows = int(counts.sum())
        noise = bins.noise(rows)
        noisy = max(noisy, noise)
        table.add_row(escape(feature), f"{psi:.3f}", verdict, f"{noise:.3f}")
    console.print(table)
    if noisy > limit / 2:
        errors.print(
            f"warning: {rows} rows is few for a PSI: samples of this size from the training data "
            f"itself differ by {noisy:.3f} on average (the noise column); read verdicts as rough"
        )
    labels = {f.name: f.categories for f in card.features if f.categories}
    atomic_write_bytes(plot, plot_drift(card.name, found, labels))
    drifted = [f for f, (psi, _, _) in found.items() if psi > limit]
    console.print(
        f"{len(drifted)} of {len(found)} features drifted (PSI > {limit:g}); plot: {plot}"
    )


@app.command()
def info(model_dir: ModelOption = None) -> None:
    """Show the trained model's card: features, classes, metrics, provenance."""
    from ._fs import current_version
    from .card import CARD_FILE, load_card
    from .schema import show_bound

    settings = _settings(model_dir=model_dir)
    path = current_version(settings.model_dir) / CARD_FILE
    card = load_card(path)
    rows: dict[str, Any] = {
        "name": card.name,
        "version": card.version,
        "task": card.task,
        "estimator": card.estimator,
        "target": card.target.name,
        "classes": ", ".join(card.classes or ()) or "-",
        "trained on": f"{card.dataset.rows_train} rows (test {card.dataset.rows_test}"
        + (f", no {card.dataset.group} in both)" if card.dataset.group else ")"),
        "created": card.created_at.isoformat(),
        **card.metrics,
    }
    console.print(_table(f"model card ({path})", rows))
    features = Table(
        "feature", "type", "nullable", "allowed", title="features", title_justify="left"
    )
    for f in card.features:
        allowed = (
            ", ".join(f.categories)
            if f.categories
            else f"[{show_bound(f.min)}, {show_bound(f.max)}]"
            if f.min is not None and f.max is not None
            else "any"
        )
        features.add_row(f.name, f.type, "yes" if f.nullable else "no", allowed)
    console.print(features)


def main() -> None:
    """Run the CLI, turning a `UserError` into one `error:` line plus its hint."""
    try:
        app()
    except UserError as exc:
        errors.print(f"[bold red]error:[/] {escape(str(exc))}")
        if exc.hint:
            errors.print(f"[dim]hint:[/] {escape(exc.hint)}")
        sys.exit(1)
