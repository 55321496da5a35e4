"""Markdown tables, assembled one way for every report, audit, data summary and experiment table.

Each table's columns decide their own precision; what is shared is the layout (a header row, the
separator, one row per line) and how an undefined figure (None, NaN, infinite) shows: as ``missing``
rather than as ``nan``, which a reader would take for a computed value.
"""

import math
from typing import Any, Iterable, Sequence

MISSING = "—"


def number(value: Any, digits: int = 3, *, percent: bool = False, general: bool = False,
           missing: str = MISSING) -> str:
  """``value`` to ``digits`` decimals (``percent``: times 100, with ' %'; ``general``: ``{:g}``, for
  counts), or ``missing`` where undefined."""
  if value is None:
    return missing
  value = float(value)
  if not math.isfinite(value):
    return missing
  if general:
    return f"{value:g}"
  return f"{100 * value:.{digits}f} %" if percent else f"{value:.{digits}f}"


def row(cells: Iterable[Any]) -> str:
  """One table row: ``| a | b |``."""
  return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: Sequence[Any], rows: Iterable[Iterable[Any]]) -> list[str]:
  """The lines of a table: the header, the separator, and each row."""
  return [row(header), row(["---"] * len(header)), *(row(r) for r in rows)]
