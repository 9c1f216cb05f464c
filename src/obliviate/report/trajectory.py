"""The card's "how far each recipe went" section: the in-training trajectory of every run (issue 23 §5).

    rows = trajectory_rows(data)          # one row per recipe and seed: where it ended, why, the kept step
    fig = trajectory_figure(data)         # per recipe: forgetting and utility against step, the kept point
                                          # marked, the retain model's level as a line

Reads what `unlearn` wrote in each run's model directory (`report.runs.collect`: `trajectory.jsonl` and the
`trajectory` record of run.json). Nothing is recomputed; a run without evaluation during training is left out.
"""

from __future__ import annotations

from obliviate import html as H

FORGET, UTILITY = "forget_prob", ("retain_prob", "world_facts_prob")
TRAJECTORY_NOTE = ("Evaluation during training (eval_every): each point is the in-training probe (a fixed sample "
                   "of each split, docs/unlearning.md \"How far to go\"), not the full evaluation above. The marked "
                   "point is the checkpoint the run kept; 'kept by' names the rule that chose it. Probe time is "
                   "counted apart from training time.")


def traced(data: dict) -> dict[str, list[dict]]:
    """{recipe: [seed runs that have a trajectory]}."""
    out = {}
    for recipe, runs in data["recipes"].items():
        have = [r for r in runs if r.get("trajectory") and r.get("kept")]
        if have:
            out[recipe] = have
    return out


def kept_by(runs: list[dict]) -> str | None:
    """What chose a recipe's models, once if every seed says the same, else per seed."""
    said = [r["kept"]["kept_by"] for r in runs if r.get("kept")]
    if not said:
        return None
    return said[0] if len(set(said)) == 1 else "; ".join(f"seed {r['seed']}: {r['kept']['kept_by']}" for r in runs)


def trajectory_rows(data: dict) -> tuple[list[str], list[list]]:
    headers = ["recipe", "seed", "ended", "stopped at / cap", "kept step", "kept by", "kept forget Prob",
               "kept retain Prob", "probe s", "train s", "probe / train"]
    rows = []
    for recipe, runs in traced(data).items():
        for r in runs:
            k = r["kept"]
            m = k.get("kept_metrics") or {}
            rows.append([recipe, r["seed"], k["ended"], f"{k['stopped_at']} / {k['cap']}", k["kept_step"], k["kept_by"],
                         m.get(FORGET), m.get("retain_prob"), k["probe_seconds"], k["train_seconds"],
                         k.get("probe_fraction")])
    return headers, rows


def _tex(text: str) -> str:
    """A label matplotlib shows as written (no mathtext)."""
    return str(text).replace("$", r"\$")


def _retain_level(data: dict, run: dict) -> tuple[float | None, str]:
    """The retain model's forget Prob: on the probe's items (the run's reference), else its full-split mean."""
    ref = (run["kept"].get("reference") or {}).get(FORGET)
    if ref is not None:
        return ref, "retain model (probe items)"
    full = data["retain"].get("splits", {}).get("forget", {}).get("means", {}).get("prob")
    return full, "retain model (whole forget split)"


def trajectory_figure(data: dict):
    """One panel per recipe: forget Prob (solid) and utility Probs (dashed) against step, one colour per seed;
    the kept point circled, a stop / guard end as a vertical line, the retain model's forget Prob dotted."""
    import matplotlib.pyplot as plt

    recipes = traced(data)
    n = len(recipes)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, (recipe, runs) in zip(axes.flat, recipes.items()):
        for i, r in enumerate(runs):
            pts, k = r["trajectory"], r["kept"]
            steps = [p["step"] for p in pts]
            ax.plot(steps, [p["metrics"].get(FORGET) for p in pts], "-o", ms=3, color=f"C{i}",
                    label=_tex(f"forget Prob, seed {r['seed']}"))
            for j, name in enumerate(u for u in UTILITY if u in pts[0]["metrics"]):
                ax.plot(steps, [p["metrics"].get(name) for p in pts], "--" if j == 0 else ":", color=f"C{i}",
                        label=_tex(f"{name.replace('_prob', '')} Prob") if i == 0 else None)
            kept = next((p for p in pts if p["step"] == k["kept_step"]), None)
            if kept is not None and kept["metrics"].get(FORGET) is not None:
                ax.plot([kept["step"]], [kept["metrics"][FORGET]], "o", ms=11, mfc="none", mec="black", mew=1.5,
                        label="kept" if i == 0 else None)
            if k["ended"] != "cap":
                ax.axvline(k["stopped_at"], color=f"C{i}", lw=0.8, alpha=0.6)
        level, what = _retain_level(data, runs[0])
        if level is not None:
            ax.axhline(level, color="green", ls=":", lw=1.2, label=_tex(what))
        ax.set_title(_tex(f"{recipe} — kept by {kept_by(runs)}"), fontsize=8)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("probe answer probability")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("How far each recipe went: forgetting and utility during unlearning")
    fig.tight_layout()
    return fig


def trajectory_section(data: dict) -> dict | None:
    """{png, headers, rows} of the card's trajectory section, or None when no run evaluated during training."""
    if not traced(data):
        return None
    headers, rows = trajectory_rows(data)
    return {"png": H.figure_png(trajectory_figure(data)), "headers": headers, "rows": rows}
