"""`obliviate eval`'s terminal table: (name, value) rows from a results dict, driven by `METRICS`."""

from __future__ import annotations

import math

from obliviate.evaluate.metrics import METRICS


def summary_rows(results: dict) -> list[tuple[str, str]]:
    """(name, value) rows: per split the means of every item metric with a label, then every labelled corpus
    metric (a dict-valued one, such as MIA AUCs or MCQ accuracies, one row per key), then what was not computed."""
    agg, rows = results["aggregates"], []
    item_keys = [k for k, m in METRICS.items() if m.level == "item" and m.label]
    for role, s in results["splits"].items():
        m = s["means"]
        parts = [f"{k}={m[k]:.3f}" for k in item_keys if m.get(k) is not None]
        rows.append((f"{role} ({s['source']}, n={s['n']})", " ".join(parts)))
    for role, s in results.get("text", {}).items():
        nll = s["means"]["nll_mean"]
        rows.append((f"{role} ({s['source']}, n={s['n']}, text)", f"nll_mean={nll:.3f}" if nll is not None else "—"))
    for name, metric in METRICS.items():
        if metric.level != "corpus" or not metric.label or metric.aggregate not in agg:
            continue
        v = agg[metric.aggregate]
        if isinstance(v, dict):
            rows += [(f"{name} {k}", f"{x:.3f}") for k, x in v.items()]
            continue
        extra = f" (log10 {math.log10(v):.2f}, floor {agg['forget_quality_floor']:.2e})" \
            if name == "forget_quality" and v > 0 else ""
        rows.append((name, f"{v:.4g}{extra}"))
    for key, reason in results["not_computed"].items():
        rows.append((f"{key}: not computed", reason))
    return rows
