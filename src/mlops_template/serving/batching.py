"""Dynamic batching: concurrent requests share one model call, with no added delay.

A request's checked, encoded inputs join a queue, and a flush is scheduled for the end of the event
loop's current iteration; every request whose body was parsed in that iteration rides along.
Under load that turns many onnxruntime calls of one row into few calls of many rows (each call
costs tens of microseconds before the first row).

Queueing costs one turn of the event loop, which a lone client would feel as latency. So the
batcher keeps a moving average of how many requests each flush carried; while it says requests
come one at a time, it runs them at once and only sends every 16th through the queue, to notice
when concurrent traffic arrives. Requests of many rows run at once too: batching them saves
nothing, since the fixed cost of a call is small beside theirs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ModelOutputError
from ..inference import Feed, OnnxModel, Prediction

__all__ = ["InFlight", "MicroBatcher"]
_SOLO = 1.5  # below this many requests per flush, traffic counts as one client at a time
_PROBE_EVERY = 16
_LARGE = 64  # a request this large gains nothing from company: a call's fixed cost is paid


class InFlight:
    """How many requests the process is handling now; kept by the serving middleware."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class MicroBatcher:
    """Coalesces the feeds of concurrent requests into model calls of at most `max_rows`."""

    def __init__(
        self,
        model: OnnxModel,
        *,
        max_rows: int,
        enabled: bool = True,
        on_call: Callable[[], None] | None = None,
    ) -> None:
        self._model = model
        self._on_call = on_call or (lambda: None)
        self._max_rows = max_rows
        self._enabled = enabled
        self._pending: list[tuple[Feed, int, asyncio.Future[Prediction]]] = []
        self._scheduled = False
        self._per_flush = 1.0  # moving average of requests carried by a flush
        self._since_probe = 0

    async def predict(self, feed: Feed, rows: int) -> Prediction:
        """Predict `rows` rows of checked inputs, maybe in one model call with other requests'."""
        solo = self._per_flush < _SOLO and self._since_probe < _PROBE_EVERY and not self._pending
        if not self._enabled or solo or rows >= _LARGE:
            self._since_probe += 1
            self._on_call()
            return self._model.run(feed)
        self._since_probe = 0
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append((feed, rows, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        self._per_flush = 0.8 * self._per_flush + 0.2 * len(pending)
        group: list[tuple[Feed, int, asyncio.Future[Prediction]]] = []
        size = 0
        for item in pending:
            if group and size + item[1] > self._max_rows:
                self._run(group)
                group, size = [], 0
            group.append(item)
            size += item[1]
        if group:
            self._run(group)

    def _run(self, group: list[tuple[Feed, int, asyncio.Future[Prediction]]]) -> None:
        live = [item for item in group if not item[2].done()]  # a client may have gone
        if not live:
            return
        if len(live) == 1:
            feed = live[0][0]
        else:
            feed = {name: np.concatenate([item[0][name] for item in live]) for name in live[0][0]}
        try:
            self._on_call()
            prediction = self._model.run(feed)
        except ModelOutputError:
            if len(live) > 1:  # find whose rows it was, and fail only that request
                for item in live:
                    self._run([item])
                return
            live[0][2].set_exception(ModelOutputError("the model produced a non-finite output"))
            return
        except Exception as exc:  # a bug: every request in the call learns of it
            for item in live:
                item[2].set_exception(exc)
            return
        start = 0
        for _, rows, future in live:
            future.set_result(_slice(prediction, start, start + rows))
            start += rows


def _slice(prediction: Prediction, start: int, stop: int) -> Prediction:
    def part(array: Any) -> Any:
        return None if array is None else array[start:stop]

    return Prediction(
        part(prediction.labels),
        part(prediction.probabilities),
        part(prediction.values),
        part(prediction.classes),
    )
