"""The in-training probe: a small, declared sample of each evaluation role, scored by the suite's own forward pass.

    roles = probe_roles("data/demo", benchmark="world", forget="forget10")          # {role: records}, no model
    probe = build_probe(tok, roles, size=16, seed=0)                                  # probe.names: before any work
    probe(model) == {"forget_prob": 0.61, "forget_truth_ratio": 0.43, "retain_prob": 0.88, "mia_auc": 0.71, ...}
    probe.reference("runs/retain/eval/eval.json")  # the same metrics of a retain model, on the same items

Roles: forget (with its paraphrased / perturbed answers), retain, world facts / real authors (neighbours), holdout
(MIA non-members), as many of them as the data holds; `size` items each, drawn once per seed. One scoring pass
(`stages.forward_stage`: NLL, Prob, truth ratio, Min-K MIA, ES/EM, each prompt run once) gives, per role,
`<role>_prob`, `<role>_nll`, `<role>_extraction_strength`, `<role>_exact_memorization` and, where the role has
perturbed answers, `<role>_truth_ratio` (the split forms of `aggregate.split_means`, as in eval.json). With
`rouge=True` a short greedy answer adds `<role>_rouge_l_recall`. Across roles: `mia_auc` (Min-K% ROC-AUC,
forget vs holdout, `metrics.mia_auc`) and `forget_gap` = retain_prob − forget_prob. Raw-text roles (MUSE, RWKU
MIA passages) give `<role>_nll` from `stages.text_stage`, and `mia_auc` over the benchmark's MIA roles. MUSE's
generation metrics, by their METRICS names: `verbmem` (ROUGE-L F1 ×100 of a greedy `max_new_tokens` continuation of
a forget-text prefix against the first `max_new_tokens` tokens of the true continuation, `muse.verbmem_eval`: a
shorter generation than eval.json's 128-token VerbMem) and `knowmem` / `knowmem_retain` (ROUGE-L F1 ×100 of a
32-token few-shot answer, `muse.knowmem_eval`: eval.json's KnowMem on the probe's items); they are scored when
`probe_metrics` or a rule names them (a generation per item), not by default.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from obliviate import ObliviateError
from obliviate.data.benchmarks import Benchmark, get_benchmark, infer_benchmark
from obliviate.evaluate import metrics as M
from obliviate.evaluate.aggregate import split_means
from obliviate.evaluate.cache import as_results
from obliviate.evaluate.config import EvalConfig
from obliviate.evaluate.roles import NORMALISED_PROB_ROLES, has_perturbations, resolve_roles
from obliviate.evaluate.stages import forward_stage, generate_roles, text_stage

DEFAULT_SIZE = 16
# probe_metrics=default: one pass over the true answers (world facts / real authors: their perturbations too, for
# TOFU's normalised Prob); a rule naming another metric adds it
DEFAULT_METRICS = ("forget_prob", "forget_nll", "retain_prob", "world_facts_prob", "real_authors_prob", "holdout_prob",
                   "mia_auc", "forget_gap")
QA_ROLES = ("forget", "retain", "world_facts", "real_authors", "holdout")
GEN_KINDS = ("verbmem", "knowmem")  # a probe role's `kind` beside plain scoring: MUSE's generation metrics
ITEM_KEYS = {"prob": "prob", "nll": "nll_mean", "extraction_strength": "extraction_strength",
             "exact_memorization": "exact_memorization", "truth_ratio": "truth_ratio",
             "rouge_l_recall": "rouge_l_recall"}


def probe_roles(data, *, benchmark: Benchmark | str | None = None, forget: str | None = None,
                max_length: int = 512) -> dict[str, dict]:
    """{role: {"records", "format"}} of every probe role the data holds (no model needed)."""
    bench = benchmark if isinstance(benchmark, Benchmark) else get_benchmark(benchmark or infer_benchmark(data))
    cfg = EvalConfig(forget=forget or bench.train_splits.get("forget_train") or "forget10", max_length=max_length)
    roles = resolve_roles(bench, data, cfg)
    mia = set(bench.mia or ())
    out = {role: {"records": loaded.records, "format": loaded.format} for role, loaded in roles.found.items()
           if (loaded.format == "qa" and role in QA_ROLES) or (loaded.format == "text" and role in mia)}
    for role, loaded in roles.found.items():
        if loaded.format == "prompt" and role in M.METRICS:  # MUSE verbmem
            out[role] = {"records": loaded.records, "format": "prompt", "kind": "verbmem"}
        elif role in roles.knowmem_icl and role in M.METRICS:  # MUSE knowmem(_retain), with its few-shot split
            icl = roles.found.get(roles.knowmem_icl[role])
            out[role] = {"records": loaded.records, "format": "qa", "kind": "knowmem",
                         "icl": icl.records if icl is not None else []}
    return out


def _as_roles(roles: dict) -> dict[str, dict]:
    """{role: {"records", "format"}} from that or {role: QA records}."""
    return {k: (v if isinstance(v, dict) else {"records": v, "format": "qa"}) for k, v in roles.items()}


def _names_of(roles: dict[str, dict], rouge: bool) -> list[str]:
    names = []
    for role, r in roles.items():
        if r.get("kind") in GEN_KINDS:
            names.append(role)
            continue
        if r["format"] == "text":
            names.append(f"{role}_nll")
            continue
        names += [f"{role}_{k}" for k in ("prob", "nll", "extraction_strength", "exact_memorization")]
        if role != "holdout" and has_perturbations(r["records"], role):
            names.append(f"{role}_truth_ratio")
        if rouge and role != "holdout":
            names.append(f"{role}_rouge_l_recall")
    if _mia_roles(roles):
        names.append("mia_auc")
    if {"forget", "retain"} <= set(roles) and roles["forget"]["format"] == roles["retain"]["format"] == "qa":
        names.append("forget_gap")
    return names


def _mia_roles(roles: dict[str, dict]) -> tuple[str, str] | None:
    if {"forget", "holdout"} <= set(roles) and roles["forget"]["format"] == "qa" and not roles["forget"].get("kind"):
        return "forget", "holdout"
    text = [r for r, v in roles.items() if v["format"] == "text"]
    return (text[0], text[1]) if len(text) == 2 else None


def role_metrics(roles: dict[str, dict], items: dict[str, list[dict]]) -> dict[str, float | None]:
    """The probe metrics from per-item rows (a fresh scoring pass, or a saved eval.json's items)."""
    out: dict[str, float | None] = {}
    for role, rows in items.items():
        if roles[role].get("kind") in GEN_KINDS:
            out[role] = sum(it["rouge_l_f1"] for it in rows) / len(rows) if rows else None
            continue
        if roles[role]["format"] == "text":
            vals = [it["nll_mean"] for it in rows if it.get("nll_mean") is not None]
            out[f"{role}_nll"] = sum(vals) / len(vals) if vals else None
            continue
        means = split_means(role, rows)
        for name, key in ITEM_KEYS.items():
            if key in means or (key == "nll_mean" and "nll_mean" in means):
                out[f"{role}_{name}"] = means.get(key)
    mia = _mia_roles(roles)
    if mia:
        scores = [[it["mia"]["min_k"] for it in items[r] if it.get("mia")] for r in mia]
        out["mia_auc"] = M.mia_auc(*scores) if all(scores) else None
    if out.get("forget_prob") is not None and out.get("retain_prob") is not None:
        out["forget_gap"] = out["retain_prob"] - out["forget_prob"]
    return out


@dataclass
class Probe:
    """`probe(model) -> {name: value}` over the sampled `roles`; `names` lists what it returns (before any work)."""

    tokenizer: object
    roles: dict[str, dict]  # role -> {"records" (the sample), "format"}
    names: tuple[str, ...]
    rouge: bool = False
    cfg: EvalConfig = field(default_factory=EvalConfig)

    def __call__(self, model) -> dict[str, float | None]:
        items = {}
        for role, r in self.roles.items():
            if r.get("kind") in GEN_KINDS:
                items[role] = self._generation_items(model, r)
                continue
            if r["format"] == "text":
                items[role] = text_stage(model, self.tokenizer, role, r["records"], self.cfg, False)
                continue
            items[role] = forward_stage(model, self.tokenizer, role, r["records"], self.cfg, False)
        if self.rouge:  # one generation pass for every QA role (continuous batching across them)
            asked = {role: r["records"] for role, r in self.roles.items()
                     if role != "holdout" and r["format"] == "qa" and r.get("kind") not in GEN_KINDS}
            for role, generated in generate_roles(model, self.tokenizer, asked, self.cfg, False).items():
                for it, g in zip(items[role], generated):
                    it.update(g)
        values = role_metrics(self.roles, items)
        return {n: values.get(n) for n in self.names}

    def _generation_items(self, model, r: dict) -> list[dict]:
        """Per-item ROUGE-L F1 ×100 of MUSE's VerbMem / KnowMem on the sampled records (the suite's conventions)."""
        from obliviate.evaluate.muse import knowmem_eval, verbmem_eval
        from obliviate.parity import convention

        bos, par = convention("muse_bos", self.cfg.parity), self.cfg.parity
        if r["kind"] == "verbmem":
            return verbmem_eval(model, self.tokenizer, r["records"], max_new_tokens=self.cfg.max_new_tokens,
                                batch_size=self.cfg.gen_batch_size, bos=bos,
                                reference=convention("verbmem_reference", par))["items"]
        return knowmem_eval(model, self.tokenizer, r["records"], r["icl"], batch_size=self.cfg.gen_batch_size,
                            bos=bos, stop=convention("knowmem_stop", par))["items"]

    def reference(self, results) -> dict[str, float | None]:
        """The same metrics from a saved evaluation (a retain / holdout model's eval.json, or its dict), on the
        probe's own items (matched by question and answer); a role or item it lacks gives None."""
        results = as_results(results)
        items: dict[str, list[dict]] = {}
        for role, r in self.roles.items():
            if r.get("kind") in GEN_KINDS:  # knowmem: eval.json's items; verbmem: a longer generation there
                where = results.get("muse", {}).get(role, {}).get("items", []) if r["kind"] == "knowmem" else []
                by_q = {it.get("question"): it for it in where}
                wanted = [by_q.get(rec["question"]) for rec in r["records"]]
                if where and all(w is not None for w in wanted):
                    items[role] = wanted
                continue
            scored_perturbed = r["format"] == "qa" and any("perturbed_answer" in rec for rec in r["records"])
            where = results.get("text" if r["format"] == "text" else "splits", {}).get(role, {}).get("items", [])
            key = (lambda it: it.get("text", "")[:200]) if r["format"] == "text" else \
                (lambda it: (it.get("question"), it.get("answer")))
            by_key = {key(it): it for it in where}
            wanted = [by_key.get(key(rec) if r["format"] == "qa" else rec["text"][:200]) for rec in r["records"]]
            if where and all(w is not None for w in wanted):  # as this probe scores them (perturbed answers or not)
                items[role] = wanted if scored_perturbed or r["format"] == "text" else \
                    [{k: v for k, v in w.items() if k not in ("prob_norm", "truth_ratio")} for w in wanted]
        values = role_metrics({k: v for k, v in self.roles.items() if k in items}, items)
        return {n: values.get(n) for n in self.names}


def build_probe(tokenizer, roles: dict[str, dict], *, size: int = DEFAULT_SIZE, seed: int = 0,
                metrics: list[str] | None = None, rouge: bool = False, max_new_tokens: int = 32,
                batch_size: int = 16, max_length: int = 512) -> Probe:
    """A probe over `size` items per role of `roles` (`probe_roles`, or {role: records} of QA records), drawn
    with `seed`. `metrics`: only these names (roles and perturbed answers nobody reads are not scored)."""
    roles = _as_roles(roles)
    if size < 1:
        raise ObliviateError(f"probe size must be >= 1, got {size}")
    every = _names_of(roles, rouge)
    if metrics is not None:
        unknown = [m for m in metrics if m not in every]
        if unknown:
            raise ObliviateError(f"probe metric {unknown[0]!r} is unknown; the data gives {', '.join(every)}")
        roles = _needed(roles, set(metrics))
    rng = random.Random(seed)
    sample = {}
    for role, r in roles.items():
        recs = r["records"]
        idx = sorted(rng.sample(range(len(recs)), min(size, len(recs))))
        sample[role] = {**r, "records": [recs[i] for i in idx]}  # knowmem: its few-shot split kept whole
    names = tuple(metrics) if metrics is not None else tuple(every)
    # the roles' questions are generated in one pass: every row of it in one batch, up to the evaluation's default
    rows = sum(len(r["records"]) for r in sample.values())
    cfg = EvalConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, max_length=max_length,
                     gen_batch_size=max(batch_size, min(rows, EvalConfig.gen_batch_size)))
    return Probe(tokenizer=tokenizer, roles=sample, names=names, rouge=rouge, cfg=cfg)


