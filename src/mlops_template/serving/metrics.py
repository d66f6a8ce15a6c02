"""Prometheus metrics, in a registry of the app's own so that apps never share counters."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..card import ModelCard
from ..contract import Column
from ..drift import DEFAULT_THRESHOLD, DriftWindow
from ..inference import Prediction

log = logging.getLogger(__name__.rsplit(".", 1)[0])

__all__ = ["CONTENT_TYPE_LATEST", "ServingMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """Requests by route and status, latency, rows predicted, predictions by class, the model,
    and each feature's drift over the last `drift_window` rows scored."""

    def __init__(
        self, card: ModelCard, drift_window: int = 0, drift_threshold: float = DEFAULT_THRESHOLD
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from request to response",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inflight = Gauge(
            "http_requests_in_flight", "Requests being handled", registry=self.registry
        )
        self.receiving = Gauge(
            "http_requests_receiving",
            "Requests whose body is still arriving (they hold a connection, not the model)",
            registry=self.registry,
        )
        self.rejected = Counter(
            "http_requests_rejected_overload",
            "Requests answered 503 by the overload limit",
            registry=self.registry,
        )
        self.rows = Counter("model_rows_predicted", "Rows predicted", registry=self.registry)
        self.model_calls = Counter(
            "model_calls",
            "onnxruntime calls (fewer than requests when batched)",
            registry=self.registry,
        )
        self.by_class = Counter(
            "model_predictions", "Predictions by class", ["label"], registry=self.registry
        )
        info = Info("model", "The served model", registry=self.registry)
        info.info(
            {
                "name": card.name,
                "version": card.version,
                "task": card.task,
                "estimator": card.estimator,
            }
        )
        self.drift = Gauge(
            "model_feature_drift_psi",
            f"Population stability index of each feature over the last {drift_window} rows "
            "scored, against the training data (absent until that many rows came)",
            ["feature"],
            registry=self.registry,
        )
        self.unknown_texts = Counter(
            "model_texts_without_known_terms",
            "Texts scored that held no term the model knows, by feature",
            ["feature"],
            registry=self.registry,
        )
        self.window = DriftWindow(card.profile, card.features, drift_window)
        self.drift_threshold = drift_threshold
        self._drifted: set[str] = set()
        self._class_children = [self.by_class.labels(label=c) for c in card.classes or ()]
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method=method, route=route, status=str(status)),
                self.latency.labels(route=route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def predicted(
        self,
        prediction: Prediction,
        columns: Sequence[Column] = (),
        unknown: dict[str, list[int]] | None = None,
    ) -> None:
        """Count a request's predicted rows, for a classifier its labels, and the texts that
        held no known term (`unknown`, by feature); keep its checked `columns` in the drift
        window."""
        self.rows.inc(len(prediction))
        for feature, rows in (unknown or {}).items():
            if rows:
                self.unknown_texts.labels(feature=feature).inc(len(rows))
        if columns:
            self.window.add(columns)
            if self.window.size and self.window.fresh >= self.window.size:
                self.measure_drift()
        if prediction.probabilities is not None:
            # The label is the most probable class: count those, without a loop over rows.
            counts = np.bincount(
                prediction.probabilities.argmax(axis=1), minlength=len(self._class_children)
            )
            for child, count in zip(self._class_children, counts.tolist(), strict=False):
                if count:
                    child.inc(count)

    def measure_drift(self) -> None:
        """Set each feature's drift gauge from the window; log a feature whose PSI crosses the
        threshold, either way."""
        for feature, psi in self.window.psi().items():
            self.drift.labels(feature=feature).set(psi)
            facts = {"feature": feature, "psi": round(psi, 4), "rows": self.window.size}
            if psi > self.drift_threshold and feature not in self._drifted:
                self._drifted.add(feature)
                log.warning("feature drifted", extra=facts | {"threshold": self.drift_threshold})
            elif psi <= self.drift_threshold and feature in self._drifted:
                self._drifted.discard(feature)
                log.info("feature no longer drifted", extra=facts)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        if self.window.fresh:
            self.measure_drift()
        return generate_latest(self.registry)
