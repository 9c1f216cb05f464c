"""Real-world unlearning, offline (Closer-Look, SPEC §4): forget facts a pretrained model really knows.

    result = realworld(model, tok, RealworldConfig(), UnlearnConfig(recipe="me+gd", lora=True), out="runs/rw")

Probe set from `countryinfo`: for the most populous countries, several phrasings each of the capital, the
region, the subregion, the demonym and the ISO currency code. The model answers every probe (greedy); a
probe is **kept** when the ROUGE-L recall of the short answer in the model's answer is ≥ `keep_rouge`
(0.5), and a country is a usable subject when at least `min_items` of its probes are kept. The usable
subjects are shuffled (seed) and cut into four disjoint sets: forget subjects, neighbour subjects (the
retain set of training), evaluation neighbours (only evaluated: the paper's `neighbor_perturbed`) and
general subjects (a general-utility probe that shares no subject with the others).

Records follow the paper's real-world schema: `name` (the subject), `question`, `answer` (the model's own
answer, which training uses, as the paper's files do), `golden_answer` (the short fact, which evaluation
scores), `perturbed_answer` (the same attribute of other countries). A user's files in that schema
(`forget`, `neighbor`, optional `neighbor_perturbed`) replace the probe set (e.g. the paper's 20 people).

Model Utility on neighbours = harmonic mean of the evaluation neighbours' ROUGE, Prob, Truth Ratio, Token
Entropy, Cosine Similarity (and Entailment Score with an NLI model); Forget Efficacy on the forget subjects
as in SPEC §3; Cosine Similarity's "before" answers are the model's own outputs before unlearning.

Run directory: probes.json (every probe, the model's answer, its ROUGE, kept or not; reused by a re-run
with the same model and probes), data/*.json (the four
sets), unlearn/ (the unlearning run and model), eval/{before,after}/, realworld.json (settings, counts,
before/after table, timings).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from obliviate import ObliviateError
from obliviate.config import MAX_BATCH, MAX_SEED, MAX_TOKENS, check_ranges
from obliviate.rundir import write_json
from obliviate.scenarios import evaluate_records, write_records
from obliviate.stagecache import load_stage

# attribute -> phrasings ({c} = the country); the answer is the attribute's value
PHRASINGS = {
    "capital": ["What is the capital of {c}?", "Which city is the capital of {c}?", "Name the capital city of {c}."],
    "region": ["In which region of the world is {c}?", "Which continent is {c} part of?"],
    "subregion": ["In which subregion of the world is {c} located?", "Which part of the world is {c} in?"],
    "demonym": ["What is the demonym of {c}?", "What are people from {c} called?"],
    "currency": ["What is the ISO currency code of {c}?", "Which currency code does {c} use?"],
}
PERTURBED = 3
ROLE_OF_SET = {"forget": "forget", "neighbor_eval": "retain", "general": "world_facts"}


@dataclass
class RealworldConfig:
    countries: int = 30  # probe set: the N most populous countries of countryinfo
    forget_subjects: int = 4
    neighbour_subjects: int = 4
    eval_subjects: int = 4
    general_subjects: int = 4
    keep_rouge: float = 0.5  # a probe is known when ROUGE-L recall of the short answer >= this
    min_items: int = 2  # a subject is usable when at least this many of its probes are known
    max_new_tokens: int = 16  # probe answers and evaluation generations
    batch_size: int = 16
    seed: int = 0

    RANGES: ClassVar[dict[str, str]] = {  # config.check_ranges
        "countries": "[1, 1000]", "forget_subjects": "[1, 1000]", "neighbour_subjects": "[1, 1000]",
        "eval_subjects": "[1, 1000]", "general_subjects": "[0, 1000]", "keep_rouge": "(0, 1]", "min_items": "[1, 1000]",
        "max_new_tokens": f"[1, {MAX_TOKENS}]", "batch_size": f"[1, {MAX_BATCH}]", "seed": f"[0, {MAX_SEED}]",
    }

    def __post_init__(self):
        check_ranges(self)


# -------------------------------------------------------------------------------------------- probes


def country_facts(n: int) -> list[dict]:
    """{name, capital, region, subregion, demonym, currency} of the n most populous countries (ASCII names)."""
    from countryinfo import all_countries

    from obliviate.data.world import ascii_only

    rows = []
    for c in all_countries():
        try:
            info = c.info()
        except Exception:  # a few records lack fields
            continue
        text = lambda key: ascii_only(_first(info.get(key))).strip()  # noqa: E731
        name = text("name")
        facts = {"name": name.title() if name.islower() else name, "population": info.get("population") or 0,
                 **{k: text(k) for k in ("capital", "region", "subregion", "demonym")},
                 "currency": _first(info.get("currencies"))}
        if facts["name"]:
            rows.append(facts)
    rows.sort(key=lambda r: (-int(r["population"]), r["name"]))
    return rows[:n]


def _first(value) -> str:
    """countryinfo stores some fields as a string, some as a list of strings."""
    if isinstance(value, list):
        value = value[0] if value else ""
    return value if isinstance(value, str) else ""


def build_probes(facts: list[dict], *, seed: int = 0) -> list[dict]:
    """Every phrasing of every attribute a country has; perturbed answers = that attribute of other countries."""
    rng = random.Random(seed)
    probes = []
    for f in facts:
        for attr, phrasings in PHRASINGS.items():
            value = f.get(attr)
            if not value or value == f["name"]:
                continue
            others = sorted({g[attr] for g in facts if g.get(attr) and g[attr] != value})
            if len(others) < PERTURBED:
                continue
            for k, q in enumerate(phrasings):
                probes.append({"name": f["name"], "attribute": attr, "question": q.format(c=f["name"]),
                               "golden_answer": value, "perturbed_answer": rng.sample(others, PERTURBED),
                               "phrasing": k})
    return probes


def filter_known(probes: list[dict], answers: list[str], keep_rouge: float) -> list[dict]:
    """Each probe with the model's answer, its ROUGE-L recall of the short answer and whether it is kept."""
    from obliviate.evaluate.metrics import rouge_l_recall

    if len(answers) != len(probes):
        raise ObliviateError(f"{len(answers)} answers for {len(probes)} probes")
    out = []
    for p, a in zip(probes, answers):
        r = rouge_l_recall(a, p["golden_answer"])
        out.append({**p, "answer": a, "rouge_l_recall": r, "kept": r >= keep_rouge})
    return out


