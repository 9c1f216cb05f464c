"""The membership-inference attack report (SPEC §3 MIA scores, §5): can an attacker tell forget items
(members: the model was trained on them) from holdout items (non-members) by the model's own likelihoods?

    result = membership_inference(model, tok, "data/demo", MIAConfig(forget="forget10"), retain=(r_model, r_tok))
    result["auc"]["model"]["min_k"], result["auc"]["retain"]["min_k"], result["roc"]["model"]["min_k"]["fpr"]

The per-item scores are those of the evaluation pass (`evaluate.passes.forward_scores` +
`metrics.mia_item_scores`: LOSS, zlib, Min-K%, Min-K%++, all loss-like) and the AUCs are `metrics.mia_auc`
(members label 0, non-members 1: 0.5 = indistinguishable, as after retraining without the forget set). The
retain model, which never saw the forget items, gives the AUCs unlearning should reach: the gap is what is left
to close. `mia_report` builds the same report from saved eval.json results (the demo uses that: no new passes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from obliviate import ObliviateError
from obliviate.config import MAX_BATCH, MAX_TOKENS, check_ranges, versions
from obliviate.data.roles import check_mia_roles
from obliviate.evaluate import EvalConfig
from obliviate.evaluate import metrics as M
from obliviate.evaluate.passes import forward_scores
from obliviate.rundir import write_json
from obliviate.evaluate.suite import MIA_KEYS, resolve_splits


@dataclass
class MIAConfig:
    forget: str = "forget10"  # members
    holdout: str | None = None  # non-members; None: holdoutXX of the forget level
    batch_size: int = 16
    max_length: int = 512
    min_k: float = 0.4  # Min-K% / Min-K%++ fraction

    RANGES: ClassVar[dict[str, str]] = {  # config.check_ranges
        "batch_size": f"[1, {MAX_BATCH}]", "max_length": f"[8, {MAX_TOKENS}]", "min_k": "(0, 1]",
    }

    def __post_init__(self):
        check_ranges(self)
        self.eval_config()  # validates forget, min_k, batch_size, max_length

    def eval_config(self) -> EvalConfig:
        return EvalConfig(forget=self.forget, holdout=self.holdout, retain=None, world_facts=None, real_authors=None,
                          embedder=None, batch_size=self.batch_size, max_length=self.max_length, min_k=self.min_k)


def score_items(model, tokenizer, records: list[dict], cfg: MIAConfig, *, desc: str = "mia",
                progress: bool = False) -> list[dict]:
    """Per-item {index, question, answer, mia: {loss, zlib, min_k, min_k_pp}} (the evaluation's item layout)."""
    rows = forward_scores(model, tokenizer, [(r["question"], r["answer"]) for r in records],
                          batch_size=cfg.batch_size, k=cfg.min_k, max_length=cfg.max_length, progress=progress,
                          desc=desc)
    return [{"index": i, "question": r["question"], "answer": r["answer"], "mia": M.mia_item_scores(row, r["answer"])}
            for i, (r, row) in enumerate(zip(records, rows))]


def roc_points(member_scores: list[float], nonmember_scores: list[float]) -> dict[str, list[float]]:
    """The ROC curve of `metrics.mia_auc`'s labelling (sklearn `roc_curve`): {fpr, tpr}."""
    from sklearn.metrics import roc_curve

    labels = [0] * len(member_scores) + [1] * len(nonmember_scores)
    fpr, tpr, _ = roc_curve(labels, list(member_scores) + list(nonmember_scores))
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def _model_report(members: list[dict], nonmembers: list[dict]) -> tuple[dict, dict]:
    auc, roc = {}, {}
    for key in MIA_KEYS:
        m, n = [it["mia"][key] for it in members], [it["mia"][key] for it in nonmembers]
        auc[key], roc[key] = M.mia_auc(m, n), roc_points(m, n)
    return auc, roc


def mia_report(members: list[dict], nonmembers: list[dict], *, retain_members: list[dict] | None = None,
               retain_nonmembers: list[dict] | None = None, sources: tuple[str, str] = ("forget", "holdout")) -> dict:
    """AUCs, ROC curves and per-item scores from items carrying `mia` score dicts (eval.json or `score_items`)."""
    if not members or not nonmembers:
        raise ObliviateError("the MIA report needs member (forget) and non-member (holdout) items")
    check_mia_roles(members, nonmembers, sources)
    for mine, theirs in ((members, retain_members), (nonmembers, retain_nonmembers)):
        if theirs is not None and [it["question"] for it in theirs] != [it["question"] for it in mine]:
            raise ObliviateError("the retain model's items are other items than the model's (MIA compares the same)")
    auc, roc = {}, {}
    auc["model"], roc["model"] = _model_report(members, nonmembers)
    if retain_members is not None and retain_nonmembers is not None:
        auc["retain"], roc["retain"] = _model_report(retain_members, retain_nonmembers)
        auc["gap"] = {k: auc["model"][k] - auc["retain"][k] for k in MIA_KEYS}

    def per_item(items, retain_items, member):
        out = []
        for j, it in enumerate(items):
            row = {"index": it["index"], "member": member, "question": it["question"], "scores": it["mia"]}
            if retain_items is not None:
                row["retain_scores"] = retain_items[j]["mia"]
            out.append(row)
        return out

    return {"members": sources[0], "nonmembers": sources[1], "n": [len(members), len(nonmembers)], "auc": auc,
            "roc": roc, "items": per_item(members, retain_members, True) + per_item(nonmembers, retain_nonmembers,
                                                                                      False)}


def mia_from_results(results: dict, retain_results: dict | None = None) -> dict:
    """The report from saved eval.json results (forget and holdout splits), the retain model's beside them."""
    splits = results.get("splits", {})
    if "forget" not in splits or "holdout" not in splits:
        raise ObliviateError("these eval results have no forget and holdout splits (MIA needs both)")
    rs = (retain_results or {}).get("splits", {})
    have_retain = "forget" in rs and "holdout" in rs
    return mia_report(splits["forget"]["items"], splits["holdout"]["items"],
                      retain_members=rs["forget"]["items"] if have_retain else None,
                      retain_nonmembers=rs["holdout"]["items"] if have_retain else None,
                      sources=(splits["forget"]["source"], splits["holdout"]["source"]))


def membership_inference(model, tokenizer, data: str | Path, cfg: MIAConfig, *, retain=None,
                         out: str | Path | None = None, progress: bool = True) -> dict:
    """Score forget (members) and holdout (non-members) items with `model` (and `retain`, a (model, tokenizer)
    pair); return (and write to `<out>/mia.json`) the report."""
    found, missing = resolve_splits(data, cfg.eval_config())
    if "holdout" not in found:
        raise ObliviateError(f"{data}: no holdout split for the MIA non-members: {missing.get('holdout')}")
    (fsrc, members), (hsrc, nonmembers) = found["forget"], found["holdout"]
    check_mia_roles(members, nonmembers, (fsrc, hsrc))  # before any scoring
    scored = {}
    for name, pair in (("model", (model, tokenizer)), ("retain", retain)):
        if pair is None:
            continue
        m, tok = pair
        m.eval()
        scored[name] = (score_items(m, tok, members, cfg, desc=f"mia {name} forget", progress=progress),
                        score_items(m, tok, nonmembers, cfg, desc=f"mia {name} holdout", progress=progress))
    rm, rn = scored.get("retain", (None, None))
    result = mia_report(*scored["model"], retain_members=rm, retain_nonmembers=rn, sources=(fsrc, hsrc))
    result.update(config=dataclasses.asdict(cfg), versions=versions())
    if out is not None:
        write_json(Path(out) / "mia.json", result, indent=1)
    return result
