"""`obliviate eval`'s terminal table: (name, value) rows from a results dict."""

from __future__ import annotations

import math

def summary_rows(results: dict) -> list[tuple[str, str]]:
    """(name, value) rows for the terminal table."""
    agg, rows = results["aggregates"], []
    for role, s in results["splits"].items():
        m = s["means"]
        parts = [f"{k}={m[k]:.3f}" for k in ("rouge_l_recall", "prob", "truth_ratio", "token_entropy",
                                             "cosine_similarity", "entailment_score", "exact_memorization")
                 if m.get(k) is not None]
        rows.append((f"{role} ({s['source']}, n={s['n']})", " ".join(parts)))
    for key in ("forget_quality", "model_utility", "mu18", "mu18_no_es", "forget_efficacy", "forget_efficacy_no_es",
                "privleak", "verbmem", "knowmem"):
        if key in agg:
            v = agg[key]
            extra = f" (log10 {math.log10(v):.2f}, floor {agg['forget_quality_floor']:.2e})" \
                if key == "forget_quality" and v > 0 else ""
            rows.append((key, f"{v:.4g}{extra}"))
    if "mia" in agg:
        rows.append(("mia auc", " ".join(f"{k}={v:.3f}" for k, v in agg["mia"].items())))
    for split, acc in agg.get("mcq", {}).items():
        rows.append((f"mcq {split}", f"{acc:.3f}"))
    for key, reason in results["not_computed"].items():
        rows.append((f"{key}: not computed", reason))
    return rows
