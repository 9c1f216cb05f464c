"""Reading run directories: what a demo / reproduce run saved, for the card, the claims and the attacks section.

    data = collect("runs/demo")                  # {demo, target, retain, recipes: {recipe: [seed runs]}}
    get(data["target"], ("agg", "model_utility"))  # one number of an eval.json, or None
    across_seeds("forget Prob", [0.2, 0.4])      # one table cell over seeds (`obliviate.stats`)

Reads `demo.json`, `eval/{target,retain}/eval.json` and, per recipe and seed,
`runs/<recipe>/seed<k>/eval/eval.json` plus every attack result there (`attack.registry.ATTACKS`:
`<name>/<result file>`). Nothing is recomputed.

Only stages the pipeline marked complete are read: a stage directory (`eval/`, `runs/<recipe>/seed<k>/eval/`,
each attack's `<name>/`) counts when its `stage.json` (written last, `stagecache.Stages`) is whole. Anything else
under `runs/<recipe>/` (`seed1.partial`, `seed0.bak`, a seed whose evaluation never finished) is skipped with a
note in `collect(...)["notes"]`, never shown as a result.

When the run evaluated during training, each seed run also carries `model/trajectory.jsonl` and the
`trajectory` record of `model/run.json`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from obliviate import ObliviateError
from obliviate.attack.registry import ATTACKS
from obliviate.reader import read_json_lines, read_json_object
from obliviate.stagecache import stage_done
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
    return read_json_object(path) if path.is_file() else None


def load_json_lines(path: Path) -> list[dict] | None:
    return read_json_lines(path) if path.is_file() else None


def collect(run: str | Path) -> dict:
    """Everything the report shows, from the saved files: {demo, target, retain, recipes: {name: [seed runs]},
    notes}; a seed run is {seed, eval, <attack>: result or None for every ATTACKS record,
    trajectory, kept}; notes name what was
    skipped (stray or unfinished entries)."""
    run = Path(run)
    demo = load_json(run / "demo.json")
    done = stage_done(run / "eval")
    target, retain = load_json(run / "eval/target/eval.json"), load_json(run / "eval/retain/eval.json")
    if demo is None or not done or target is None or retain is None:
        raise ObliviateError(f"{run}: not a finished demo run (needs demo.json and a finished eval/ stage with "
                             "{target,retain}/eval.json)")
    recipes: dict[str, list[dict]] = {}
    notes: list[str] = []
    for recipe in demo["config"]["recipes"]:
        for seed, seed_dir in _seed_dirs(run / "runs" / recipe.replace("+", "_"), run, notes):
            ev = load_json(seed_dir / "eval/eval.json")
            if ev is None:
                notes.append(f"ignored {seed_dir.relative_to(run)}: no eval/eval.json")
                continue
            recipes.setdefault(recipe, []).append({
                "seed": seed, "eval": ev,
                **{name: load_json(seed_dir / name / a.result) if stage_done(seed_dir / name) else None
                   for name, a in ATTACKS.items()},
                # evaluation during training (unlearn eval_every): the points and run.json's account of them
                "trajectory": load_json_lines(seed_dir / "model" / "trajectory.jsonl"),
                "kept": (load_json(seed_dir / "model" / "run.json") or {}).get("trajectory")})
    return {"demo": demo, "target": target, "retain": retain, "recipes": recipes, "notes": notes}


def _seed_dirs(recipe_dir: Path, run: Path, notes: list[str]) -> list[tuple[int, Path]]:
    """(seed, directory) of every `seed<k>` directory whose evaluation stage finished, by seed; a note for any
    other entry."""
    out = []
    for p in sorted(recipe_dir.iterdir()) if recipe_dir.is_dir() else []:
        m = re.fullmatch(r"seed(\d+)", p.name)
        if not (m and p.is_dir()):
            notes.append(f"ignored {p.relative_to(run)}: not a seed<k> stage directory")
        elif not stage_done(p / "eval"):
            notes.append(f"ignored {p.relative_to(run)}: its evaluation did not finish (no whole eval/stage.json)")
        else:
            out.append((int(m.group(1)), p))
    return sorted(out)
