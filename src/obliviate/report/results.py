"""The report card's `results.json`: its tables with numbers as numbers (issue 26 §4).

    {"headers": ["model", "seeds", "Forget Quality", ...],
     "rows":   [["target (before)", 1, 0.0123, null, ...], ...],          # the value of every cell, or null
     "spread": [["target (before)", 1, null, null, ...], ...],           # its spread over seeds (below)
     "null_reasons": {"target (before)": {"Entailment Score": "no NLI model (--nli)"}},   # one per null cell
     "not_computed": {metric: {reason: [models]}}, "attacks": {name: {headers, rows, spread}}, "ignored": [...]}

A cell's value is the mean over seeds, or the median for a p-value column (`stats.P_VALUE_COLUMNS`); its spread
is the 95 % t-interval half-width (null with one seed), or [min, max] for a p-value column. The headline is
computed from the evaluations at full precision; the attack tables are the card's (3 significant decimals as
printed), each cell read back into (value, spread) and every per-seed attack result file holds the full values.
"""

from __future__ import annotations

import math
import re

from obliviate.stats import P_VALUE_COLUMNS, mean_ci, median_range

SPREAD_NOTE = ("mean over seeds and its 95 % t-interval half-width (null for one seed); p-value columns "
               f"({', '.join(P_VALUE_COLUMNS)}): median and [min, max]")


def summarise(label: str, values: list) -> tuple[float | None, float | list | None]:
    """(value, spread) of one cell over seeds (None values skipped; None when there is none)."""
    if label in P_VALUE_COLUMNS:
        med, lo, hi = median_range(values)
        return med, (None if med is None else [lo, hi])
    return mean_ci(values)


def _reason(res: dict, where: tuple, label: str) -> str:
    """Why the eval.json `res` has no value at `where` (its not_computed entry, else where it looked)."""
    nc = res.get("not_computed", {})
    keys = [where[1], where[-1]] if where[0] == "agg" else [where[1], f"split:{where[0]}"]
    for key in keys:
        if key in nc:
            return str(nc[key])
    path = ".".join(("aggregates",) + tuple(where[1:])) if where[0] == "agg" else f"splits.{where[0]}.means.{where[1]}"
    return f"{label}: no finite value at {path} of eval.json"


def headline_json(data: dict, columns: list, labels: list[str], get) -> dict:
    """The headline table of `data` (report.runs.collect) as numbers: rows in the card's order, named `labels`."""
    self_fq = data["demo"].get("retain_vs_itself", {}).get("forget_quality")
    models = [[data["target"]], [data["retain"]]] + [[r["eval"] for r in runs] for runs in data["recipes"].values()]
    rows, spread, reasons = [], [], {}
    for name, evals in zip(labels, models):
        row, sp = [name, len(evals)], [name, len(evals)]
        for label, where, _ in columns:
            value, s = summarise(label, [get(e, where) for e in evals])
            if value is None and name == labels[1] and where[:2] == ("agg", "forget_quality") and self_fq is not None:
                value, s = float(self_fq), None  # the retain model against itself: the sanity check the card shows
                reasons.setdefault("notes", {})[name] = f"{label}: the retain model against itself (sanity check)"
            if value is None:
                reasons.setdefault(name, {})[label] = _reason(evals[0], where, label)
            row.append(value)
            sp.append(s)
        rows.append(row)
        spread.append(sp)
    notes = reasons.pop("notes", {})
    return {"rows": rows, "spread": spread, "spread_is": SPREAD_NOTE, "null_reasons": reasons, "notes": notes}


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_MEAN_CI = re.compile(rf"^({_NUMBER})(?: ± ({_NUMBER}))?$")
_MEDIAN_RANGE = re.compile(rf"^({_NUMBER}) \[({_NUMBER})–({_NUMBER})\]$")


def cell(text) -> tuple[object, object]:
    """(value, spread) of a printed table cell: "0.300 ± 1.27" -> (0.3, 1.27), "0.5 [0.1–0.9]" -> (0.5, [0.1, 0.9]),
    "—" -> (None, None); a number stays itself; any other text (a row label) stays text.

    >>> cell("0.300 ± 1.27"), cell("—"), cell("npo+gd")
    ((0.3, 1.27), (None, None), ('npo+gd', None))
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        return text, None
    if isinstance(text, (int, float)):
        return (text if math.isfinite(text) else None), None
    t = text.strip()
    if t in ("—", "-", ""):
        return None, None
    if m := _MEAN_CI.match(t):
        return float(m[1]) if "." in m[1] or "e" in m[1].lower() else int(m[1]), (float(m[2]) if m[2] else None)
    if m := _MEDIAN_RANGE.match(t):
        return float(m[1]), [float(m[2]), float(m[3])]
    return text, None


def table_json(headers: list[str], rows: list[list]) -> dict:
    """A printed table (an attack's) with every numeric cell a number and its spread alongside."""
    cells = [[cell(c) for c in row] for row in rows]
    return {"headers": headers, "rows": [[v for v, _ in r] for r in cells], "spread": [[s for _, s in r] for r in cells],
            "spread_is": SPREAD_NOTE}
