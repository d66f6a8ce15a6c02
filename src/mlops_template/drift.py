"""Data drift: how far what a model scores has moved from what it was trained on.

`train` keeps a profile of each feature of the training split in the model card: for numbers
and dates, ten bins that each held a tenth of the rows (the deciles' edges); for categories,
each category's share; for both, the share of missing values. Rows scored later (by the server,
over a bounded window of recent rows, or from a file by `drift`) are binned the same way, from
the data contract's columns, and compared with the profile by the population stability index:
the sum over bins of `(actual - expected) * ln(actual / expected)`. A PSI under 0.1 is commonly
read as no change, 0.1 to 0.25 as a moderate one, and over 0.25 as a shift to act on.

Text features have no profile: their terms are the model's, not a distribution of values.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from .contract import NULL, Column
from .schema import ColumnSpec, Frozen

__all__ = ["DEFAULT_THRESHOLD", "DriftWindow", "FeatureProfile", "drift", "plot_drift", "profile"]

DEFAULT_THRESHOLD = 0.25
_QUANTILES = np.linspace(0.1, 0.9, 9)
# Half a row added to every bin on both sides (Jeffreys' prior), so that a bin one side never
# filled (no missing values in a small file, say) keeps the index finite without ruling it.
_PRIOR = 0.5


class FeatureProfile(Frozen):
    """One feature of the training data: its bins and the share of rows in each."""

    edges: tuple[float, ...] = ()  # numbers and dates: the inner edges of the bins
    shares: tuple[float, ...]  # the share of training rows in each bin; missing values last
    rows: int = 0  # training rows

    def counts(self, column: Column) -> npt.NDArray[np.int64]:
        """How many of `column`'s rows fall in each bin (checked rows: no unknown category)."""
        width = len(self.shares)
        if column.codes is not None:
            bins = np.where(column.codes == NULL, width - 1, column.codes)
        else:
            assert column.numbers is not None
            bins = np.searchsorted(np.array(self.edges), column.numbers, side="right")
            bins[np.isnan(column.numbers)] = width - 1
        return np.bincount(bins, minlength=width)

    def psi(self, counts: npt.NDArray[np.int64]) -> float:
        """The population stability index of rows binned as `counts`, against training."""
        total = int(counts.sum())
        if not total:
            return math.nan
        expected = _smoothed(np.array(self.shares) * self.rows)
        actual = _smoothed(counts.astype(np.float64))
        return float(np.sum((actual - expected) * np.log(actual / expected)))

    def noise(self, rows: int) -> float:
        """The PSI that `rows` rows drawn from the training data itself give on average: a PSI
        near it says nothing (for many rows, (bins - 1) * (1/rows + 1/training rows))."""
        return (len(self.shares) - 1) * (1 / max(rows, 1) + 1 / max(self.rows, 1))


def _smoothed(counts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return (counts + _PRIOR) / (float(counts.sum()) + _PRIOR * len(counts))


def profile(column: Column) -> FeatureProfile | None:
    """The profile of a training column; None for text."""
    if column.texts is not None:
        return None
    if column.codes is not None:
        bins = FeatureProfile(shares=(0.0,) * (len(column.spec.categories or ()) + 1))
    else:
        assert column.numbers is not None
        present = column.numbers[~np.isnan(column.numbers)]
        deciles = np.quantile(present, _QUANTILES).tolist() if len(present) else []
        # Ten significant digits, as the card is read; a value that fills several deciles
        # (a code, a year) makes one edge, not several empty bins.
        edges = tuple(sorted({float(f"{edge:.10g}") for edge in deciles}))
        bins = FeatureProfile(edges=edges, shares=(0.0,) * (len(edges) + 2))
    counts = bins.counts(column)
    return bins.model_copy(update={"shares": _shares(counts), "rows": int(counts.sum())})


def _shares(counts: npt.NDArray[np.int64]) -> tuple[float, ...]:
    return tuple((counts / max(int(counts.sum()), 1)).round(6).tolist())


def drift(
    profiles: dict[str, FeatureProfile], columns: Iterable[Column]
) -> dict[str, tuple[float, FeatureProfile, npt.NDArray[np.int64]]]:
    """Each profiled feature's PSI, with its profile and the columns' counts per bin."""
    out = {}
    for column in columns:
        found = profiles.get(column.spec.name)
        if found is not None:
            counts = found.counts(column)
            out[column.spec.name] = (found.psi(counts), found, counts)
    return out


def plot_drift(
    name: str,
    found: dict[str, tuple[float, FeatureProfile, npt.NDArray[np.int64]]],
    labels: dict[str, tuple[str, ...]],
) -> bytes:
    """A PNG of each feature's bins: the training data's share beside the file's, with its PSI.

    `labels` names a category feature's bins (its categories); other bins are numbered.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(len(found), 3) or 1
    rows = max(math.ceil(len(found) / columns), 1)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax in axes.flat[len(found) :]:
        ax.set_axis_off()
    for ax, (feature, (psi, bins, counts)) in zip(axes.flat, found.items(), strict=False):
        names = [*labels.get(feature, range(1, len(bins.shares))), "missing"]
        where = np.arange(len(bins.shares))
        ax.bar(where - 0.2, bins.shares, width=0.4, label="training")
        ax.bar(where + 0.2, counts / max(int(counts.sum()), 1), width=0.4, label="this file")
        ax.set_xticks(where, [str(n)[:10] for n in names], rotation=45, fontsize=7)
        ax.set_title(f"{feature[:30]}: PSI {psi:.3f}", fontsize=9)
    axes.flat[0].legend(fontsize=7)
    figure.suptitle(f"{name}: drift from the training data", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


class DriftWindow:
    """The last `size` rows a server scored, per profiled feature, and their PSI.

    A request's rows are kept as the arrays the data contract read them into: nothing is
    computed per request; the window is binned only when its PSI is asked for.
    """

    def __init__(
        self, profiles: dict[str, FeatureProfile], features: Sequence[ColumnSpec], size: int
    ) -> None:
        self.profiles = profiles
        self.size = size
        self._watched = [f for f in features if f.name in profiles]
        self._batches: deque[list[npt.NDArray[np.generic]]] = deque()
        self.rows = 0  # in the window
        self.fresh = 0  # taken in since the PSI was last asked for

    def add(self, columns: Sequence[Column]) -> None:
        """Take in one request's checked columns (in the card's feature order)."""
        if not self.size or not self._watched:
            return
        kept = [_values(c) for c in columns if c.spec.name in self.profiles]
        self._batches.append(kept)
        self.rows += len(kept[0])
        self.fresh += len(kept[0])
        while self.rows - len(self._batches[0][0]) >= self.size:
            self.rows -= len(self._batches.popleft()[0])

    def psi(self) -> dict[str, float]:
        """Each watched feature's PSI over the last `size` rows; empty until that many came."""
        self.fresh = 0
        if self.rows < self.size:
            return {}
        out = {}
        for i, spec in enumerate(self._watched):
            values = np.concatenate([batch[i] for batch in self._batches])[-self.size :]
            if spec.type == "category":
                column = Column(spec, codes=values.astype(np.int32))
            else:
                column = Column(spec, numbers=values.astype(np.float64))
            found = self.profiles[spec.name]
            out[spec.name] = found.psi(found.counts(column))
        return out


def _values(column: Column) -> npt.NDArray[np.generic]:
    values = column.codes if column.codes is not None else column.numbers
    assert values is not None
    return values
