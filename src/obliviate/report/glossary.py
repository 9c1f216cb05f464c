"""The report card's glossary, generated from `evaluate.metrics.METRICS`: every metric name a card table shows.

    glossary_rows(["model", "seeds", "Forget Quality", "forget TR"])
    # [["Forget Quality / FQ", "forget_quality", "↑", "KS-test p-value: …", "TOFU (Maini et al. 2024)"],
    #  ["TR", "truth_ratio", "↓", "Truth Ratio: …", "TOFU (Maini et al. 2024)"]]
    unexplained(headers)   # the headers naming no metric record (and not a plain column): must be []

A header names a metric when the metric's `label` or `abbrev` appears in it as a word ("forget TR", "Prob +
string", "AUC Min-K%"). Plain columns (model, seeds, step, …) name none.
"""

from __future__ import annotations

import re

from obliviate.evaluate.metrics import METRICS

# columns every table may show that are no metric: names, counts, settings
PLAIN_COLUMNS = ("model", "recipe", "seeds", "step", "items", "search s", "split", "weights")
ARROWS = {True: "↑", False: "↓", None: "target value"}


def _terms() -> dict[str, str]:
    """{label or abbreviation: METRICS key}."""
    out: dict[str, str] = {}
    for key, m in METRICS.items():
        for term in (m.label, m.abbrev):
            if term:
                out.setdefault(term, key)
    return out


def metrics_named(header: str) -> list[str]:
    """METRICS keys whose label or abbreviation appears in `header` as a word, in order of appearance."""
    found = []
    for term, key in _terms().items():
        m = re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-]|%)", header)
        if m:
            found.append((m.start(), key))
    return list(dict.fromkeys(k for _, k in sorted(found)))


def unexplained(headers: list[str]) -> list[str]:
    """Headers that are no plain column and name no metric record: each needs a `METRICS` record."""
    return [h for h in dict.fromkeys(headers) if h not in PLAIN_COLUMNS and not metrics_named(h)]


def glossary_rows(headers: list[str]) -> list[list[str]]:
    """[name / abbreviation, key, better direction, description, paper] of every metric the headers name."""
    keys = list(dict.fromkeys(k for h in headers for k in metrics_named(h)))
    rows = []
    for key in keys:
        m = METRICS[key]
        name = " / ".join(t for t in (m.label, m.abbrev) if t)
        rows.append([name, key, ARROWS[m.higher_is_better], m.description, m.paper])
    return rows