def _needed(roles: dict[str, dict], metrics: set[str]) -> dict[str, dict]:
    """The roles `metrics` read; perturbed answers dropped where no truth ratio / normalised Prob needs them."""
    mia = _mia_roles(roles) or ()
    use = {r for r in roles if any(m.startswith(f"{r}_") for m in metrics)}
    use |= set(mia) if "mia_auc" in metrics else set()
    use |= {"forget", "retain"} if "forget_gap" in metrics else set()
    out = {}
    use |= {r for r in roles if r in metrics}  # verbmem / knowmem: the role's name is the metric's
    for role in (r for r in roles if r in use):
        r = roles[role]
        if r["format"] == "qa" and not r.get("kind") and f"{role}_truth_ratio" not in metrics and role not in NORMALISED_PROB_ROLES:
            r = {**r, "records": [{k: v for k, v in rec.items() if k != "perturbed_answer"} for rec in r["records"]]}
        out[role] = r
    return out


def probe_for(cfg, data=None, *, roles: dict | None = None, benchmark: Benchmark | str | None = None,
              forget: str | None = None, reference_eval=None, tokenizer=None,
              metrics: tuple[str, ...] = ()) -> tuple[Probe | None, dict | None]:
    """The probe and the `retain:` reference values an `UnlearnConfig`'s eval_every / rules need, the rules
    checked against the probe's names (no model needed: give `tokenizer` now or set `probe.tokenizer` later);
    (None, None) when eval_every is off. `roles` ({role: records}) instead of `data` probes given records
    (continual tasks); `reference_eval`: a retain / holdout model's eval.json (path or dict); `metrics`: more
    metrics to score besides `cfg.probe_metrics` and the rules' (e.g. a tuning objective's), checked the same way."""
    from obliviate.unlearn.trajectory import Trajectory

    if cfg.eval_every is None:
        if reference_eval is not None and isinstance(reference_eval, (str, Path)):
            raise ObliviateError("--reference-eval is read by the stop / guard / select rules: set eval_every too")
        return None, None
    if roles is None:
        roles = probe_roles(data, benchmark=benchmark, forget=_eval_forget(forget))
    available = _names_of(_as_roles(roles), cfg.probe_rouge)
    probe = build_probe(tokenizer, roles, size=cfg.probe_size, seed=cfg.seed, rouge=cfg.probe_rouge,
                        metrics=_chosen(cfg, available, metrics))
    reference = probe.reference(reference_eval) if reference_eval is not None else None
    Trajectory.check(cfg, probe, reference)
    return probe, reference


