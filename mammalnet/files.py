"""Atomic file writes: a file is either its old content or its whole new content, never half of one.

Every writer that a killed job must not leave half-written (scan tables and ledger records, exports,
caches, reports) goes through `atomic_write`: the content goes to a temporary name beside the target
and is renamed over it (`os.replace`, atomic on one file system). Standard library only, so the buoy
runtime may use it.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Callable

TEMP_GLOB = ".*.tmp"  # what `temporary_path` names look like: `remove_temporaries` deletes these


def temporary_path(path) -> Path:
    """A temporary name beside `path`, unique to this process: `.<name>.<pid>.tmp`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path, write: Callable[[str], object]) -> None:
    """Calls write(temporary path) beside `path`, then renames the temporary file to `path`.

    The temporary file is removed when `write` raises (or the process is interrupted in Python), so
    the target is never left half-written. A plain open in `write` (not mkstemp) gives the file the
    user's umask.
    """
    tmp = str(temporary_path(path))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path, text: str) -> None:
    """Writes `text` (UTF-8, newlines as given) to `path` atomically."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    atomic_write(path, write)


def write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path, value, *, indent: int = 2) -> None:
    """Writes `value` as strict JSON (no NaN or Infinity) with a final newline, atomically.

    `value` must hold plain Python types; `mammalnet.report.metrics.to_jsonable` converts numpy ones.
    """
    write_text(path, json.dumps(value, indent=indent, allow_nan=False) + "\n")


def remove_temporaries(*folders) -> list[str]:
    """Deletes the temporary files a killed writer left directly in `folders`; returns their paths."""
    stale = [p for folder in folders for p in glob.glob(os.path.join(os.fspath(folder), TEMP_GLOB))]
    for p in stale:
        os.remove(p)
    return stale
