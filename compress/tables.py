"""CSV tables (DVC plots, the variants table, experiment tables): one writer for the stages and the library.

Rows are either dicts (the header is the union of their keys in first-seen order; a missing key is an empty
cell; values as Python's ``csv`` module writes them) or a pandas DataFrame (its columns, no index, pandas'
number formatting, NaN as an empty cell).  The folder is made.  ``float_format`` (e.g. ``"%.6g"``) formats
every float cell of either kind.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]] | Any, float_format: str | None = None) -> Path:
    """Write ``rows`` (dicts or a DataFrame) as CSV at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(rows, "to_csv"):  # a pandas DataFrame
        rows.to_csv(path, index=False, float_format=float_format)
        return path
    rows = list(rows)
    if float_format is not None:
        rows = [{k: (float_format % v if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


__all__ = ["write_csv"]