def _chosen(cfg, available: list[str], extra: tuple[str, ...] = ()) -> list[str] | None:
    """The metrics `cfg.probe_metrics` asks for plus every metric its rules name (checked against `available`);
    None = all."""
    from obliviate.unlearn.rules import parse_rule, parse_select

    rules = [parse_rule(getattr(cfg, k), available) for k in ("stop", "guard") if getattr(cfg, k) is not None]
    rules += [parse_select(cfg.select, available)] if cfg.select is not None else []
    groups = {"all": list(available), "default": [m for m in DEFAULT_METRICS if m in available]}
    wanted = [m for part in cfg.probe_metrics.split("+") for m in groups.get(part, [part])]  # default+verbmem
    wanted = [*wanted, *extra]
    unknown = [m for m in wanted if m not in available]
    if unknown:
        raise ObliviateError(f"probe metric {unknown[0]!r} is unknown; the data gives {', '.join(available)}")
    named = set().union(*(r.metrics() for r in rules))
    chosen = [m for m in available if m in set(wanted) | named]
    return None if chosen == available else chosen


def _eval_forget(forget: str | None) -> str | None:
    """The evaluation forget split of a training forget split ("forget10" → EvalConfig reads forget10_perturbed);
    None for a joined or config/split name (the benchmark's default)."""
    return forget if forget and re.fullmatch(r"[A-Za-z0-9_.\-]+", forget) else None
