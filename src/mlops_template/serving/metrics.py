"""Prometheus metrics, in a registry of the app's own so that apps never share counters."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..card import ModelCard
from ..inference import Prediction

__all__ = ["CONTENT_TYPE_LATEST", "ServingMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """Requests by route and status, latency, rows predicted, predictions by class, the model."""

    def __init__(self, card: ModelCard) -> None:
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

    def predicted(self, prediction: Prediction) -> None:
        """Count a request's predicted rows and, for a classifier, its labels."""
        self.rows.inc(len(prediction))
        if prediction.probabilities is not None:
            # The label is the most probable class: count those, without a loop over rows.
            counts = np.bincount(
                prediction.probabilities.argmax(axis=1), minlength=len(self._class_children)
            )
            for child, count in zip(self._class_children, counts.tolist(), strict=False):
                if count:
                    child.inc(count)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
