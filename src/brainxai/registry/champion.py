"""Which row wins: best checkpoint per group and the ``champion`` of a task.

Pure table logic (no MLflow). Rows whose metric is NaN or missing are never chosen;
a table without the metric column is an error (a typo must not pick a random row);
ties are broken by the configured columns, then by the candidate key, so the choice
is deterministic and reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Selection:
    """The winning row (``None`` when no row is eligible) and why."""

    row: pd.Series | None
    reason: str
    n_candidates: int
    n_eligible: int
    tied: int


def _sort_columns(
    frame: pd.DataFrame, metric: str, maximize: bool, tie_break: Sequence[str], key: str
) -> tuple[list[str], list[bool]]:
    cols, asc = [metric], [not maximize]
    for spec in tie_break:
        col = spec.lstrip("-")
        if col in frame.columns and col not in cols:
            cols.append(col)
            asc.append(not spec.startswith("-"))
    if key not in cols:
        cols.append(key)
        asc.append(True)
    return cols, asc


def _metric_values(frame: pd.DataFrame, metric: str) -> pd.Series:
    if metric not in frame.columns:
        raise KeyError(
            f"candidate table has no metric column {metric!r}; columns: {list(frame.columns)}"
        )
    return pd.to_numeric(frame[metric], errors="coerce").astype(float)


def select_champion(
    table: pd.DataFrame,
    metric: str,
    key: str,
    maximize: bool = True,
    exclude: Mapping[str, Sequence[str]] | None = None,
    tie_break: Sequence[str] = (),
) -> Selection:
    """The row with the best finite ``metric`` among rows not excluded.

    ``exclude`` maps a column to values that may be registered but never champion;
    ``tie_break`` columns (``"-col"`` descending) then ``key`` order equal metrics.
    """
    values = _metric_values(table, metric)
    eligible = pd.Series(np.isfinite(values.to_numpy()), index=table.index)
    for col, banned in (exclude or {}).items():
        if col in table.columns:
            eligible &= ~table[col].astype(str).isin([str(b) for b in banned])
    pool = table[eligible].assign(**{metric: values[eligible]})
    n, n_ok = len(table), int(eligible.sum())
    if pool.empty:
        return Selection(None, f"no row with a finite {metric!r} is eligible", n, 0, 0)
    cols, asc = _sort_columns(pool, metric, maximize, tie_break, key)
    ordered = pool.sort_values(cols, ascending=asc, kind="mergesort")
    best = ordered.iloc[0]
    tied = int((ordered[metric] == best[metric]).sum())
    reason = f"best {metric}={best[metric]:.6g} ({'max' if maximize else 'min'}) of {n_ok}"
    if tied > 1:
        reason += f"; {tied}-way tie broken by {cols[1:]}"
    return Selection(table.loc[best.name], reason, n, n_ok, tied)


def best_per_group(
    table: pd.DataFrame,
    metric: str,
    group_by: Sequence[str],
    key: str,
    maximize: bool = True,
    tie_break: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per group: the best finite ``metric`` (ties as in :func:`select_champion`).

    A group whose rows all lack the metric keeps its first row by ``key`` with the
    metric NaN (it is still registered, never champion); column ``selection`` says why.
    """
    values = _metric_values(table, metric)
    frame = table.assign(**{metric: values})
    if not group_by:
        groups = [((), frame)]
    else:
        groups = list(frame.groupby(list(group_by), sort=True, dropna=False))
    rows = []
    for _, g in groups:
        sel = select_champion(g, metric, key, maximize, None, tie_break)
        if sel.row is None:
            first = g.sort_values(key, kind="mergesort").iloc[0]
            rows.append(first.to_dict() | {"selection": sel.reason})
        else:
            rows.append(sel.row.to_dict() | {"selection": sel.reason})
    return pd.DataFrame(rows, columns=[*table.columns, "selection"]).reset_index(drop=True)
