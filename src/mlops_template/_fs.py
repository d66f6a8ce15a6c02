"""Files written whole or not at all, and sets of files that switch together.

A set of outputs that belong together (a model and its card; the prepared splits and their
manifest) is written into a fresh version folder and published by one atomic rename of the
`current` link beside it: a reader that resolves `current` once sees the old set or the new
one, never a mix, whenever the writer is killed. A writer holds a lock while it publishes, so
the leftovers of killed runs (`.tmp-*` folders) can be removed safely by the next one.

```
models/
  current -> 20261123T153000-1f2e3d     one rename switches the whole set
  20261123T153000-1f2e3d/               model.onnx, model.json, ...
  20261123T140102-9a8b7c/               the previous set, kept for a quick rollback
```
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "CURRENT",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_version",
    "publish",
    "publish_or_explain",
    "sha256_file",
]

CURRENT = "current"
_STAGING = ".tmp-"
_LOCK = ".lock"


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one step.

    The temporary file lives in the same folder so that `os.replace` is atomic. If the body
    raises, `target` keeps its previous content and the temporary file is removed. The writer
    holds a lock on its temporary file, so the one a killed writer left behind (unlocked) is
    removed by the next writer of the same target, while a live writer's is left alone.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_writers(target)
    while True:
        tmp = target.parent / f".{target.name}.{os.urandom(6).hex()}{suffix}.tmp"
        # Created as `open` would create it (0666 less the umask), where `mkstemp` would give
        # 0600 and leave the file unreadable to a server running as another user.
        descriptor = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        if os.fstat(descriptor).st_nlink:
            break
        os.close(descriptor)  # removed as a leftover before it was locked: take another name
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(descriptor)


def _remove_dead_writers(target: Path) -> None:
    """Remove the temporary files of `target` that no live writer holds locked."""
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        try:
            descriptor = os.open(leftover, os.O_RDONLY)
        except OSError:
            continue  # gone meanwhile
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            leftover.unlink(missing_ok=True)
        except BlockingIOError:
            pass  # a live writer's
        finally:
            os.close(descriptor)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    """Write `text` (UTF-8) to `target` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def current_version(folder: Path) -> Path:
    """The folder of the published set in `folder`, resolved once: read every file from it.

    A folder without a `current` link is itself the set (a flat folder, e.g. in an image).
    """
    link = folder / CURRENT
    if link.is_symlink():
        return folder / link.readlink()
    return folder


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with (folder / _LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # a second writer waits; readers never lock
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish_or_explain(
    folder: Path, write: Callable[[Path], None], what: str, setting: str
) -> Path:
    """`publish`, with a folder that cannot be written reported as one clear error."""
    from .errors import DataFileError

    try:
        return publish(folder, write)
    except OSError as exc:
        raise DataFileError(
            f"{folder}: cannot write {what}: {exc.strerror or exc}",
            hint=f"check that the folder is writable, or set {setting} elsewhere",
        ) from None


def publish(folder: Path, write: Callable[[Path], None], *, keep: int = 3) -> Path:
    """Write a set of files with `write(staging_folder)`, then make it current in one step.

    If `write` raises (or the process dies), the current set stays as it was and nothing of
    the new one is visible. The `keep` newest sets are kept (the current one always); older
    ones and the leftovers of killed runs are removed. Returns the new set's folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        _remove_leftovers(folder)
        staging = folder / f"{_STAGING}{os.urandom(6).hex()}"
        staging.mkdir()  # 0777 less the umask, as `mkdir` gives (`mkdtemp` would give 0700)
        try:
            write(staging)
            for path in staging.iterdir():
                _fsync(path)
            _fsync(staging)
            name = _next_name(folder)
            staging.rename(folder / name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        link = folder / f"{_STAGING}link-{name}"
        link.symlink_to(name, target_is_directory=True)
        link.replace(folder / CURRENT)  # the one atomic step
        _fsync(folder)
        _prune(folder, keep=max(keep, 1), current=name)
    return folder / name


def _remove_leftovers(folder: Path) -> None:
    """Remove what killed writers left (we hold the lock, so their writers are dead): staging
    folders and links, and a version folder newer than `current`, which a writer killed
    between its two publishing steps named but never published."""
    for stale in folder.glob(_STAGING + "*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    link = folder / CURRENT
    if not link.is_symlink():
        return  # nothing published yet, or the link was removed by hand: keep every version
    published = link.readlink().name
    for version in _versions(folder):
        if version.name > published:
            shutil.rmtree(version, ignore_errors=True)


def _next_name(folder: Path) -> str:
    """A version name that sorts after every existing one: the time to the microsecond (its
    last part in hex), or one past the newest if the clock went back."""
    now = time.time()
    name = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{int(now % 1 * 1e6):06x}"
    versions = _versions(folder)
    if versions and name <= versions[0].name:
        stamp, _, tick = versions[0].name.rpartition("-")
        try:
            name = f"{stamp}-{int(tick, 16) + 1:06x}"
        except ValueError:  # a folder named by hand
            name = f"{versions[0].name}-000001"
    return name


def _versions(folder: Path) -> list[Path]:
    """The version folders in `folder`, newest first (their names begin with the time)."""
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and p.name[:1].isdigit()),
        key=lambda p: p.name,
        reverse=True,
    )


def _prune(folder: Path, *, keep: int, current: str) -> None:
    for old in _versions(folder)[keep:]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
