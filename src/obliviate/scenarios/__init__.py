"""Scenarios of the Closer-Look paper beyond fictitious unlearning (SPEC §4): continual and real-world.

    from obliviate.scenarios.continual import continual        # a sequence of forget requests
    from obliviate.scenarios.realworld import realworld        # a pretrained model's own knowledge

Both reuse `unlearn(...)` and `evaluate(...)`; `evaluate_records` is the one place a scenario hands
records per role to the evaluation suite.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from obliviate import ObliviateError
from obliviate.rundir import write_json

EVAL_ROLES = ("forget", "retain", "world_facts", "real_authors")
SCENARIO_EVAL_KEYS = ("forget", "holdout", "retain", "world_facts", "real_authors")


def check_eval_config(cfg) -> None:
    """The scenario chooses the splits of each role: an eval config that names them is a conflict."""
    from obliviate.evaluate import EvalConfig

    default = EvalConfig()
    set_ = [k for k in SCENARIO_EVAL_KEYS if getattr(cfg, k) != getattr(default, k)]
    if set_:
        raise ObliviateError(f"eval config key(s) {', '.join(set_)}: the scenario chooses each role's records; "
                             "remove them from the eval config")


def write_records(path: Path, records: list[dict]) -> Path:
    """One split as a TOFU-schema JSON file (a list of records), written atomically."""
    return write_json(path, records, indent=1, ensure_ascii=False)


def evaluate_records(model, tokenizer, roles: dict[str, list[dict]], out: str | Path, cfg, *,
                     before_results: dict | None = None, model_name: str | None = None, progress: bool = True,
                     embedder=None, cache_dir=None) -> dict:
    """Evaluate `model` on records per role (`forget`, `retain`, `world_facts`, `real_authors`).

    The records are written as TOFU-schema files under `<out>/data/` (an inspectable artifact) and read
    back by `evaluate`; `<out>/eval.json` holds the results. Roles left out are not evaluated.
    """
    from obliviate.evaluate import evaluate

    unknown = sorted(set(roles) - set(EVAL_ROLES))
    if unknown or "forget" not in roles:
        raise ObliviateError(f"evaluate_records: roles {sorted(roles)}; need 'forget', may add "
                             f"{', '.join(EVAL_ROLES[1:])}")
    out = Path(out)
    data = out / "data"
    for role, records in roles.items():
        if not records:
            raise ObliviateError(f"evaluate_records: role '{role}' has no records")
        write_records(data / f"{role}.json", records)
    ecfg = dataclasses.replace(cfg, forget="forget", holdout=None,
                               **{r: (r if r in roles else None) for r in EVAL_ROLES[1:]})
    return evaluate(model, tokenizer, data, ecfg, before_results=before_results, out=out, model_name=model_name,
                    progress=progress, embedder=embedder, cache_dir=cache_dir)


def slice_results(results: dict, role: str, start: int, stop: int) -> dict:
    """Means and forget aggregates (Forget Efficacy, truth ratios) of items [start, stop) of one role."""
    from obliviate.evaluate.suite import aggregate, split_means

    items = results["splits"][role]["items"][start:stop]
    part = {"splits": {"forget": {"items": items, "means": split_means("forget", items)}}, "missing": {},
            "stage_not_computed": {}}
    agg, _ = aggregate(part)
    keep = ("forget_efficacy", "forget_efficacy_no_es", "forget_truth_ratio")
    return {"n": len(items), **part["splits"]["forget"]["means"], **{k: agg[k] for k in keep if k in agg}}
