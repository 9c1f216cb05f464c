"""The evaluation suite: every split the data holds, every metric, one `eval.json`.

    results = evaluate(model, tok, "data/demo", EvalConfig(forget="forget10"), out="runs/target/eval",
                       retain_results="runs/retain/eval/eval.json", before_results="runs/target/eval/eval.json")
    results = evaluate(model, tok, "muse-bench/MUSE-News", benchmark="muse-news")     # the hub (or a local mirror)
    results = evaluate(model, tok, {"forget": recs, "retain": recs2}, cfg)             # records per role, in memory

The driver only: roles are resolved and loaded once, up front (`roles.py`), then scored stage by stage
(`stages.py`: forward, generate, cosine, NLI, raw-text MIA, VerbMem / KnowMem / MCQ), aggregated
(`aggregate.py`) and summarised (`summary.py`); `cache.py` keeps each stage's output. The QA roles' greedy
answers come from one generation pass over every role that needs them (continuous batching keeps its batch full
across roles), cached per role.

Roles (the keys of ``splits``): see `roles.py` (TOFU: forget, holdout, retain, world_facts, real_authors;
RWKU: forget_level1..3, neighbor_level1..2). Raw-text roles (MUSE privleak, RWKU mia) go to ``text``.

eval.json layout (key names are stable; the report card reads them)::

    model, fingerprint, data, config, seed, versions
    device: {device, dtype, autocast} where the model ran (bf16 autocast on CUDA by default, cached apart)
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
                  refusal_rate,                         # 1 if the generation refuses (metrics.refusal)
                  cosine_similarity,                    # null without "before" generations
                  entailment_label, entailed}, ... ]    # null without --nli
        means: {rouge_l_recall, prob (TOFU form: normalised on world_facts/real_authors), prob_raw, prob_norm,
                truth_ratio (TOFU form: forget mean min(TR,1/TR), others mean max(0,1-TR)),
                truth_ratio_retain_form, truth_ratio_forget_form, truth_ratio_seed_a (forget: 1-mean min),
                token_entropy, cosine_similarity, entailment_score, extraction_strength, exact_memorization,
                refusal_rate (the fraction of refusals), nll_mean}
    aggregates: {forget_quality, forget_quality_ks, forget_quality_floor, forget_quality_n,
                 model_utility, model_utility_parts: {"retain/prob": ...}, model_utility_n,
                 mu18, mu18_parts, mu18_n, mu18_no_es,        # *_no_es: clearly-labelled variant without ES
                 forget_efficacy, forget_efficacy_parts, forget_efficacy_no_es,
                 forget_truth_ratio (TOFU form), forget_truth_ratio_seed_a,
                 mia: {loss, zlib, min_k, min_k_pp}  (ROC-AUC, forget vs holdout),
                 privleak, privleak_reference_auc, privleak_reference,
                 verbmem, knowmem | knowmem_forget, knowmem_retain, mcq: {role: accuracy}}
    benchmark, mia_roles: [members, non-members]
    text: {role: {source, n, items: [{index, text, n_tokens, nll_mean, mia}], means}}
    muse: {role: {items, verbmem | knowmem}};  mcq: {role: {items, accuracy, chance}}
    harness: lm-eval's results with --harness lm-eval (layout: evaluate/harness.py)
    not_computed: {metric: reason}            (also "split:<role>" for a missing split)
    missing, stage_not_computed               (the raw inputs of not_computed, kept for `aggregate`)

eval.json is rewritten after every stage (atomically), and every stage's raw output is cached under
``<out>/cache/<fingerprint>/`` keyed by (split, stage, parameters, records), so an interrupted run resumes
and re-running skips finished work.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from obliviate import ObliviateError
from obliviate.config import versions
from obliviate.data.benchmarks import Benchmark, get_benchmark, infer_benchmark
from obliviate.data.format import records_hash
from obliviate.evaluate import stages
from obliviate.evaluate.aggregate import MIA_KEYS, aggregate, reference_problem, split_means  # noqa: F401
from obliviate.evaluate.cache import EvalCache, as_results, load_results
from obliviate.evaluate.config import EvalConfig
from obliviate.evaluate.harness import harness_eval, harness_tasks
from obliviate.evaluate.metrics import METRICS
from obliviate.evaluate.roles import resolve_roles, resolve_splits, training_record  # noqa: F401
from obliviate.evaluate.summary import summary_rows  # noqa: F401
from obliviate.parity import resolved
from obliviate.rundir import write_json
from obliviate.stagecache import digest


def evaluate(model, tokenizer, data, cfg: EvalConfig | None = None, *, benchmark: Benchmark | str | None = None,
             retain_results: dict | str | Path | None = None, before_results: dict | str | Path | None = None,
             out: str | Path | None = None, model_name: str | None = None, overwrite: bool = False,
             progress: bool = True, embedder=None, nli=None, cache_dir: str | Path | None = None) -> dict:
    """Evaluate `model` on every role of `benchmark` that `data` holds; return (and write to `<out>/eval.json`)
    the results.

    data: a directory (the world, or a local mirror of a hub repository), one JSON file, a hub id, None (the
    benchmark's hub ids), or {role: records} in memory. benchmark: a `BENCHMARKS` name (default: inferred).
    retain_results / before_results: a results dict or a saved eval.json path (Forget Quality, PrivLeak /
    Cosine Similarity). embedder / nli: already-loaded models to reuse (else loaded from cfg once).
    cache_dir: where the stage cache lives (default `<out>/cache`); entries are keyed by the model's weight
    fingerprint, so evaluations of the same model in different `out`s can share one directory.
    """
    from obliviate.evaluate.distributed import is_main_process
    from obliviate.models.device import autocast, autocast_kwargs, model_device
    from obliviate.models.loading import model_fingerprint

    cfg = cfg or EvalConfig()
    bench = get_benchmark(benchmark or infer_benchmark(data)) if not isinstance(benchmark, Benchmark) else benchmark
    retain_results, before_results = _reference(retain_results, "retain"), _reference(before_results, "before")
    torch.manual_seed(cfg.seed)
    model.eval()
    fingerprint = model_fingerprint(model)
    out = Path(out) if out is not None else None
    if out is not None and (out / "eval.json").is_file() and not overwrite:
        old = load_results(out)
        if old.get("fingerprint") != fingerprint:
            raise ObliviateError(f"{out}/eval.json holds results of another model (fingerprint "
                                 f"{old.get('fingerprint')}); choose another --out or pass --overwrite")
    dev = model_device(model)
    amp = autocast_kwargs(dev)["enabled"]  # bf16 autocast on CUDA: its scores are cached apart from fp32 ones
    cache = EvalCache(Path(cache_dir) if cache_dir is not None else out / "cache" if out is not None else None,
                      fingerprint + ("-bf16" if amp else ""), write=is_main_process())
    roles = resolve_roles(bench, data, cfg)
    harness = harness_tasks(cfg) if cfg.harness else None  # every local file checked before the long stages
    results = _new_results(model, model_name, fingerprint, data, bench, cfg, roles)
    results["device"] = {"device": str(dev), "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
                         "autocast": "bf16" if amp else None}
    ref_auc = cfg.privleak_reference_auc if cfg.privleak_reference_auc is not None else bench.privleak_reference_auc

    def save():
        results["aggregates"], results["not_computed"] = aggregate(results, retain_results,
                                                                   privleak_reference_auc=ref_auc)
        if out is not None and is_main_process():  # `accelerate launch`: every process holds the same results
            write_json(out / "eval.json", results, indent=1)

    with autocast(dev):
        _qa_stages(model, tokenizer, bench, roles, cfg, cache, results, progress, save)
    if results["splits"]:
        stages.cosine_stage(results, before_results, cfg, embedder)
        save()
        stages.nli_stage(results, cfg, nli, progress)
        save()
    with autocast(dev):
        stages.extra_stages(model, tokenizer, roles, cfg, cache, results, progress, save)
    if cfg.harness:  # lm-eval's own tasks on the same model (evaluate/harness.py), not cached: re-run on resume
        results["harness"] = harness_eval(model, tokenizer, cfg, harness)
    results["complete"] = True  # until here eval.json says it is partial: never a reference
    save()
    return results


def _reference(ref: dict | str | Path | None, kind: str) -> dict | None:
    ref = as_results(ref)
    if ref is not None and ref.get("complete") is False:
        raise ObliviateError(f"the {kind} results of {ref.get('model')} are incomplete (their evaluation was "
                             "interrupted); finish that eval before using it as a reference")
    return ref


def _new_results(model, model_name, fingerprint: str, data, bench: Benchmark, cfg: EvalConfig, roles) -> dict:
    training = training_record(model, data, roles.found["forget"].records) if "forget" in roles.found else None
    results: dict[str, Any] = {
        "model": str(model_name or getattr(model, "name_or_path", "") or "in-memory model"),
        "fingerprint": fingerprint,
        "data": "in-memory records" if isinstance(data, dict) else str(data or bench.hub_id),
        "benchmark": bench.name, "config": dataclasses.asdict(cfg), "seed": cfg.seed, "versions": versions(),
        "parity": cfg.parity, "conventions": resolved("eval", cfg.parity),
        "training": training, "splits": {}, "missing": roles.missing, "stage_not_computed": {}, "aggregates": {},
        "not_computed": {}, "complete": False}
    if roles.mia:
        results["mia_roles"] = list(roles.mia)
    return results


def qa_roles(bench: Benchmark, roles) -> list[str]:
    """The QA roles scored by the forward pass: the split roles first (in the record's order), then the others
    (KnowMem roles go through their few-shot prompt instead)."""
    order = [r for r in bench.split_roles if r in roles.found] + [r for r in roles.found if r not in bench.split_roles]
    icl = set(roles.knowmem_icl) | set(roles.knowmem_icl.values())
    return [r for r in order if roles.found[r].format == "qa" and r not in icl]


def generates(bench: Benchmark, role: str) -> bool:
    """Whether a QA role needs greedy answers: unless the record lists only metrics without generation on it
    (TOFU's holdout: MIA only)."""
    names = bench.metrics.get(role)
    return names is None or any(METRICS[m].needs.startswith("generation") for m in names)


def derived_item_metrics(items: list[dict]) -> None:
    """Per-item values of the `METRICS` records with `from_item` (no stage writes them), where their inputs exist."""
    for key, metric in METRICS.items():
        if metric.from_item is None:
            continue
        for it in items:
            value = metric.from_item(it)
            if value is not None:
                it[key] = value


def _qa_stages(model, tokenizer, bench, roles, cfg, cache, results, progress, save) -> None:
    """Forward pass of every QA role, then one generation pass over the roles whose metrics need greedy answers
    (`_generation_pass`); each stage's output cached per role."""
    par = [] if cfg.parity == "paper" else [cfg.parity]  # paper: the keys of caches written before the switch
    gen_key = {"max_new_tokens": cfg.max_new_tokens, "max_length": cfg.max_length}
    gen_roles = {}  # role -> the (split, key) of its cached generations
    for role in qa_roles(bench, roles):
        split, records = roles.found[role].source, roles.found[role].records
        rec_hash = records_hash(records)
        items = cache.get_or_compute(split, f"forward-{role}", [rec_hash, cfg.min_k, cfg.max_length, *par],
                                     lambda: stages.forward_stage(model, tokenizer, role, records, cfg, progress))
        derived_item_metrics(items)
        results["splits"][role] = {"source": split, "n": len(records), "items": items,
                                   "means": split_means(role, items, cfg.parity)}
        save()
        if generates(bench, role):
            gen_roles[role] = (split, [rec_hash, gen_key, *par])
    if not gen_roles:
        return
    for role, gens in _generation_pass(model, tokenizer, roles, cfg, cache, gen_roles, progress).items():
        items = results["splits"][role]["items"]
        for it, g in zip(items, gens):
            it.update(g)
        derived_item_metrics(items)
        results["splits"][role]["means"] = split_means(role, items, cfg.parity)
    save()


def _generation_pass(model, tokenizer, roles, cfg, cache, gen_roles: dict, progress) -> dict[str, list[dict]]:
    """Each role's generations: from its cache entry (split, "generate", key) when stored, else from one
    `stages.generate_roles` over every role still missing (continuous batching fills the batch across roles),
    then stored in that role's own entry, so a resumed or later evaluation finds them per role."""
    gens = {role: cache.get(split, "generate", key) for role, (split, key) in gen_roles.items()}
    first: dict[str, str] = {}  # cache entry -> the role that computes it (two roles may read one split)
    for role, (split, key) in gen_roles.items():
        if gens[role] is None:
            first.setdefault(split + digest(key), role)
    if first:
        fresh = stages.generate_roles(model, tokenizer, {r: roles.found[r].records for r in first.values()}, cfg,
                                      progress)
        for role, (split, key) in gen_roles.items():
            if gens[role] is None:
                gens[role] = fresh[first[split + digest(key)]]
                cache.put(split, "generate", key, gens[role])
    return gens
