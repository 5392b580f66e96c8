"""Bad input found while a manifest is built: recorded skips, or one error listing them all.

Every reader and check reports a file it cannot use through a SkipLog instead of raising on the
first one, so the user sees every problem in one pass. In strict mode (`--strict`) any skip
becomes a DataError naming each file and reason; otherwise the skips are written to
runs/<name>/skipped.csv and the run goes on without those files.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os

import pandas as pd

SKIP_COLUMNS = ("path", "reason", "where")


class RowProblem(Exception):
    """A row or file cannot be used; the message is the skip reason."""


class DataError(ValueError):
    """The data cannot be used as given. The message lists each file and its reason."""


@dataclasses.dataclass(frozen=True)
class Skip:
    """One file (or table row) left out, and why.

    path: the file (or folder, or table) concerned; reason: what is wrong, in words a user can act
    on; where: the table and line it came from, when it came from a table ("" otherwise).
    """

    path: str
    reason: str
    where: str = ""

    def __str__(self) -> str:
        where = f" ({self.where})" if self.where else ""
        return f"{self.path}{where}: {self.reason}"


class SkipLog:
    """Collects skips while a manifest is built.

    Args:
        strict: when True, `raise_if_strict()` turns any recorded skip into a DataError.
    """

    def __init__(self, strict: bool = False):
        self.strict = strict
        self._skips: list[Skip] = []

    def skip(self, path: str | os.PathLike, reason: str, where: str = "") -> None:
        self._skips.append(Skip(os.fspath(path), reason, where))

    def __len__(self) -> int:
        return len(self._skips)

    def __iter__(self):
        return iter(self._skips)

    def paths(self) -> set[str]:
        return {s.path for s in self._skips}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(s) for s in self._skips], columns=list(SKIP_COLUMNS))

    def write_csv(self, path: str | os.PathLike) -> None:
        """Writes skipped.csv (header only when nothing was skipped, so its absence means 'not run')."""
        self.to_frame().to_csv(path, index=False)

    def summary(self, limit: int = 10) -> str:
        """A few lines for the console: counts by reason, then the first skips."""
        if not self._skips:
            return "no files skipped"
        kinds = collections.Counter(s.reason.split(" (")[0].split(". Received")[0] for s in self._skips)
        lines = [f"{len(self._skips)} file(s) skipped:"]
        lines += [f"  {count:5d} x {kind}" for kind, count in kinds.most_common()]
        lines += [f"  {s}" for s in self._skips[:limit]]
        if len(self._skips) > limit:
            lines.append(f"  ... and {len(self._skips) - limit} more")
        return "\n".join(lines)

    def raise_if_strict(self) -> None:
        """Raises DataError listing every skip when strict and anything was skipped."""
        if self.strict and self._skips:
            listing = "\n".join(f"  {s}" for s in self._skips[:50])
            more = f"\n  ... and {len(self._skips) - 50} more" if len(self._skips) > 50 else ""
            raise DataError(f"--strict: {len(self._skips)} problem(s) in the data:\n{listing}{more}")


__all__ = ["DataError", "Skip", "SkipLog", "SKIP_COLUMNS"]


def cell_text(value) -> str:
    """A table cell as stripped text; an empty cell (None, NaN) is ""."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def seconds(value, column: str, default: float | None = None) -> float:
    """A time cell in seconds; empty means `default` (None: the time is required).

    Raises:
        RowProblem: empty when required, not a number, or negative.
    """
    text = cell_text(value)
    if not text:
        if default is None:
            raise RowProblem(f"{column} is empty")
        return default
    try:
        number = float(text)
    except ValueError:
        raise RowProblem(f"{column} is not a number of seconds. Received: {text!r}") from None
    if not math.isfinite(number) or number < 0:
        raise RowProblem(f"{column} must be a finite time >= 0 s. Received: {text!r}")
    return number
