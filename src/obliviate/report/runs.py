"""Reading run directories: what a demo / reproduce run saved, for the card, the claims and the attacks section.

    data = collect("runs/demo")                  # {demo, target, retain, recipes: {recipe: [seed runs]}}
    get(data["target"], ("agg", "model_utility"))  # one number of an eval.json, or None
    across_seeds("forget Prob", [0.2, 0.4])      # one table cell over seeds (`obliviate.stats`)

Reads `demo.json`, `eval/{target,retain}/eval.json` and, per recipe and seed,
`runs/<recipe>/seed<k>/eval/eval.json` plus every attack result there (`attack.registry.ATTACKS`:
`<name>/<result file>`) and, when the run evaluated during training, `model/trajectory.jsonl` and the
`trajectory` record of `model/run.json`. Nothing is recomputed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from obliviate import ObliviateError
from obliviate.attack.registry import ATTACKS
from obliviate.stats import P_VALUE_COLUMNS, across_seeds, fmt_ci, fmt_median_range, mean_ci  # noqa: F401

__all__ = ["P_VALUE_COLUMNS", "across_seeds", "collect", "fmt_ci", "fmt_median_range", "get", "load_json",
           "mean_ci"]


def get(res: dict, where: tuple) -> float | None:
    """A finite number of an eval.json: where = ("agg", aggregate[, sub-key]) or (role, split-mean key); else None."""
    if where[0] == "agg":
        v = res.get("aggregates", {}).get(where[1])
        if len(where) > 2:
            v = (v or {}).get(where[2])
    else:
        v = res.get("splits", {}).get(where[0], {}).get("means", {}).get(where[1])
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_json_lines(path: Path) -> list[dict] | None:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else None


def collect(run: str | Path) -> dict:
    """Everything the report shows, from the saved files: {demo, target, retain, recipes: {name: [seed runs]}};
    a seed run is {seed, eval, <attack>: result or None for every ATTACKS record, trajectory, kept}."""
    run = Path(run)
    demo = load_json(run / "demo.json")
    target, retain = load_json(run / "eval/target/eval.json"), load_json(run / "eval/retain/eval.json")
    if demo is None or target is None or retain is None:
        raise ObliviateError(f"{run}: not a finished demo run (needs demo.json and eval/{{target,retain}}/eval.json)")
    recipes: dict[str, list[dict]] = {}
    for recipe in demo["config"]["recipes"]:
        d = run / "runs" / recipe.replace("+", "_")
        for seed_dir in sorted(d.glob("seed*"), key=lambda p: int(p.name[4:])):
            ev = load_json(seed_dir / "eval/eval.json")
            if ev is None:
                continue
            recipes.setdefault(recipe, []).append({
                "seed": int(seed_dir.name[4:]), "eval": ev,
                **{name: load_json(seed_dir / name / a.result) for name, a in ATTACKS.items()},
                # evaluation during training (unlearn eval_every): the points and run.json's account of them
                "trajectory": load_json_lines(seed_dir / "model" / "trajectory.jsonl"),
                "kept": (load_json(seed_dir / "model" / "run.json") or {}).get("trajectory")})
    return {"demo": demo, "target": target, "retain": retain, "recipes": recipes}
