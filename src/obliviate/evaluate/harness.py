"""The lm-evaluation-harness bridge: lm-eval's own task definitions, run on the in-memory model, from local files.

    results["harness"] = harness_eval(model, tok, EvalConfig(harness="lm-eval", tasks=["wmdp_bio", "mmlu"]))
    # obliviate eval --model M --data D --harness lm-eval --tasks wmdp_bio,mmlu --harness-data data/hub

lm-eval (0.4.x, the `harness` extra) keeps each task's prompt, answer choices, metric and group aggregation; only
where the data comes from changes. Its tasks load hub datasets (`cais/wmdp`, `cais/mmlu`); offline, each task's
files are read from a local copy in the hub's layout, ``<harness_data>/<dataset_path>/<dataset_name>/<split>.
parquet|jsonl|json`` (or the hub's ``<split>-00000-of-00001.parquet`` shards), e.g.
``data/hub/cais/wmdp/wmdp-bio/test.jsonl``; a missing file is a one-line error naming the path it wants. Groups
(``mmlu``, ``wmdp``) are run as one group of their leaf tasks, with the group's own `aggregate_metric_list`
(sample-weighted for both: flattening MMLU's four sub-groups does not change its score).

eval.json ``harness``: {harness, version, data, limit, tasks: {task: {metrics, n, version, description,
doc_to_text, items: [{doc_id, target, loglikelihoods, acc}]}}, groups: {group: {metrics, n}}}.
"""

from __future__ import annotations

from pathlib import Path

from obliviate import ObliviateError

HARNESSES = ("lm-eval",)
_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
_MISSING = "--harness lm-eval needs lm-evaluation-harness: pip install 'obliviate[harness]'"


def _lm_eval():
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ObliviateError(_MISSING) from None
    return lm_eval, TaskManager


def _split_file(folder: Path, split: str) -> Path | None:
    for suffix in _FORMATS:
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}"
    shards = sorted(folder.glob(f"{split}-*.parquet"))
    return shards[0] if shards else None


def _task_spec(name: str, cfg: dict, root: Path) -> dict:
    """The task `name` with its dataset pointed at the local files (every split the task reads)."""
    folder = root / cfg["dataset_path"] / (cfg.get("dataset_name") or "")
    # lm-eval reads the few-shot split when it builds the task, even at 0 shots (MMLU: dev)
    splits = [cfg.get(k) for k in ("test_split", "validation_split", "training_split", "fewshot_split") if cfg.get(k)]
    files = {}
    for split in dict.fromkeys(splits):
        path = _split_file(folder, split)
        if path is None:
            raise ObliviateError(f"lm-eval task {name}: no local copy of {cfg['dataset_path']} "
                                 f"{cfg.get('dataset_name') or ''} split {split}: want {folder}/{split}.jsonl "
                                 f"(or .json / .parquet; the hub dataset's fields)")
        files[split] = str(path)
    formats = {_FORMATS.get(Path(f).suffix, "parquet") for f in files.values()}
    if len(formats) != 1:
        raise ObliviateError(f"lm-eval task {name}: {folder}: mixed file formats ({', '.join(sorted(formats))})")
    kwargs = {k: v for k, v in (cfg.get("dataset_kwargs") or {}).items() if k != "trust_remote_code"}
    return {**cfg, "task": name, "dataset_path": formats.pop(), "dataset_name": None,
            "dataset_kwargs": {**kwargs, "data_files": files}}


def _leaves(index, name: str, root: Path) -> list[dict]:
    """The leaf task specs of a task, group or tag `name` (lm-eval's task index), in order."""
    entry = index.get(name)
    if entry is None:
        raise ObliviateError(f"tasks: {name!r} is not an lm-eval task, group or tag (`lm-eval ls tasks` lists them)")
    kind = entry.kind.name
    if kind == "TAG":
        return [s for t in sorted(entry.tags) for s in _leaves(index, t, root)]
    if kind != "GROUP":
        return [_task_spec(name, entry.cfg, root)]
    specs = []
    for member in entry.cfg.get("task", []):
        if not isinstance(member, str):
            raise ObliviateError(f"lm-eval group {name}: inline member {member!r} is not supported offline; "
                                 "list its leaf tasks in --tasks")
        specs += _leaves(index, member, root)
    return specs


