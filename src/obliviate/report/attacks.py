"""The report card's Attacks section: every `attack.registry.ATTACKS` record with results in the run, rendered.

    sections = attack_sections({"npo+gd": [seed_run0, seed_run1]}, target_results)

An attack writes `<name>/<result>` into a run's seed directory (`runs/<recipe>/seed<k>/`); the card lists every
attack with at least one such file, with the record's table, plot and caption.
"""

from __future__ import annotations

from obliviate.attack.registry import ATTACKS
from obliviate.html import figure_png


def attack_sections(recipes: dict[str, list[dict]], target: dict | None = None) -> list[dict]:
    """{name, title, caption, headers, rows, png} for every attack with results in any seed run of any recipe."""
    out = []
    for name, attack in ATTACKS.items():
        groups = {label: [r[name] for r in runs if r.get(name)] for label, runs in recipes.items()}
        groups = {label: results for label, results in groups.items() if results}
        if not groups:
            continue
        headers, rows = attack.table(groups)
        out.append({"name": name, "title": attack.title, "caption": attack.caption, "headers": headers, "rows": rows,
                    "png": figure_png(attack.plot(groups, target))})
    return out