def model_answers(model, tokenizer, questions: list[str], cfg: RealworldConfig, desc: str = "probe") -> list[str]:
    from obliviate.data.format import encode_prompt
    from obliviate.evaluate.generate import generate

    texts, _ = generate(model, tokenizer, [encode_prompt(tokenizer, q) for q in questions],
                        max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, progress=True, desc=desc)
    return texts


def split_subjects(judged: list[dict], cfg: RealworldConfig) -> dict[str, list[dict]]:
    """Disjoint subject sets from the kept probes: forget, neighbor, neighbor_eval, general."""
    kept: dict[str, list[dict]] = {}
    for p in judged:
        if p["kept"]:
            kept.setdefault(p["name"], []).append({k: v for k, v in p.items() if k != "kept"})
    usable = sorted(s for s, items in kept.items() if len(items) >= cfg.min_items)
    random.Random(cfg.seed).shuffle(usable)
    sizes = {"forget": cfg.forget_subjects, "neighbor": cfg.neighbour_subjects,
             "neighbor_eval": cfg.eval_subjects, "general": cfg.general_subjects}
    if sum(sizes.values()) > len(usable):
        raise ObliviateError(f"only {len(usable)} subjects have >= {cfg.min_items} probes the model answers "
                             f"(ROUGE-L recall >= {cfg.keep_rouge}); {sum(sizes.values())} are needed "
                             f"({', '.join(f'{k} {v}' for k, v in sizes.items())}): raise countries or lower the sets")
    out, start = {}, 0
    for name, n in sizes.items():
        out[name] = [p for s in usable[start:start + n] for p in kept[s]]
        start += n
    return out


def load_user_sets(forget: str, neighbour: str, neighbour_eval: str | None) -> dict[str, list[dict]]:
    """The paper's real-world files (`name`, `question`, `answer`[, `golden_answer`, `perturbed_answer`]), each
    record checked against `RealworldRecord` (data/schemas.py): an error names the user's file, record and field."""
    from obliviate.data.loading import load_split
    from obliviate.data.schemas import RealworldRecord

    sets = {"forget": load_split(forget, schema=RealworldRecord),
            "neighbor": load_split(neighbour, schema=RealworldRecord)}
    if neighbour_eval:
        sets["neighbor_eval"] = load_split(neighbour_eval, schema=RealworldRecord)
    names = {k: {r["name"] for r in v} for k, v in sets.items()}
    for a, b in (("forget", "neighbor"), ("forget", "neighbor_eval")):
        shared = names[a] & names.get(b, set())
        if shared:
            raise ObliviateError(f"{a} and {b} files share subject(s) {', '.join(sorted(shared)[:3])}: "
                                 "the sets must be disjoint")
    return sets


def eval_record(r: dict) -> dict:
    """The evaluation view of a record: the golden (short) answer is the one scored."""
    gold = r.get("golden_answer") or r["answer"]
    rec = {"question": r["question"], "answer": gold, "paraphrased_answer": r.get("paraphrased_answer") or gold}
    if r.get("perturbed_answer"):
        rec["perturbed_answer"] = list(r["perturbed_answer"])
    return rec


# ------------------------------------------------------------------------------------------- running


def _judged_probes(model, tokenizer, cfg: RealworldConfig, path: Path, model_name: str) -> list[dict]:
    """Probe the model, or reuse `path` when it holds the answers of the same model to the same probes."""
    from obliviate.models.loading import model_fingerprint

    probes = build_probes(country_facts(cfg.countries), seed=cfg.seed)
    key = {"model": model_fingerprint(model), "max_new_tokens": cfg.max_new_tokens,
           "questions": [p["question"] for p in probes]}
    old = load_stage(path, key)  # the one stage mechanism (obliviate.stagecache): same key, whole file
    if old is not None:
        return filter_known(probes, [p["answer"] for p in old["probes"]], cfg.keep_rouge)
    judged = filter_known(probes, model_answers(model, tokenizer, key["questions"], cfg), cfg.keep_rouge)
    write_json(path, {"model": model_name, "key": key, "probes": judged}, indent=1)
    return judged


