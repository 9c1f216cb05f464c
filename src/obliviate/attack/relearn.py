"""The relearning attack (SPEC §5, seed B): fine-tune an unlearned model on k forget items, watch knowledge return.

    curve = relearn(model, tok, "data/demo", RelearnConfig(k=8, steps=[10, 20, 40]))

The attacker trains with the plain answer-only NLL on a fixed sample of k forget items
(fixed per seed) for N steps at the unlearning learning rate, and the forget-side
metrics are re-evaluated at every N in `steps` (and at 0, before the attack). Each
point reports the whole forget set and, separately, the forget items the attacker did
*not* train on: recovery there means the knowledge was hidden, not removed. The robust
unlearning method is the one whose forget metrics recover least.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

from obliviate import ObliviateError
from obliviate.config import MAX_BATCH, MAX_SEED, MAX_STEPS, MAX_TOKENS, check_ranges, versions
from obliviate.data.loading import load_split
from obliviate.evaluate import EvalConfig, evaluate
from obliviate.models.finetune import FinetuneConfig, train_steps
from obliviate.models.loading import model_size_name
from obliviate.rundir import write_json
from obliviate.unlearn import UnlearnConfig

CURVE_METRICS = ("prob", "rouge_l_recall", "truth_ratio")


@dataclass
class RelearnConfig:
    forget: str = "forget10"
    k: int = 8  # forget items the attacker trains on
    steps: list[int] = field(default_factory=lambda: [10, 20, 40])  # evaluate after these many steps
    lr: float | None = None  # None: the unlearning lr preset of the model's size (the attacker's budget)
    batch_size: int = 4
    max_new_tokens: int = 48  # generation length for the ROUGE part of the forget metrics
    seed: int = 0

    RANGES: ClassVar[dict[str, str]] = {  # config.check_ranges
        "k": "[1, 1e7]", "steps": f"[1, {MAX_STEPS}]", "lr": "(0, 10]", "batch_size": f"[1, {MAX_BATCH}]",
        "max_new_tokens": f"[1, {MAX_TOKENS}]", "seed": f"[0, {MAX_SEED}]",
    }

    def __post_init__(self):
        check_ranges(self)
        if not self.steps:
            raise ObliviateError("steps must list at least one step count")
        self.steps = sorted(set(int(s) for s in self.steps))


def relearn_sample(n_items: int, k: int, seed: int) -> list[int]:
    """The attacker's k forget-item indices: a fixed sample per seed."""
    if k >= n_items:
        raise ObliviateError(f"k={k} must be smaller than the forget split ({n_items} items), so that some forget "
                             "items stay unseen by the attacker (the 'unseen' curve)")
    return sorted(random.Random(f"relearn-{seed}").sample(range(n_items), k))


def _point(results: dict, step: int, attacked: set[int], loss: float | None) -> dict:
    """One curve point: forget means on all items, on the items not trained on, and the aggregates."""
    items = results["splits"]["forget"]["items"]
    unseen = [it for it in items if it["index"] not in attacked]
    agg = results["aggregates"]
    row = {"step": step, "train_loss": loss, "forget_quality": agg.get("forget_quality"),
           "mia_min_k_auc": (agg.get("mia") or {}).get("min_k")}
    for m in CURVE_METRICS:
        row[m] = results["splits"]["forget"]["means"].get(m)
        vals = [it[m] for it in unseen if it.get(m) is not None]
        row[f"{m}_unseen"] = sum(vals) / len(vals) if vals else None
    return row


def relearn(model, tokenizer, data: str | Path, cfg: RelearnConfig, *, retain_results: dict | str | None = None,
            start_results: dict | None = None, out: str | Path | None = None, progress: bool = True) -> dict:
    """Run the attack in place on `model`; return (and write to `<out>/relearn.json`) the curve.

    start_results: the model's own eval results (same forget split), reused as the step-0 point.
    """
    from obliviate.rundir import progress_bar

    records = load_split(data, cfg.forget)
    attacked = relearn_sample(len(records), cfg.k, cfg.seed)
    lr = cfg.lr or UnlearnConfig().hyperparams(model_size_name(model)).lr
    ecfg = EvalConfig(forget=cfg.forget, retain=None, world_facts=None, real_authors=None, embedder=None,
                      max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)

    def point(step: int, loss: float | None) -> dict:
        res = evaluate(model, tokenizer, data, ecfg, retain_results=retain_results, progress=False)
        return _point(res, step, set(attacked), loss)

    if start_results is not None and start_results["splits"]["forget"]["source"].startswith(cfg.forget):
        curve = [_point(start_results, 0, set(attacked), None)]
    else:
        curve = [point(0, None)]
    train = FinetuneConfig(max_steps=max(cfg.steps), lr=lr, batch_size=min(cfg.batch_size, cfg.k),
                           schedule="constant", warmup_ratio=0.0, seed=cfg.seed)
    bar = progress_bar(total=max(cfg.steps), desc="relearn", progress=progress)
    split = {}
    for row in train_steps(model, tokenizer, [records[i] for i in attacked], train):
        split = {"micro_batch": row["micro_batch"], "grad_accum": row["grad_accum"]}  # the effective batch's split
        bar.update(1)
        if row["step"] in cfg.steps:
            curve.append(point(row["step"], row["loss"]))
    bar.close()
    result = {"config": dataclasses.asdict(cfg), "lr": lr, **split, "attacked_items": attacked,
              "n_forget": len(records),
              "curve": curve, "versions": versions()}
    if out is not None:
        write_json(Path(out) / "relearn.json", result, indent=1)
    return result
