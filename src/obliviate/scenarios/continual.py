"""Continual unlearning (Closer-Look, SPEC §4): forget requests arrive one after another.

    result = continual(model, tok, "data/demo", ContinualConfig(forget="forget10", tasks=9),
                       UnlearnConfig(recipe="me+gd"), out="runs/continual/me_gd")

Tasks as the paper's code forms them. Each task has the size of the `forget` split (whole authors): task 1
is the `forget` split itself (the last authors of `full`), task t the t-th block of that size counting back
from the end of `full`; the pool is the last `tasks × |forget|` items of `full` and the base retain split is
the rest of `full` (TOFU: forget01 → 10 tasks of 2 authors over forget10's authors with retain90; forget10 →
9 tasks of 20 authors with retain10). Records that carry a `task_id` (the paper's own data files) are
grouped by it instead and the base retain split is `retain` (or `full` minus the pool).

Task t starts from task t−1's final model; its training retain set is the base retain split ∪ the forget
items of the tasks not yet unlearned (t+1..T); the reference is the model the task starts from
(`reference=previous`) or the model before task 1 (`reference=original`). After every task the model is
evaluated on the forget items of the current task **and of every earlier task** (does forgotten knowledge
come back?), the retain evaluation split (minus any pool item), world facts and real authors where present.

Run directory::

    continual.json                 configs, the task plan and one row per task (row 0 = before unlearning)
    continual.png                  Model Utility and Forget Efficacy against the task index
    tasks/task_00/eval/            evaluation of the starting model (the 'before' generations)
    tasks/task_<t>/                forget.json, retain.json (training sets), the unlearning run (run.json,
                                   log.jsonl, summary.json), eval/ (eval.json, data/: the evaluated records)
                                   and the model: only the latest task's weights are kept unless keep_models

A killed run started again with the same settings continues after the last finished task.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from obliviate import ObliviateError
from obliviate.config import check_ranges
from obliviate.reader import read_json_object
from obliviate.rundir import write_json
from obliviate.scenarios import evaluate_records, slice_results, write_records
from obliviate.stagecache import load_stage

FORGET_KEYS = ("forget_efficacy_no_es", "forget_efficacy", "rouge_l_recall", "prob", "truth_ratio_seed_a",
               "cosine_similarity", "entailment_score", "token_entropy")
UTILITY_KEYS = ("model_utility", "mu18_no_es", "mu18")
PERTURBED_SOURCES = ("forget10_perturbed", "forget05_perturbed", "forget01_perturbed")


@dataclass
class ContinualConfig:
    forget: str = "forget10"  # the size of one task (or a pool whose records carry task_id)
    tasks: int = 9
    full: str = "full"  # the split the pool and the base retain split are cut from
    retain: str | None = None  # base retain split; None: `full` minus the pool
    retain_eval: str = "retain_perturbed"  # Model Utility's retain role (pool items removed)
    world_facts: str | None = "world_facts_perturbed"
    real_authors: str | None = "real_authors_perturbed"
    keep_models: bool = False

    RANGES: ClassVar[dict[str, str]] = {"tasks": "[1, 10000]"}  # config.check_ranges

    def __post_init__(self):
        check_ranges(self)


# --------------------------------------------------------------------------------------------- tasks


def _authors(records: list[dict]) -> set[str]:
    return {r["author"] for r in records if r.get("author")}


def plan_tasks(full: list[dict] | None, forget: list[dict], tasks: int,
               retain: list[dict] | None = None) -> tuple[list[list[dict]], list[dict]]:
    """(task forget sets in order, base retain set), laid out as described in the module docstring."""
    if all("task_id" in r for r in forget):
        groups: dict[str, list[dict]] = {}
        for r in forget:
            groups.setdefault(str(r["task_id"]), []).append(r)
        order = sorted(groups, key=lambda k: (0, int(k)) if k.isdigit() else (1, k))
        if tasks > len(order):
            raise ObliviateError(f"the forget records carry {len(order)} task_id values; cannot form {tasks} tasks")
        task_sets = [groups[k] for k in order[:tasks]]
    else:
        if full is None:
            raise ObliviateError("continual tasks are cut from the 'full' split, which the data does not hold")
        k, n = len(forget), len(full)
        if [r["question"] for r in full[n - k:]] != [r["question"] for r in forget]:
            raise ObliviateError(f"the forget split ({k} items) is not the last {k} items of 'full': the tasks cannot "
                                 "be laid out as the paper's (give records with task_id instead)")
        if tasks * k >= n:
            raise ObliviateError(f"{tasks} tasks of {k} items need more than {tasks * k} items in 'full' (it has {n}; "
                                 f"at most {(n - 1) // k} tasks leave a base retain set)")
        task_sets = [full[n - t * k:n - (t - 1) * k] for t in range(1, tasks + 1)]
        for t, task in enumerate(task_sets, 1):
            others = full[:n - t * k] + full[n - (t - 1) * k:]
            split = _authors(task) & _authors(others)
            if split:
                raise ObliviateError(f"task {t} splits author(s) {', '.join(sorted(split))}: tasks must hold whole "
                                     "authors; choose another number of tasks")
    pool_q = {r["question"] for task in task_sets for r in task}
    if retain is not None:
        overlap = [r["question"] for r in retain if r["question"] in pool_q]
        if overlap:
            raise ObliviateError(f"the retain split holds {len(overlap)} item(s) of the task pool (e.g. "
                                 f"{overlap[0]!r}); leave retain unset to use 'full' minus the pool")
        base = list(retain)
    elif full is not None:
        base = [r for r in full if r["question"] not in pool_q]
    else:
        raise ObliviateError("no base retain set: give a retain split or data with a 'full' split")
    return task_sets, base


def task_retain(task_sets: list[list[dict]], base: list[dict], t: int) -> list[dict]:
    """Training retain set of task t (1-based): base ∪ forget items of the tasks not yet unlearned."""
    return list(base) + [r for task in task_sets[t:] for r in task]


def _optional(data, split: str | None) -> list[dict] | None:
    from obliviate.data.loading import load_split

    if split is None:
        return None
    if Path(data).is_dir() and not any((Path(data) / f"{split}{e}").is_file() for e in (".json", ".jsonl")):
        return None
    try:
        return load_split(data, split)
    except ObliviateError:
        if Path(data).exists():
            raise
        return None  # a hub dataset without that split


def _with_perturbations(data, forget_split: str, task_sets: list[list[dict]]) -> list[list[dict]]:
    """Pool records lacking perturbed answers (TOFU's `full`) take them from the *_perturbed forget splits."""
    if all("perturbed_answer" in r for task in task_sets for r in task):
        return task_sets
    extra = {}
    for split in (f"{forget_split}_perturbed", *PERTURBED_SOURCES):
        for r in _optional(data, split) or []:
            extra.setdefault(r["question"], r)
    keys = ("paraphrased_answer", "perturbed_answer")
    return [[r if "perturbed_answer" in r or r["question"] not in extra
             else {**r, **{k: extra[r["question"]][k] for k in keys if k in extra[r["question"]]}} for r in task]
            for task in task_sets]


def load_tasks(data, cfg: ContinualConfig) -> dict:
    """The plan from the data: task forget sets, base retain set and the evaluation roles."""
    from obliviate.data.loading import load_split

    forget = load_split(data, cfg.forget)
    full = _optional(data, cfg.full)
    retain = load_split(data, cfg.retain) if cfg.retain else None
    task_sets, base = plan_tasks(full, forget, cfg.tasks, retain)
    task_sets = _with_perturbations(data, cfg.forget, task_sets)
    pool_q = {r["question"] for task in task_sets for r in task}
    roles = {}
    retain_eval = _optional(data, cfg.retain_eval)
    if retain_eval is not None:
        kept = [r for r in retain_eval if r["question"] not in pool_q]
        if kept:
            roles["retain"] = kept
    for role in ("world_facts", "real_authors"):
        recs = _optional(data, getattr(cfg, role))
        if recs:
            roles[role] = recs
    return {"tasks": task_sets, "base_retain": base, "eval_roles": roles}


# ------------------------------------------------------------------------------------------ running


def _row(t: int, results: dict, offsets: list[int]) -> dict:
    """One table row from the evaluation of the model after task t (offsets: task boundaries of 'forget')."""
    agg = results["aggregates"]
    pick = lambda d: {k: d[k] for k in FORGET_KEYS if d.get(k) is not None}  # noqa: E731
    per_task = [pick(slice_results(results, "forget", offsets[j], offsets[j + 1])) for j in range(len(offsets) - 1)]
    row = {"task": t, **{k: agg[k] for k in UTILITY_KEYS if k in agg}}
    for role in ("retain", "world_facts", "real_authors"):
        if role in results["splits"]:
            m = results["splits"][role]["means"]
            row[role] = {k: m[k] for k in ("rouge_l_recall", "prob", "truth_ratio", "cosine_similarity") if k in m}
    if t == 0:
        row["pool_tasks"] = per_task  # the starting model on every task
        return row
    row["current"], row["earlier"] = per_task[t - 1], per_task[:t - 1]
    if t > 1:
        row["earlier_all"] = pick(slice_results(results, "forget", 0, offsets[t - 1]))
    return row


def _before_for(before: dict, n_forget: int) -> dict:
    """The starting model's results restricted to the first n_forget pool items (Cosine Similarity's 'before')."""
    splits = {role: s for role, s in before["splits"].items() if role != "forget"}
    f = before["splits"]["forget"]
    splits["forget"] = {**f, "n": n_forget, "items": f["items"][:n_forget]}
    return {**before, "splits": splits}


def _drop_weights(task_dir: Path) -> None:
    for f in task_dir.glob("*.safetensors"):
        f.unlink()
    for f in task_dir.glob("model.safetensors.index.json"):
        f.unlink()
    shutil.rmtree(task_dir / "checkpoints", ignore_errors=True)


def _has_weights(task_dir: Path) -> bool:
    return (task_dir / "summary.json").is_file() and any(task_dir.glob("*.safetensors"))


def _resume(out: Path, settings: dict, overwrite: bool) -> list[dict]:
    """Rows of a previous run with the same settings (`stagecache.load_stage`, keyed by "settings"); a run with
    other settings is refused, `overwrite` discards it."""
    f = out / "continual.json"
    if overwrite and f.is_file():
        f.unlink()
        shutil.rmtree(out / "tasks", ignore_errors=True)
        return []
    record = load_stage(f, settings, key_field="settings", refuse="holds a continual run with other settings ({} "
                        "differs); choose another --out or pass --overwrite")
    return record.get("rows", []) if record else []


@dataclass
class _Run:
    """What every task of one continual run shares."""

    out: Path
    plan: dict
    offsets: list[int]  # task boundaries in the pool
    ucfg: object
    eval_cfg: object
    model_name: str
    progress: bool
    refusals: list[str] | None
    ref_model: object = None

    def __post_init__(self):
        self.pool = [r for task in self.plan["tasks"] for r in task]


def _start(model, tokenizer, run: _Run, rows: list[dict], cache_dir) -> dict:
    """Evaluate the starting model on the whole pool (the 'before' generations); set row 0; return its results."""
    t0 = time.time()
    roles0, name0 = {"forget": run.pool, **run.plan["eval_roles"]}, f"{run.model_name} (before task 1)"
    ev = dict(model_name=name0, progress=run.progress, cache_dir=cache_dir)
    before = evaluate_records(model, tokenizer, roles0, run.out / "tasks/task_00/eval", run.eval_cfg, **ev)
    # again with itself as 'before' (cached stages): Cosine Similarity 1, so row 0 has FE and MU-18 too
    before = evaluate_records(model, tokenizer, roles0, run.out / "tasks/task_00/eval", run.eval_cfg,
                              before_results=before, **ev)
    row0 = {**_row(0, before, run.offsets), "eval_seconds": rows[0]["eval_seconds"] if rows
            else round(time.time() - t0, 2)}
    rows[:1] = [row0]
    return before


def _task(t: int, model, tokenizer, run: _Run, before: dict, load_model) -> tuple:
    """Unlearn task t (or reload its weights when the kill came before its evaluation), evaluate; (model, tok, row)."""
    from obliviate.unlearn import unlearn

    tdir = run.out / f"tasks/task_{t:02d}"
    task_sets, ucfg = run.plan["tasks"], run.ucfg
    retain = task_retain(task_sets, run.plan["base_retain"], t)
    started = time.time()
    if _has_weights(tdir):  # unlearned before the kill, not yet evaluated
        model, tokenizer = load_model(tdir)
        summary = read_json_object(tdir / "summary.json")
    else:
        from obliviate.evaluate.probes import probe_for

        # eval_every / rules: probe this task's forget items, the retain and neighbour roles (no reference model)
        probe, _ = probe_for(ucfg, roles={"forget": task_sets[t - 1], **run.plan["eval_roles"]}, tokenizer=tokenizer)
        model, log = unlearn(model, tokenizer, task_sets[t - 1], retain, ucfg, refusals=run.refusals, out_dir=tdir,
                             resume=True, ref_model=run.ref_model if ucfg.reference == "original" else None,
                             progress=run.progress, probe=probe)
        summary = log.summary
    unlearn_seconds = time.time() - started
    write_records(tdir / "forget.json", task_sets[t - 1])  # after unlearn: it claims an empty directory
    write_records(tdir / "retain.json", retain)
    started = time.time()
    res = evaluate_records(model, tokenizer, {"forget": run.pool[:run.offsets[t]], **run.plan["eval_roles"]},
                           tdir / "eval", run.eval_cfg, before_results=_before_for(before, run.offsets[t]),
                           model_name=f"{run.model_name} after task {t}", progress=run.progress)
    row = {**_row(t, res, run.offsets), "steps": summary["steps"],
           "forget_prob_before": summary["forget_prob_before"], "forget_prob_after": summary["forget_prob_after"],
           "unlearn_seconds": round(unlearn_seconds, 2), "eval_seconds": round(time.time() - started, 2)}
    return model, tokenizer, row


def continual(model, tokenizer, data, cfg: ContinualConfig, ucfg, *, out, eval_cfg=None, model_name: str = "",
              ref_model=None, load_model=None, overwrite: bool = False, progress: bool = True,
              cache_dir=None) -> dict:
    """Unlearn the tasks in order, evaluate after each, write `<out>/continual.json`; return its content.

    `ref_model`: the starting model's copy for `reference=original` (loaded from `model_name` by
    `load_model` when missing). `load_model(path) -> (model, tokenizer)` reloads a finished task on resume.
    `cache_dir`: a stage cache shared with other continual runs of the same model (evaluate's `cache_dir`): the
    evaluation before task 1 (of the starting model) is then computed once for every recipe and seed.
    """
    from obliviate.config import versions
    from obliviate.data.loading import load_refusals
    from obliviate.evaluate import EvalConfig
    from obliviate.unlearn.loop import recipe_needs

    eval_cfg = eval_cfg or EvalConfig()
    needs = recipe_needs(ucfg)
    if ucfg.reference == "original" and not needs & {"ref_logps", "ref_model"}:
        raise ObliviateError(f"reference=original has no effect: {ucfg.recipe} uses no reference model")
    out = Path(out)
    plan = load_tasks(data, cfg)
    task_sets = plan["tasks"]
    settings = {"model": str(model_name), "data": str(data), "continual": dataclasses.asdict(cfg),
                "unlearn": json.loads(json.dumps(dataclasses.asdict(ucfg), default=str)),
                "eval": dataclasses.asdict(eval_cfg)}
    rows = _resume(out, settings, overwrite)
    refusals = load_refusals(data) if needs & {"alternate", "retain_alternate"} else None
    offsets = [0]
    for task in task_sets:
        offsets.append(offsets[-1] + len(task))
    run = _Run(out, plan, offsets, ucfg, eval_cfg, model_name, progress, refusals)
    info = {"settings": settings, "recipe": ucfg.recipe, "reference": ucfg.reference, "versions": versions(),
            "plan": [{"task": t, "n": len(task), "authors": sorted(_authors(task))}
                     for t, task in enumerate(task_sets, 1)],
            "base_retain_n": len(plan["base_retain"]), "eval_roles": {r: len(v) for r, v in plan["eval_roles"].items()},
            "rows": rows}
    before = _start(model, tokenizer, run, rows, cache_dir)
    write_json(out / "continual.json", info, indent=1)
    done = rows[-1]["task"]
    if done:
        model, tokenizer = load_model(out / f"tasks/task_{done:02d}")
    if ucfg.reference == "original" and ref_model is None and done < len(task_sets):
        ref_model = load_model(model_name)[0]
    run.ref_model = ref_model
    for t in range(done + 1, len(task_sets) + 1):
        model, tokenizer, row = _task(t, model, tokenizer, run, before, load_model)
        rows.append(row)
        write_json(out / "continual.json", info, indent=1)
        if t > 1 and not cfg.keep_models:
            _drop_weights(out / f"tasks/task_{t - 1:02d}")
    return info
