"""The evaluation suite: every split the data holds, every metric, one `eval.json`.

    results = evaluate(model, tok, "data/demo", EvalConfig(forget="forget10"), out="runs/target/eval",
                       retain_results="runs/retain/eval/eval.json", before_results="runs/target/eval/eval.json")

Roles (the keys of ``splits``) and the split each reads, when it exists:
``forget`` (``forget10_perturbed``, else ``forget10``), ``holdout`` (``holdout10``: MIA non-members, forward
pass only), ``retain`` (``retain_perturbed``), ``world_facts`` (``world_facts_perturbed``), ``real_authors``
(``real_authors_perturbed``; the synthetic world has none, so Model Utility there has 6 values, not 9).

eval.json layout (key names are stable; the report card reads them)::

    model, fingerprint, data, config, seed, versions
    complete: false until every stage has run (a killed eval's file is refused as a reference)
    training: {split, forget_items_seen} of a model whose obliviate.json names its training split (else null)
    splits:
      <role>:
        source: split name;  n: item count
        items: [ {index, question, answer,
                  nll_mean, nll_sum, n_tokens,          # answer, teacher forced (NLL per answer token / total)
                  prob,                                 # exp(-nll_mean)
                  prob_norm,                            # p/(p+Σp_pert)          (when perturbations exist)
                  nll_tr_mean, nll_perturbed_mean: [K], # ỹ (paraphrase or answer) and each perturbation
                  truth_ratio,                          # exp(nll_tr_mean - mean(nll_perturbed_mean))
                  extraction_strength, exact_memorization,
                  mia: {loss, zlib, min_k, min_k_pp},   # loss-like: higher = less member-like
                  generation, rouge_l_recall, token_entropy, n_generated_tokens,   # not on holdout
                  cosine_similarity,                    # null without "before" generations
                  entailment_label, entailed}, ... ]    # null without --nli
        means: {rouge_l_recall, prob (TOFU form: normalised on world_facts/real_authors), prob_raw, prob_norm,
                truth_ratio (TOFU form: forget mean min(TR,1/TR), others mean max(0,1-TR)),
                truth_ratio_retain_form, truth_ratio_forget_form, truth_ratio_seed_a (forget: 1-mean min),
                token_entropy, cosine_similarity, entailment_score, extraction_strength, exact_memorization,
                nll_mean}
    aggregates: {forget_quality, forget_quality_ks, forget_quality_floor, forget_quality_n,
                 model_utility, model_utility_parts: {"retain/prob": ...}, model_utility_n,
                 mu18, mu18_parts, mu18_n, mu18_no_es,        # *_no_es: clearly-labelled variant without ES
                 forget_efficacy, forget_efficacy_parts, forget_efficacy_no_es,
                 forget_truth_ratio (TOFU form), forget_truth_ratio_seed_a,
                 mia: {loss, zlib, min_k, min_k_pp}  (ROC-AUC, forget vs holdout),
                 privleak, privleak_reference_auc, privleak_reference,
                 verbmem, knowmem, mcq: {split: accuracy}}
    muse: {verbmem: {...items}, knowmem: {...}};  mcq: {split: {items, accuracy, chance}}
    not_computed: {metric: reason}            (also "split:<role>" for a missing split)
    missing, stage_not_computed               (the raw inputs of not_computed, kept for `aggregate`)

eval.json is rewritten after every stage (atomically), and every stage's raw output is cached under
``<out>/cache/<fingerprint>/`` keyed by (split, stage, parameters, records), so an interrupted run resumes
and re-running skips finished work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from obliviate import ObliviateError
from obliviate.config import versions
from obliviate.rundir import write_json
from obliviate.data.format import encode_prompt
from obliviate.data.loading import MCQ_FIELDS, load_split
from obliviate.evaluate import metrics as M
from obliviate.evaluate.config import EvalConfig
from obliviate.evaluate.generate import generate
from obliviate.evaluate.passes import forward_scores

ROLES = ("forget", "holdout", "retain", "world_facts", "real_authors")
UTILITY_ROLES = ("retain", "real_authors", "world_facts")
NORMALISED_PROB_ROLES = ("world_facts", "real_authors")  # TOFU: p_true / (p_true + Σ p_pert) there
MIA_KEYS = ("loss", "zlib", "min_k", "min_k_pp")
CACHE_VERSION = 1


# ------------------------------------------------------------------------------------------- splits


def _split_exists(data: str | Path, split: str) -> tuple[bool, str]:
    path = Path(data)
    if path.is_dir():
        ok = any((path / f"{split}{ext}").is_file() for ext in (".json", ".jsonl"))
        return ok, "" if ok else f"{path} has no split '{split}'"
    if path.is_file():
        return False, f"{path} is a single file (used as the forget split)"
    return True, ""  # a hub id: try it


def _load_role(data, split: str, *, required: bool) -> tuple[list[dict] | None, str]:
    ok, reason = _split_exists(data, split)
    if not ok:
        return None, reason
    try:
        return load_split(data, split), ""
    except ObliviateError as e:
        if required or Path(data).exists():  # a broken local file is an error, a missing hub split is not
            raise
        return None, str(e)


def resolve_splits(data, cfg: EvalConfig) -> tuple[dict[str, tuple[str, list[dict]]], dict[str, str]]:
    """{role: (split name, records)} for every role the data holds, and {role: reason} for the others."""
    found, missing = {}, {}
    if Path(data).is_file():
        found["forget"] = (Path(data).stem, load_split(data))
    else:
        base = cfg.forget.removesuffix("_perturbed")
        candidates = [f"{base}_perturbed", base]
        for split in candidates:
            records, reason = _load_role(data, split, required=False)
            if records is not None:
                found["forget"] = (split, records)
                break
        if "forget" not in found:
            raise ObliviateError(f"{data}: forget split not found (tried {', '.join(candidates)}): {reason}")
    wanted = {"holdout": cfg.holdout_split() if not Path(data).is_file() else None, "retain": cfg.retain,
              "world_facts": cfg.world_facts, "real_authors": cfg.real_authors}
    for role, split in wanted.items():
        if split is None:
            missing[role] = "not requested" if Path(data).is_dir() or role != "holdout" else "no holdout split"
            continue
        records, reason = _load_role(data, split, required=False)
        if records is None:
            missing[role] = reason
        else:
            found[role] = (split, records)
    if cfg.max_items:
        found = {r: (s, recs[: cfg.max_items]) for r, (s, recs) in found.items()}
    return found, missing


def has_perturbations(records: list[dict], split: str = "split") -> bool:
    """Every record has a non-empty `perturbed_answer` list; some but not all is an error naming the record."""
    have = [isinstance(r.get("perturbed_answer"), list) and bool(r["perturbed_answer"]) for r in records]
    if any(have) and not all(have):
        i = have.index(False)
        raise ObliviateError(f"{split} record {i} ({str(records[i].get('question', ''))[:60]!r}): no perturbed_answer "
                             f"list, while {sum(have)} other records have one (truth ratio needs all or none)")
    return bool(records) and all(have)


def tr_answer_field(role: str, records: list[dict]) -> str:
    """ỹ of the truth ratio: the paraphrased answer on author splits, the answer on world facts / real authors."""
    if role in NORMALISED_PROB_ROLES or not all(r.get("paraphrased_answer") for r in records):
        return "answer"
    return "paraphrased_answer"


# -------------------------------------------------------------------------------------------- cache


class StageCache:
    """JSON files under `<root>/<fingerprint>/`, one per (split, stage, parameters, records)."""

    def __init__(self, root: Path | None, fingerprint: str):
        self.dir = root / fingerprint if root is not None else None

    def _path(self, split: str, stage: str, key: Any) -> Path | None:
        if self.dir is None:
            return None
        digest = hashlib.sha256(json.dumps([CACHE_VERSION, key], sort_keys=True, default=str).encode()).hexdigest()
        return self.dir / f"{split}.{stage}.{digest[:16]}.json"

    def get_or_compute(self, split: str, stage: str, key: Any, compute):
        path = self._path(split, stage, key)
        if path is not None and path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # a torn write from a killed run: recompute
        value = compute()
        if path is not None:
            _atomic_write(path, value)
        return value


def _atomic_write(path: Path, obj: Any) -> None:
    write_json(path, obj, indent=1)


# ------------------------------------------------------------------------------------------- stages


def _forward_stage(model, tok, role: str, records: list[dict], cfg: EvalConfig, progress: bool) -> list[dict]:
    """One forward pass per sequence: the answer, ỹ (if it differs) and each perturbation."""
    perturbed = role != "holdout" and has_perturbations(records, role)  # holdout: MIA only, the answer suffices
    tr_field = tr_answer_field(role, records) if perturbed else "answer"
    pairs, slots = [], []
    for i, r in enumerate(records):
        pairs.append((r["question"], r["answer"]))
        slots.append((i, "answer", None))
        if perturbed:
            if tr_field != "answer":
                pairs.append((r["question"], r[tr_field]))
                slots.append((i, "tr", None))
            for k, p in enumerate(r["perturbed_answer"]):
                pairs.append((r["question"], p))
                slots.append((i, "pert", k))
    rows = forward_scores(model, tok, pairs, batch_size=cfg.batch_size, k=cfg.min_k, max_length=cfg.max_length,
                          progress=progress, desc=f"forward {role}")
    items = [{"index": i, "question": r["question"], "answer": r["answer"]} for i, r in enumerate(records)]
    for (i, kind, k), row in zip(slots, rows):
        it = items[i]
        if kind == "answer" and row["nll_mean"] is None:  # zero scored tokens: not computed, not "known"
            it.update(nll_mean=None, nll_sum=None, n_tokens=0, prob=None, extraction_strength=None,
                      exact_memorization=None, mia=None, not_computed="no answer token left to score (truncated)")
            if perturbed and tr_field == "answer":
                it["nll_tr_mean"] = None
        elif kind == "answer":
            it.update(nll_mean=row["nll_mean"], nll_sum=row["nll_sum"], n_tokens=row["n_tokens"],
                      prob=M.probability(row["nll_mean"]), extraction_strength=row["extraction_strength"],
                      exact_memorization=row["exact_memorization"],
                      mia=M.mia_item_scores(row, it["answer"]))
            if perturbed and tr_field == "answer":
                it["nll_tr_mean"] = row["nll_mean"]
        elif kind == "tr":
            it["nll_tr_mean"] = row["nll_mean"]
        else:
            it.setdefault("nll_perturbed_mean", []).append(row["nll_mean"])
    if perturbed:
        for it in items:
            scored = it["nll_mean"] is not None and None not in it["nll_perturbed_mean"]
            it["prob_norm"] = M.normalised_probability(it["nll_mean"], it["nll_perturbed_mean"]) if scored else None
            it["truth_ratio"] = (M.truth_ratio(it["nll_tr_mean"], it["nll_perturbed_mean"])
                                 if scored and it["nll_tr_mean"] is not None else None)
    return items


def _generate_stage(model, tok, role: str, records: list[dict], cfg: EvalConfig, progress: bool) -> list[dict]:
    prompts = [encode_prompt(tok, r["question"]) for r in records]
    texts, ids = generate(model, tok, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.gen_batch_size,
                          progress=progress, desc=f"generate {role}")
    return [{"generation": t, "rouge_l_recall": M.rouge_l_recall(t, r["answer"]), "token_entropy": M.token_entropy(g),
             "n_generated_tokens": len(g)} for r, t, g in zip(records, texts, ids)]


def _before_generations(before_results: dict | None, role: str, items: list[dict]) -> tuple[list[str] | None, str]:
    if before_results is None:
        return None, "no 'before' generations (--before-model / --before-results)"
    split = before_results.get("splits", {}).get(role)
    if not split or any("generation" not in b for b in split.get("items", [])):
        return None, f"the 'before' results have no generations for split '{role}'"
    before = split["items"]
    if len(before) != len(items) or any(b["question"] != a["question"] for a, b in zip(items, before)):
        return None, f"the 'before' results of split '{role}' hold different questions"
    return [b["generation"] for b in before], ""


# -------------------------------------------------------------------------------------------- means


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def split_means(role: str, items: list[dict]) -> dict[str, float | None]:
    """Per-split means of every per-item value, plus the TOFU and seed-A truth-ratio aggregates."""
    out: dict[str, float | None] = {}
    for key in ("rouge_l_recall", "token_entropy", "cosine_similarity", "extraction_strength", "exact_memorization",
                "nll_mean"):
        if any(key in it for it in items):
            out[key] = _mean(it.get(key) for it in items)
    out["prob_raw"] = _mean(it["prob"] for it in items)
    if all("prob_norm" in it for it in items):
        out["prob_norm"] = _mean(it["prob_norm"] for it in items)
    out["prob"] = out.get("prob_norm") if role in NORMALISED_PROB_ROLES and "prob_norm" in out else out["prob_raw"]
    trs = [it["truth_ratio"] for it in items if it.get("truth_ratio") is not None]  # None: not computed
    if trs and all("truth_ratio" in it for it in items):
        out["truth_ratio_retain_form"] = M.truth_ratio_retain(trs)
        out["truth_ratio_forget_form"] = M.truth_ratio_forget(trs)
        out["truth_ratio"] = out["truth_ratio_forget_form"] if role == "forget" else out["truth_ratio_retain_form"]
        if role == "forget":
            out["truth_ratio_seed_a"] = M.truth_ratio_forget_seed_a(trs)
    if items and all(it.get("entailed") is not None for it in items):
        out["entailment_score"] = float(np.mean([bool(it["entailed"]) for it in items]))
    return out


# --------------------------------------------------------------------------------------- aggregates


def aggregate(results: dict, retain_results: dict | None = None, *,
              privleak_reference_auc: float | None = None) -> tuple[dict, dict[str, str]]:
    """Corpus-level aggregates from a results dict (fresh or `load_results`), and {metric: reason} for the rest."""
    splits, agg, nc = results["splits"], {}, {}
    forget = splits.get("forget", {})
    fm = forget.get("means", {})
    # Forget Quality
    trs = [it["truth_ratio"] for it in forget.get("items", []) if it.get("truth_ratio") is not None]
    ret_trs = [it["truth_ratio"] for it in (retain_results or {}).get("splits", {}).get("forget", {}).get("items", [])
               if it.get("truth_ratio") is not None]
    ref_problem = reference_problem(results, retain_results)
    if not trs:
        nc["forget_quality"] = "the forget split has no perturbed answers (no truth ratios)"
    elif retain_results is None:
        nc["forget_quality"] = "no retain-model results (--retain-model / --retain-results)"
    elif ref_problem:
        nc["forget_quality"] = ref_problem
    elif not ret_trs:
        nc["forget_quality"] = "the retain-model results have no forget-split truth ratios"
    else:
        from scipy.stats import ks_2samp

        agg["forget_quality"] = M.forget_quality(trs, ret_trs)
        agg["forget_quality_ks"] = float(ks_2samp(trs, ret_trs).statistic)
        agg["forget_quality_floor"] = M.forget_quality_floor(len(trs), len(ret_trs))
        agg["forget_quality_n"] = [len(trs), len(ret_trs)]
    if "truth_ratio_forget_form" in fm:
        agg["forget_truth_ratio"] = fm["truth_ratio_forget_form"]
        agg["forget_truth_ratio_seed_a"] = fm["truth_ratio_seed_a"]
    # Model Utility (TOFU) and MU-18 (seed A)
    used = [r for r in UTILITY_ROLES if r in splits]
    mu_parts = {f"{r}/{k}": splits[r]["means"].get(k) for r in used for k in ("prob", "rouge_l_recall", "truth_ratio")}
    if not used or any(v is None for v in mu_parts.values()):
        nc["model_utility"] = "no retain / world-facts / real-authors split with perturbed answers"
    else:
        agg["model_utility"] = M.harmonic_mean(list(mu_parts.values()))
        agg["model_utility_parts"] = mu_parts
        agg["model_utility_n"] = len(mu_parts)
        if len(mu_parts) < 9:
            agg["model_utility_note"] = (f"{len(mu_parts)} of TOFU's 9 values: splits {', '.join(used)} "
                                         f"(missing: {', '.join(r for r in UTILITY_ROLES if r not in used)})")
    extra = {f"{r}/{k}": splits[r]["means"].get(k) for r in used for k in ("token_entropy", "cosine_similarity")}
    es = {f"{r}/entailment_score": splits[r]["means"].get("entailment_score") for r in used}
    if "model_utility" in agg and all(v is not None for v in extra.values()):
        no_es = {**mu_parts, **extra}
        agg["mu18_no_es"] = M.harmonic_mean(list(no_es.values()))
        if all(v is not None for v in es.values()):
            agg["mu18"] = M.harmonic_mean(list({**no_es, **es}.values()))
            agg["mu18_parts"] = {**no_es, **es}
            agg["mu18_n"] = len(agg["mu18_parts"])
        else:
            nc["mu18"] = "needs entailment_score (not computed)"
    elif "model_utility" in agg:
        nc["mu18"] = "needs cosine_similarity (not computed)"
        nc["mu18_no_es"] = nc["mu18"]
    # Forget Efficacy (seed A)
    fe_parts = {k: fm.get(k) for k in ("rouge_l_recall", "prob", "truth_ratio_seed_a", "cosine_similarity")}
    if all(v is not None for v in fe_parts.values()):
        agg["forget_efficacy_no_es"] = M.forget_efficacy(list(fe_parts.values()))
        if fm.get("entailment_score") is not None:
            agg["forget_efficacy_parts"] = {**fe_parts, "entailment_score": fm["entailment_score"]}
            agg["forget_efficacy"] = M.forget_efficacy(list(agg["forget_efficacy_parts"].values()))
        else:
            nc["forget_efficacy"] = "needs entailment_score (not computed)"
    else:
        missing = [k for k, v in fe_parts.items() if v is None]
        nc["forget_efficacy"] = f"needs forget-split {', '.join(missing)} (not computed)"
        nc["forget_efficacy_no_es"] = nc["forget_efficacy"]
    # MIA and PrivLeak
    if "holdout" in splits and forget.get("items"):
        scored = lambda role: [it["mia"] for it in splits[role]["items"] if it.get("mia") is not None]  # noqa: E731
        agg["mia"] = {k: M.mia_auc([m[k] for m in scored("forget")], [m[k] for m in scored("holdout")])
                      for k in MIA_KEYS}
        ref_auc = ((retain_results or {}).get("aggregates") or {}).get("mia", {}).get("min_k")
        if ref_auc is not None and ref_problem:
            nc["privleak"], ref_auc = ref_problem, None
            if privleak_reference_auc is not None:
                ref_auc, agg["privleak_reference"] = privleak_reference_auc, "given constant (privleak_reference_auc)"
        elif ref_auc is not None:
            agg["privleak_reference"] = "retain model"
        elif privleak_reference_auc is not None:
            ref_auc, agg["privleak_reference"] = privleak_reference_auc, "given constant (privleak_reference_auc)"
        if ref_auc is not None:
            agg["privleak_reference_auc"] = ref_auc
            agg["privleak"] = M.privleak(agg["mia"]["min_k"], ref_auc)
            nc.pop("privleak", None)
        elif "privleak" not in nc:
            nc["privleak"] = "no retain-model results and no privleak_reference_auc"
    else:
        nc["mia"] = nc["privleak"] = "no holdout split (MIA non-members): " + results.get("missing", {}).get(
            "holdout", "not found")
    for name in ("verbmem", "knowmem"):
        if name in results.get("muse", {}):
            agg[name] = results["muse"][name][name]
    if results.get("mcq"):
        agg["mcq"] = {s: r["accuracy"] for s, r in results["mcq"].items()}
    for role, reason in results.get("missing", {}).items():
        nc[f"split:{role}"] = reason
    nc.update(results.get("stage_not_computed", {}))
    return agg, nc


def reference_problem(results: dict, retain_results: dict | None) -> str | None:
    """Why `retain_results` cannot be the Forget Quality / PrivLeak reference, or None if it can.

    The reference must be evaluated on the same forget split and items, and the retain model must not have
    been trained on any forget item (its recorded training split, `training` in eval.json)."""
    if retain_results is None:
        return None
    ours = results.get("splits", {}).get("forget", {})
    ref = retain_results.get("splits", {}).get("forget", {})
    if ours.get("source") and ref.get("source") and ours["source"] != ref["source"]:
        return (f"the retain-model results are on forget split '{ref['source']}', these on '{ours['source']}' "
                "(same split needed)")
    qs = lambda s: [it.get("question") for it in s.get("items", [])]  # noqa: E731
    if ours.get("items") and ref.get("items") and qs(ours) != qs(ref):
        return "the retain-model results hold different forget questions (same items needed)"
    seen = (retain_results.get("training") or {}).get("forget_items_seen")
    if seen:
        return (f"the retain model was trained on {seen} forget item(s) (training split "
                f"'{retain_results['training'].get('split')}'): it is no reference for forgetting")
    return None


def training_record(model, data, forget_records: list[dict]) -> dict | None:
    """{split, forget_items_seen} of a model whose obliviate.json names its training split, found in `data`.

    Lets a later evaluation refuse this model as a retain reference when it has seen the forget items."""
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    meta = Path(str(path)) / "obliviate.json" if path else None
    if meta is None or not meta.is_file():
        return None
    split = json.loads(meta.read_text()).get("split")
    if not split or not Path(data).is_dir():
        return {"split": split, "forget_items_seen": None} if split else None
    try:
        trained = load_split(data, split)
    except ObliviateError:
        return {"split": split, "forget_items_seen": None}
    trained_q = {(r.get("question"), r.get("answer")) for r in trained}
    seen = sum((r.get("question"), r.get("answer")) in trained_q for r in forget_records)
    return {"split": split, "forget_items_seen": seen}


# ------------------------------------------------------------------------------------------- driver


def load_results(path: str | Path) -> dict:
    """A saved eval.json (or the directory holding it)."""
    p = Path(path)
    p = p / "eval.json" if p.is_dir() else p
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ObliviateError(f"{p}: no such eval.json") from None
    except json.JSONDecodeError as e:
        raise ObliviateError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or "splits" not in data:
        raise ObliviateError(f"{p}: not an obliviate eval.json (no 'splits')")
    return data


def _as_results(value: dict | str | Path | None) -> dict | None:
    return value if value is None or isinstance(value, dict) else load_results(value)


def evaluate(model, tokenizer, data: str | Path, cfg: EvalConfig | None = None, *,
             retain_results: dict | str | Path | None = None, before_results: dict | str | Path | None = None,
             out: str | Path | None = None, model_name: str | None = None, overwrite: bool = False,
             progress: bool = True, embedder=None, nli=None) -> dict:
    """Evaluate `model` on every split `data` holds; return (and write to `<out>/eval.json`) the results.

    retain_results / before_results: a results dict or a saved eval.json path (Forget Quality, PrivLeak /
    Cosine Similarity). embedder / nli: already-loaded models to reuse (else loaded from cfg once).
    """
    from obliviate.models.loading import model_fingerprint

    cfg = cfg or EvalConfig()
    retain_results, before_results = _as_results(retain_results), _as_results(before_results)
    for kind, ref in (("retain", retain_results), ("before", before_results)):
        if ref is not None and ref.get("complete") is False:
            raise ObliviateError(f"the {kind} results of {ref.get('model')} are incomplete (their evaluation was "
                                 "interrupted); finish that eval before using it as a reference")
    torch.manual_seed(cfg.seed)
    model.eval()
    fingerprint = model_fingerprint(model)
    out = Path(out) if out is not None else None
    if out is not None and (out / "eval.json").is_file() and not overwrite:
        old = load_results(out)
        if old.get("fingerprint") != fingerprint:
            raise ObliviateError(f"{out}/eval.json holds results of another model (fingerprint "
                                 f"{old.get('fingerprint')}); choose another --out or pass --overwrite")
    cache = StageCache(out / "cache" if out is not None else None, fingerprint)
    found, missing = resolve_splits(data, cfg)
    training = training_record(model, data, found["forget"][1])
    results: dict[str, Any] = {
        "model": str(model_name or getattr(model, "name_or_path", "") or "in-memory model"),
        "fingerprint": fingerprint, "data": str(data), "config": dataclasses.asdict(cfg), "seed": cfg.seed,
        "versions": versions(), "training": training, "splits": {}, "missing": missing, "stage_not_computed": {},
        "aggregates": {}, "not_computed": {}, "complete": False}

    def save():
        results["aggregates"], results["not_computed"] = aggregate(
            results, retain_results, privleak_reference_auc=cfg.privleak_reference_auc)
        if out is not None:
            _atomic_write(out / "eval.json", results)

    gen_key = {"max_new_tokens": cfg.max_new_tokens, "max_length": cfg.max_length}
    for role in ROLES:
        if role not in found:
            continue
        split, records = found[role]
        rec_hash = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()[:16]
        items = cache.get_or_compute(split, f"forward-{role}", [rec_hash, cfg.min_k, cfg.max_length],
                                     lambda: _forward_stage(model, tokenizer, role, records, cfg, progress))
        results["splits"][role] = {"source": split, "n": len(records), "items": items,
                                   "means": split_means(role, items)}
        save()
        if role == "holdout":
            continue
        gens = cache.get_or_compute(split, "generate", [rec_hash, gen_key],
                                    lambda: _generate_stage(model, tokenizer, role, records, cfg, progress))
        for it, g in zip(items, gens):
            it.update(g)
        results["splits"][role]["means"] = split_means(role, items)
        save()
    _cosine_stage(results, before_results, cfg, embedder)
    save()
    _nli_stage(results, cfg, nli, progress)
    save()
    _extra_stages(model, tokenizer, data, cfg, cache, results, progress)
    results["complete"] = True  # until here eval.json says it is partial: never a reference
    save()
    return results


def _gen_roles(results: dict) -> list[str]:
    return [r for r, s in results["splits"].items() if r != "holdout" and s["items"] and "generation" in s["items"][0]]


def _cosine_stage(results: dict, before_results: dict | None, cfg: EvalConfig, embedder) -> None:
    if cfg.embedder is None and embedder is None:
        results["stage_not_computed"]["cosine_similarity"] = "embedder=None in the config"
        return
    reasons = []
    for role in _gen_roles(results):
        items = results["splits"][role]["items"]
        before, reason = _before_generations(before_results, role, items)
        if before is None:
            reasons.append(reason)
            continue
        if embedder is None:
            from obliviate.evaluate.embeddings import load_embedder

            embedder = load_embedder(cfg.embedder)
        from obliviate.evaluate.embeddings import cosine_similarities

        for it, cs in zip(items, cosine_similarities(embedder, [it["generation"] for it in items], before)):
            it["cosine_similarity"] = cs
        results["splits"][role]["means"] = split_means(role, items)
    if reasons:
        results["stage_not_computed"]["cosine_similarity"] = "; ".join(dict.fromkeys(reasons))


def _nli_stage(results: dict, cfg: EvalConfig, nli, progress: bool) -> None:
    from obliviate.evaluate.nli import NO_NLI_REASON, load_nli, nli_labels

    if cfg.nli is None and nli is None:
        results["stage_not_computed"]["entailment_score"] = NO_NLI_REASON
        return
    nli = nli or load_nli(cfg.nli)
    results["config"]["nli"] = nli.name
    for role in _gen_roles(results):
        items = results["splits"][role]["items"]
        todo = [it for it in items if it["rouge_l_recall"] >= cfg.rouge_floor]
        # forget: does the output entail the truth? retain-type: does the truth entail the output?
        pairs = [(it["generation"], it["answer"]) if role == "forget" else (it["answer"], it["generation"])
                 for it in todo]
        labels = nli_labels(nli, [p for p, _ in pairs], [h for _, h in pairs]) if pairs else []
        for it in items:
            it["entailment_label"] = None
        for it, lab in zip(todo, labels):
            it["entailment_label"] = lab
        for it in items:
            it["entailed"] = M.entailed(it["entailment_label"], it["rouge_l_recall"], rouge_floor=cfg.rouge_floor)
        results["splits"][role]["means"] = split_means(role, items)


def _extra_stages(model, tok, data, cfg: EvalConfig, cache: StageCache, results: dict, progress: bool) -> None:
    from obliviate.evaluate.mcq import mcq_eval
    from obliviate.evaluate.muse import knowmem_eval, verbmem_eval

    if cfg.verbmem:
        recs = load_split(data, cfg.verbmem, fields=("prompt", "gt"))[: cfg.max_items]
        results.setdefault("muse", {})["verbmem"] = cache.get_or_compute(
            cfg.verbmem, "verbmem", recs, lambda: verbmem_eval(model, tok, recs, batch_size=cfg.gen_batch_size,
                                                               progress=progress))
    if cfg.knowmem:
        qa = load_split(data, cfg.knowmem, fields=("question", "answer"))[: cfg.max_items]
        icl = load_split(data, cfg.knowmem_icl, fields=("question", "answer")) if cfg.knowmem_icl else []
        results.setdefault("muse", {})["knowmem"] = cache.get_or_compute(
            cfg.knowmem, "knowmem", [qa, icl], lambda: knowmem_eval(model, tok, qa, icl, batch_size=cfg.gen_batch_size,
                                                                    progress=progress))
    for split in cfg.mcq:
        recs = load_split(data, split, fields=MCQ_FIELDS)[: cfg.max_items]
        results.setdefault("mcq", {})[split] = cache.get_or_compute(
            split, "mcq", recs, lambda: mcq_eval(model, tok, recs, batch_size=cfg.batch_size))


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
