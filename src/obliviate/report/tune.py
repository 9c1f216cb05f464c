"""The report-card section of an `obliviate tune` run (its tune.json, pipeline.tune): the best parameters, the
front of forgetting against utility, the parameter importances and every trial.

    section = tune_section("runs/tune")     # (html, markdown) or None when the directory holds no tune.json
    fig = plot_front(summary)               # matplotlib figure, or None when the objective names no two metrics
"""

from __future__ import annotations

import re
from pathlib import Path

from obliviate import html as H
from obliviate.reader import read_json_object
from obliviate.rundir import write_bytes


def pareto_front(points: list[tuple[float, float]], maximize: tuple[bool, bool]) -> list[int]:
    """Indices of the points no other point dominates (at least as good on both axes, better on one)."""
    signed = [tuple(v if up else -v for v, up in zip(p, maximize)) for p in points]
    return [i for i, p in enumerate(signed)
            if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in signed)]


def _points(summary: dict, states: tuple[str, ...]) -> list[tuple[dict, tuple[float, float]]]:
    (fx, _), (fy, _) = summary["axes"]
    out = []
    for r in summary["trials"]:
        m = r.get("metrics") or {}
        if r["state"] in states and m.get(fx) is not None and m.get(fy) is not None:
            out.append((r, (float(m[fx]), float(m[fy]))))
    return out


def plot_front(summary: dict):
    """Forgetting (x) against utility (y), one point per trial: the front of the feasible completed trials joined,
    the best starred, infeasible ones crossed, pruned ones (metrics where they were pruned) faint."""
    import matplotlib.pyplot as plt

    if not summary.get("axes"):
        return None
    (fx, dx), (fy, dy) = summary["axes"]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    pruned = _points(summary, ("pruned",))
    if pruned:
        ax.scatter(*zip(*[p for _, p in pruned]), color="0.75", s=18, label="pruned (where it stopped)")
    done = _points(summary, ("complete",))
    bad = [p for r, p in done if not r["feasible"]]
    if bad:
        ax.scatter(*zip(*bad), marker="x", color="C3", label="infeasible (constraint failed)")
    ok = [(r, p) for r, p in done if r["feasible"]]
    if ok:
        ax.scatter(*zip(*[p for _, p in ok]), color="C0", s=22, label="completed")
        front = sorted(ok[i][1] for i in pareto_front([p for _, p in ok], (dx == "maximize", dy == "maximize")))
        ax.plot(*zip(*front), color="C0", lw=1.2, label="front")
    best = {b["number"] for b in summary.get("best", [])}
    stars = [p for r, p in ok if r["number"] in best]
    if stars:
        ax.scatter(*zip(*stars), marker="*", s=160, color="C1", zorder=3, label="best")
    for level, axis, what in (((summary.get("reference") or {}).get(fx), ax.axvline, f"reference model's {fx}"),
                              ((summary.get("start") or {}).get(fy), ax.axhline, f"start {fy}")):
        if level is not None:
            axis(level, color="0.4", ls=":", lw=1, label=what.replace("$", r"\$"))
    ax.set_xlabel(_label(fx, dx))
    ax.set_ylabel(_label(fy, dy))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"tune {summary.get('recipe', '')}: forgetting against utility", fontsize=10)
    fig.tight_layout()
    return fig


def _label(metric: str, direction: str) -> str:
    return metric.replace("$", r"\$") + (" (higher is better)" if direction == "maximize"
                                                               else " (lower is better)")


def objective_header(objective: str) -> str:
    """The trial table's objective column with its better direction(s): 'min …' ↓, 'max …' ↑ (one per objective
    of a pareto study, in order; the constraint after 'subject to' is not an objective)."""
    kinds = re.findall(r"\b(min|max)\b", objective.split(" subject to ")[0])
    return "objective " + ", ".join("↓" if k == "min" else "↑" for k in kinds) if kinds else "objective"


def trial_rows(summary: dict) -> tuple[list[str], list[list]]:
    names = sorted({k for r in summary["trials"] for k in r["params"]})
    headers = ["trial", "state", *names, objective_header(summary.get("objective", "")), "feasible",
               "pruned at step", "seconds"]
    rows = [[r["number"], r["state"], *[r["params"].get(n) for n in names],
             ", ".join(H.fmt(v) for v in r["values"]) if r["values"] else "", r["feasible"], r["pruned_step"],
             r["seconds"]] for r in summary["trials"]]
    return headers, rows


def importance_rows(summary: dict) -> tuple[list[str], list[list]] | str:
    imp = summary.get("importances") or {}
    if "not_computed" in imp:
        return f"not computed: {imp['not_computed']}"
    return ["objective", "parameter", "importance (fANOVA)"], [[obj, p, v] for obj, by in imp.items()
                                                              for p, v in by.items()]


def tune_section(run: str | Path) -> tuple[str, str] | None:
    """(html, markdown) of the tune run in `run` (tune.json), or None when there is none; writes front.png."""
    path = Path(run) / "tune.json"
    if not path.is_file():
        return None
    s = read_json_object(path, what="tune results")
    c = s["counts"]
    intro = (f"Study {s['study']!r} in {s['storage']}: recipe {s['recipe']}, objective {s['objective']!r}; "
             f"{len(s['trials'])} trials ({c['complete']} completed, {c['pruned']} pruned, {c['fail']} failed); "
             f"this invocation added {s['trials_this_run']} in {s['seconds_this_run']:.0f} s. Search space: "
             + "; ".join(f"{k} {v}" for k, v in s["space"].items()) + ".")
    best = s["best"]
    best_rows = [[b["number"], k, v] for b in best for k, v in {**b["params"], **(b["metrics"] or {})}.items()]
    best_text = "" if best else "no completed trial satisfies the objective's constraint yet"
    fig = plot_front(s)
    png = H.figure_png(fig) if fig is not None else None
    if png:
        write_bytes(Path(run) / "front.png", png)
    front_note = "" if png else "not drawn: the objective does not name a forgetting and a utility metric " \
                                "(write 'min|max <metric> subject to <utility rule>' or a pareto objective)"
    imp = importance_rows(s)
    trials = trial_rows(s)
    html = H.section(
        "Tuning (obliviate tune)", H.paragraph(intro),
        H.section("Best parameters (best.yaml)" if len(best) <= 1 else "Pareto-front trials",
                  H.table_html(["trial", "parameter / metric", "value"], best_rows, left_cols=2) if best_rows
                  else H.paragraph(best_text), level=3),
        H.section("Forgetting against utility", H.image_html(png, "one point per trial") if png
                  else H.paragraph(front_note), level=3),
        H.section("Parameter importances", H.paragraph(imp) if isinstance(imp, str)
                  else H.table_html(*imp, left_cols=2), level=3),
        H.section("Every trial", H.table_html(*trials, left_cols=2), level=3))
    md = ["## Tuning (obliviate tune)", "", intro, "", "### Best parameters (best.yaml)", "",
          H.table_md(["trial", "parameter / metric", "value"], best_rows) if best_rows else best_text, "",
          "### Forgetting against utility", "", "![front](front.png)" if png else front_note, "",
          "### Parameter importances", "", imp if isinstance(imp, str) else H.table_md(*imp), "",
          "### Every trial", "", H.table_md(*trials), ""]
    return html, "\n".join(md)
