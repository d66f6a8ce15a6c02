"""Every error this package raises on purpose, in one tree.

```
Error                              base of every error raised on purpose
├── UserError                      something the user can fix; `hint` says how
│   ├── ConfigError                a settings value or the dataset schema file is wrong
│   ├── DataFileError              a data file is missing, unreadable, empty or ragged
│   ├── DataSchemaError            a data file's columns or values break the dataset schema
│   ├── ModelNotFoundError         no trained model where one was expected
│   ├── ModelIntegrityError        the ONNX file does not match its model card
│   ├── InputValidationError       inference inputs break the model's feature schema
│   └── MissingExtraError          a command needs an extra that is not installed
├── ModelOutputError               the model gave an answer its card does not allow (a bug)
└── ApiError                       an HTTP answer other than 200: status, detail, headers
```

The CLI prints a `UserError` as one `error:` line plus its hint and exits 1; the server answers
an `ApiError` as it says, an `InputValidationError` as 422 and a `ModelOutputError` as 500.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ApiError",
    "ConfigError",
    "DataFileError",
    "DataSchemaError",
    "Error",
    "InputValidationError",
    "Issue",
    "MissingExtraError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "ModelOutputError",
    "UserError",
    "first_line",
]


def first_line(exc: BaseException) -> str:
    """An exception's message as one line, for a library's error shown to the user; its type
    where it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Error(Exception):
    """Base of every error raised on purpose."""


class UserError(Error):
    """Something the user can fix; `hint` says how."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(UserError, ValueError):
    """A settings value or the dataset schema file is wrong."""

    hint = "fix the value named above; the README's 'Bring your own dataset' shows the format"


class DataFileError(UserError, OSError):
    """A data file is missing, unreadable, empty or has ragged rows."""

    hint = "check the file named above"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in tabular input: where it is and what was expected."""

    column: str
    message: str
    rows: Sequence[int] = ()
    row_label: str = "row"
    count: int = 0

    def __str__(self) -> str:
        where = ""
        if self.rows:
            more = max(self.count, len(self.rows)) - len(self.rows)
            shown = ", ".join(str(r) for r in self.rows)
            label = self.row_label if len(self.rows) == 1 and not more else f"{self.row_label}s"
            where = f" ({label} {shown}{f' and {more} more' if more else ''})"
        return f"column '{self.column}': {self.message}{where}"


class _IssuesError(UserError, ValueError):
    """An error that carries every issue found, so the user can fix them all at once."""

    def __init__(self, source: str, issues: Sequence[Issue], *, hint: str | None = None) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        count = len(self.issues)
        plural = "s" if count != 1 else ""
        super().__init__(f"{source}: {count} problem{plural}\n{lines}", hint=hint)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its parts in another process: a Dask worker's error reaches the driver.
        return (type(self), (self.source, self.issues), self.__dict__)


class DataSchemaError(_IssuesError):
    """A data file's columns or values break the dataset schema."""

    hint = "fix the rows named above, or the schema if the data is right"


class InputValidationError(_IssuesError):
    """Inference inputs break the model's feature schema."""

    hint = "send every feature the model card lists, with values of the declared type and range"


class ModelNotFoundError(UserError, FileNotFoundError):
    """No trained model where one was expected."""

    hint = "run `make train` first"


class ModelIntegrityError(UserError, ValueError):
    """The ONNX file does not match its model card (truncated, tampered or mismatched)."""

    hint = "retrain with `make train` so the model and its card are written together"


class MissingExtraError(UserError, ImportError):
    """A command needs one of the package's extras (`train`, `serve`, ...) that is not installed."""

    def __init__(self, what: str, extra: str, missing: str | None) -> None:
        super().__init__(
            f"{what} needs the `{extra}` extra, which is not installed ({missing or extra})",
            hint=f"install it: `make install`, or `uv sync --extra {extra}`",
        )


class ModelOutputError(Error):
    """The model gave an answer its card does not allow (NaN, an unknown label): a model bug."""


class ApiError(Error):
    """An HTTP answer other than 200: a status, one line per problem, optional headers."""

    def __init__(
        self, status: int, detail: Sequence[str], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__("; ".join(detail))
        self.status = status
        self.detail = list(detail)
        self.headers = headers