def summarize(results: dict) -> dict:
    """MU on the evaluation neighbours, FE on the forget subjects, general-utility ROUGE / Prob."""
    from obliviate.evaluate.metrics import harmonic_mean

    agg, splits = results["aggregates"], results["splits"]
    out = {k: agg[k] for k in ("forget_efficacy", "forget_efficacy_no_es") if k in agg}
    for role, label in (("forget", "forget"), ("retain", "neighbor"), ("world_facts", "general")):
        if role in splits:
            m = splits[role]["means"]
            out[label] = {k: m[k] for k in ("rouge_l_recall", "prob", "truth_ratio", "token_entropy",
                                            "cosine_similarity", "entailment_score") if m.get(k) is not None}
    nb = out.get("neighbor", {})
    parts = [nb.get(k) for k in ("rouge_l_recall", "prob", "truth_ratio", "token_entropy", "cosine_similarity")]
    if all(v is not None for v in parts):
        out["mu_neighbor_no_es"] = harmonic_mean(parts)
        if nb.get("entailment_score") is not None:
            out["mu_neighbor"] = harmonic_mean(parts + [nb["entailment_score"]])
    return out


def realworld(model, tokenizer, cfg: RealworldConfig, ucfg, *, out, eval_cfg=None, user_sets=None,
              model_name: str = "", progress: bool = True) -> dict:
    """Build (or take) the sets, evaluate before, unlearn forget vs neighbours, evaluate after."""
    from obliviate.config import versions
    from obliviate.data.loading import load_refusals
    from obliviate.evaluate import EvalConfig
    from obliviate.unlearn import unlearn
    from obliviate.unlearn.loop import recipe_needs

    eval_cfg = eval_cfg or EvalConfig(max_new_tokens=cfg.max_new_tokens)
    out = Path(out)
    t0 = time.time()
    info = {"settings": {"model": model_name, "realworld": dataclasses.asdict(cfg),
                         "unlearn": json.loads(json.dumps(dataclasses.asdict(ucfg), default=str)),
                         "eval": dataclasses.asdict(eval_cfg), "user_files": bool(user_sets)},
            "versions": versions()}
    if user_sets is None:
        judged = _judged_probes(model, tokenizer, cfg, out / "probes.json", model_name)
        sets = split_subjects(judged, cfg)
        by_attr = {a: [sum(p["kept"] for p in judged if p["attribute"] == a),
                       sum(p["attribute"] == a for p in judged)] for a in PHRASINGS}
        info["probes"] = {"rule": f"kept when ROUGE-L recall of the short answer >= {cfg.keep_rouge}; subject "
                                  f"usable with >= {cfg.min_items} kept probes",
                          "probes": len(judged), "kept": sum(p["kept"] for p in judged),
                          "subjects_usable": len({p["name"] for p in judged if p["kept"]}), "by_attribute": by_attr,
                          "seconds": round(time.time() - t0, 1)}
    else:
        sets = user_sets
    for name, recs in sets.items():
        write_records(out / "data" / f"{name}.json", recs)
    info["sets"] = {k: {"items": len(v), "subjects": sorted({r["name"] for r in v})} for k, v in sets.items()}
    roles = {ROLE_OF_SET[k]: [eval_record(r) for r in v] for k, v in sets.items() if k in ROLE_OF_SET and v}
    t = time.time()
    before = evaluate_records(model, tokenizer, roles, out / "eval/before", eval_cfg, model_name=f"{model_name} (before)",
                              progress=progress)
    before = evaluate_records(model, tokenizer, roles, out / "eval/before", eval_cfg, before_results=before,
                              model_name=f"{model_name} (before)", progress=progress)  # CS of the model with itself
    info["eval_before_seconds"] = round(time.time() - t, 1)
    needs = recipe_needs(ucfg)
    refusals = load_refusals() if needs & {"alternate", "retain_alternate"} else None
    t = time.time()
    train = lambda recs: [{"question": r["question"], "answer": r["answer"]} for r in recs]  # noqa: E731
    model, log = unlearn(model, tokenizer, train(sets["forget"]), train(sets["neighbor"]), ucfg, refusals=refusals,
                         out_dir=out / "unlearn", overwrite=True, progress=progress)
    info["unlearn"] = {**log.summary, "seconds": round(time.time() - t, 1)}
    t = time.time()
    after = evaluate_records(model, tokenizer, roles, out / "eval/after", eval_cfg, before_results=before,
                             model_name=f"{model_name} (after {ucfg.recipe})", progress=progress)
    info["eval_after_seconds"] = round(time.time() - t, 1)
    info["before"], info["after"] = summarize(before), summarize(after)
    info["seconds"] = round(time.time() - t0, 1)
    write_json(out / "realworld.json", info, indent=1)
    return info