def task_specs(names: list[str], root: str | Path, index) -> list[dict]:
    """lm-eval `simple_evaluate` task specs: each task with local data; each group as one group of its leaves."""
    root = Path(root)
    specs = []
    for name in names:
        entry = index.get(name)
        if entry is not None and entry.kind.name == "GROUP":
            group = {k: v for k, v in entry.cfg.items() if k in ("aggregate_metric_list", "metadata", "group_alias")}
            specs.append({"group": name, **group, "task": _leaves(index, name, root)})
        else:
            specs += _leaves(index, name, root)
    return specs


def _metrics(row: dict) -> dict:
    """lm-eval's numeric results, `acc,none` as `acc` (a named filter stays: `exact_match,strict-match`)."""
    return {k.removesuffix(",none"): v for k, v in row.items()
            if "," in k and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _response(resp):
    """One filtered response: a log-likelihood (multiple choice / loglikelihood tasks) or the generated text."""
    first = resp[0] if isinstance(resp, (list, tuple)) and resp else resp
    return float(first) if isinstance(first, (int, float)) else str(first)


def _items(samples: list[dict]) -> list[dict]:
    """Per document: its id, target, each choice's log-likelihood (or the generation) and its `acc` when scored."""
    return [{"doc_id": s["doc_id"], "target": s["target"] if isinstance(s["target"], int) else str(s["target"]),
             "loglikelihoods": [_response(r) for r in s["filtered_resps"]], "acc": s.get("acc")} for s in samples]


def _build(spec: dict):
    """lm-eval's Task (or Group of Tasks) of one spec; built here because lm-eval's loader passes an inline group's
    own keys down to its tasks as overrides."""
    from lm_eval.api.group import Group
    from lm_eval.api.task import ConfigurableTask

    if "group" not in spec:
        return ConfigurableTask(config=spec)
    group = Group.from_config({k: v for k, v in spec.items() if k != "task"})
    for leaf in spec["task"]:
        group.add(ConfigurableTask(config=leaf))
    return group


def harness_tasks(cfg) -> tuple:
    """(lm-eval's TaskManager, the task specs of `cfg.tasks` on local data): checks every local file up front."""
    _, TaskManager = _lm_eval()
    manager = TaskManager()
    return manager, task_specs(list(cfg.tasks), cfg.harness_data, manager.task_index)


def harness_eval(model, tokenizer, cfg, tasks: tuple | None = None) -> dict:
    """Run lm-eval's tasks `cfg.tasks` on `model` (HFLM wraps the loaded model; no chat template, lm-eval's
    defaults), data from `cfg.harness_data`; `cfg.max_items` is lm-eval's `limit`, `cfg.seed` its seeds.
    tasks: `harness_tasks(cfg)` when already built."""
    lm_eval, _ = _lm_eval()
    from lm_eval.models.huggingface import HFLM

    manager, specs = tasks or harness_tasks(cfg)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size, max_length=cfg.max_length)
    res = lm_eval.simple_evaluate(model=lm, tasks=[_build(s) for s in specs], task_manager=manager,
                                  limit=cfg.max_items, log_samples=True, random_seed=cfg.seed,
                                  numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed)
    groups = set(res.get("groups", {}))
    leaves = {}
    for name, row in res["results"].items():
        if name in groups:
            continue
        conf = res["configs"].get(name, {})
        leaves[name] = {"metrics": _metrics(row), "n": res["n-samples"][name]["effective"],
                        "version": res["versions"].get(name), "description": str(conf.get("description") or ""),
                        "doc_to_text": str(conf.get("doc_to_text")), "num_fewshot": conf.get("num_fewshot") or 0,
                        "items": _items(res["samples"].get(name, []))}
    return {"harness": cfg.harness, "version": lm_eval.__version__, "data": str(cfg.harness_data),
            "limit": cfg.max_items, "tasks": leaves,
            "groups": {g: {"metrics": _metrics(res["results"][g]),
                           "n": sum(leaves[t]["n"] for t in _group_tasks(res, g) if t in leaves)}
                       for g in groups if g in res["results"]}}


def _group_tasks(res: dict, group: str) -> list[str]:
    """The leaf tasks under `group` in lm-eval's `group_subtasks` map."""
    out = []
    for child in res.get("group_subtasks", {}).get(group, []):
        out += _group_tasks(res, child) if child in res.get("group_subtasks", {}) else [child]
    return out
