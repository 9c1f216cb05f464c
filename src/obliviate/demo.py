"""The offline demo: world → base/target/retain models → unlearning × recipes × seeds → evaluation →
relearning attack → report card. Runs on a 2-core CPU with nothing downloaded.

    obliviate demo --preset demo --seeds 3 --out runs/demo

Every stage writes into its own directory under `out/` and is marked finished by a `stage.json`
holding its key (the preset, seed, stage parameters and a hash of the code it runs) and its wall
time. A stage whose key matches is reused, so a second run, or a run after Ctrl-C, redoes only
what is missing or what changed. The world and the target/retain models are built once (world
seed `world_seed`); the seeds vary unlearning (forget/retain pairing) and the relearning attack
(which forget items the attacker gets).

Layout::

    out/world/                      the synthetic world (TOFU-schema JSON)
    out/models/{base,target,retain}/  HF model directories (+ stage.json)
    out/eval/{target,retain}/eval.json  the reference models (target = the 'before' outputs)
    out/runs/<recipe>/seed<k>/      unlearned model, log.jsonl, eval/eval.json, and per attack in `attacks`
                                    relearn/relearn.json, mia/mia.json, jailbreak/jailbreak.json
    out/demo.json                   resolved config, versions, stage timings
    out/report.html, out/report.md  the report card (`obliviate report out` rebuilds them)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from obliviate import ObliviateError
from obliviate.config import versions
from obliviate.rundir import atomic_dir, run_dir, write_json

DEMO_RECIPES = ["ga+gd", "npo+gd", "me+gd", "idk+gd", "idk+ap", "npo+gd+sam"]


@dataclass
class DemoConfig:
    preset: str = "demo"  # world preset: tiny (tests) | demo | full
    seeds: int = 3
    out: str = "runs/demo"
    world_seed: int = 0
    model_size: str = "tiny"  # the model trained from scratch on the world (models.init sizes)...
    base_model: str = ""  # ... or a pretrained model (hub id, directory, smollm2-135m-instruct) to fine-tune instead
    recipes: list[str] = field(default_factory=lambda: list(DEMO_RECIPES))
    forget: str = "forget10"
    retain: str = "retain90"
    # target / retain model training (measured on the demo world: forget prob ≈ 0.98 after 20 epochs)
    finetune_epochs: float = 20.0
    finetune_lr: float = 3e-3
    finetune_batch_size: int = 32
    finetune_lora: bool = False  # train a LoRA adapter (r = finetune_lora_r, α = 2r) and merge it, not every weight
    finetune_lora_r: int = 16
    # unlearning: recipe overrides as "recipe:key=value,key=value;recipe:..." (empty = the size preset);
    # "*:key=value" applies to every recipe (a recipe's own entry wins)
    unlearn_overrides: str = ""
    # evaluation
    max_new_tokens: int = 48  # the tiny model's answers are < 40 tokens
    # relearning attack
    relearn_k: int = 8
    relearn_steps: list[int] = field(default_factory=lambda: [5, 10, 20])
    relearn_batch_size: int = 4
    # attacks on every unlearned model (report.attacks.ATTACKS); mia reuses the evaluation's scores (no new pass)
    attacks: list[str] = field(default_factory=lambda: ["relearn", "mia"])
    attack_recipes: list[str] = field(default_factory=list)  # recipes relearn/jailbreak attack (empty = every one)
    jailbreak_tokens: int = 10  # demo size of the GCG search (see docs/attacks.md for its time)
    jailbreak_steps: int = 8
    jailbreak_search_width: int = 32
    # continual unlearning of the target (scenarios.continual), one run per spec "recipe[:key=value,...]",
    # e.g. "npo+gd", "npo+gd:reference=original"; tasks of `continual_forget`'s size; empty = none
    continual: list[str] = field(default_factory=list)
    continual_forget: str = "forget01"
    continual_tasks: int = 3
    continual_seeds: int = 1  # claims need ≥ 2 seeds for an interval
    # parallel worker processes (1 thread each) for independent stages; 1 = everything in this process
    jobs: int = 2

    def __post_init__(self):
        from obliviate.unlearn.recipe import parse_recipe

        if self.jobs < 1:
            raise ObliviateError(f"jobs must be >= 1, got {self.jobs}")
        if self.seeds < 1:
            raise ObliviateError(f"seeds must be >= 1, got {self.seeds}")
        for r in self.recipes:
            parse_recipe(r)
        from obliviate.report.attacks import ATTACKS

        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise ObliviateError(f"attacks: unknown {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
        stray = [r for r in self.attack_recipes if r not in self.recipes]
        if stray:
            raise ObliviateError(f"attack_recipes: {', '.join(stray)} not among the recipes ({', '.join(self.recipes)})")
        self.overrides_for("")  # validate the syntax early
        for spec in self.continual:
            self.continual_spec(spec)
        if self.continual_tasks < 1 or self.continual_seeds < 1:
            raise ObliviateError(f"continual_tasks and continual_seeds must be >= 1, got {self.continual_tasks}, "
                                 f"{self.continual_seeds}")

    def overrides_for(self, recipe: str) -> dict[str, str]:
        """UnlearnConfig overrides of `recipe`: the "*" entries, then the recipe's own (which win)."""
        every, own = {}, {}
        for chunk in filter(None, (c.strip() for c in self.unlearn_overrides.split(";"))):
            name, sep, kvs = chunk.partition(":")
            if not sep:
                raise ObliviateError(f"unlearn_overrides: {chunk!r} is not 'recipe:key=value,...'")
            values = _key_values(kvs, "unlearn_overrides")
            if name.strip() in ("*", recipe):
                (every if name.strip() == "*" else own).update(values)
        return {**every, **own}

    def continual_spec(self, spec: str) -> tuple[str, dict[str, str], str]:
        """(recipe, UnlearnConfig overrides, directory name) of a `continual` entry "recipe[:key=value,...]"."""
        from obliviate.unlearn.recipe import parse_recipe

        recipe, _, kvs = spec.partition(":")
        parse_recipe(recipe.strip())
        own = _key_values(kvs, f"continual {spec!r}")
        name = "_".join([recipe.strip().replace("+", "_")] + [f"{k}-{v}" for k, v in own.items()])
        return recipe.strip(), {**self.overrides_for(recipe.strip()), **own}, name

    def attacked(self, recipe: str) -> bool:
        """Whether the relearning / jailbreak attacks run on `recipe`'s models (mia always: it needs no pass)."""
        return not self.attack_recipes or recipe in self.attack_recipes

    def base_dir(self) -> Path | str:
        """The model target and retain are fine-tuned from: the pretrained `base_model`, else models/base."""
        return self.base_model or Path(self.out) / "models" / "base"


def _key_values(kvs: str, field: str) -> dict[str, str]:
    """"key=value,key=value" as a dict (`config.parse_overrides`), an error naming the DemoConfig field."""
    from obliviate.config import parse_overrides

    try:
        return parse_overrides([kv for kv in kvs.split(",") if kv])
    except ObliviateError as e:
        raise ObliviateError(f"{field}: {e}") from None


def code_hash(*packages: str) -> str:
    """Hash of the source of obliviate sub-packages/modules: a stage's key changes when its code does."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for pkg in packages:
        p = root / pkg
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p.with_suffix(".py")]
        for f in files:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


class Stages:
    """Run-or-reuse bookkeeping: `stage.json` = {key, seconds}; written only when a stage has finished."""

    def __init__(self, out: Path):
        self.out, self.timings = out, {}

    def done(self, path: Path, key: dict) -> bool:
        f = path / "stage.json"
        if f.is_file():
            info = json.loads(f.read_text())
            if info.get("key") == key:
                self.timings[str(path.relative_to(self.out))] = {"seconds": info["seconds"], "reused": True}
                return True
        return False

    def run(self, path: Path, key: dict, fn) -> None:
        """Run `fn(tmp_dir)` into a fresh temporary directory, then move it to `path` (atomic on finish)."""
        if self.done(path, key):
            return
        with atomic_dir(path) as tmp:
            t0 = time.perf_counter()
            fn(tmp)
            seconds = time.perf_counter() - t0
            write_json(tmp / "stage.json", {"key": key, "seconds": seconds}, indent=1)
        self.timings[str(path.relative_to(self.out))] = {"seconds": seconds, "reused": False}


def _keys(cfg: DemoConfig) -> dict:
    """Stage keys: preset, seed, parameters and the hash of the code each stage runs."""
    from obliviate.evaluate import EvalConfig
    from obliviate.models.finetune import FinetuneConfig

    base = {"preset": cfg.preset, "world_seed": cfg.world_seed, "code": code_hash("data")}
    model = {**base, ("base_model" if cfg.base_model else "size"): cfg.base_model or cfg.model_size,
             "code": code_hash("data", "models")}
    ft = FinetuneConfig(epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, batch_size=cfg.finetune_batch_size,
                        lora=cfg.finetune_lora, lora_r=cfg.finetune_lora_r, lora_alpha=2 * cfg.finetune_lora_r,
                        seed=cfg.world_seed)
    trained = {**model, "finetune": dataclasses.asdict(ft)}
    ecfg = EvalConfig(forget=cfg.forget, max_new_tokens=cfg.max_new_tokens)
    return {"base": base, "model": model, "trained": trained, "finetune": ft, "eval_config": ecfg,
            "eval": {**trained, "eval": dataclasses.asdict(ecfg), "code_eval": code_hash("evaluate", "models")},
            "unlearn_code": code_hash("unlearn"), "attack_code": code_hash("attack/relearn", "evaluate")}


_EMBEDDERS: dict = {}


def _eval_into(cfg: DemoConfig, ecfg, model_dir: Path, d: Path, retain_res=None, before_res=None,
               progress=False) -> dict:
    """Evaluate one model directory of the run into `d` (the embedding model is loaded once per process)."""
    from obliviate.evaluate import evaluate
    from obliviate.models.loading import load_model

    if ecfg.embedder and ecfg.embedder not in _EMBEDDERS:
        from obliviate.evaluate.embeddings import load_embedder

        _EMBEDDERS[ecfg.embedder] = load_embedder(ecfg.embedder)
    model, tok = load_model(model_dir)
    return evaluate(model, tok, Path(cfg.out) / "world", ecfg, retain_results=retain_res, before_results=before_res,
                    out=d, model_name=str(model_dir.relative_to(cfg.out)), progress=progress,
                    embedder=_EMBEDDERS.get(ecfg.embedder))


def _train_job(cfg: DemoConfig, name: str, split: str, progress: bool = False) -> dict:
    """Fine-tune the base model on `split` into models/<name> (target or retain)."""
    from obliviate.data.loading import load_split
    from obliviate.models.finetune import finetune
    from obliviate.models.loading import load_model, save_model

    out, keys = Path(cfg.out), _keys(cfg)
    st = Stages(out)

    def fn(d: Path):
        model, tok = load_model(cfg.base_dir())
        ft = dataclasses.replace(keys["finetune"], split=split)
        finetune(model, tok, load_split(out / "world", split), ft, progress=progress)
        extra = {"finetuned_from": cfg.base_model} if cfg.base_model else {"size": cfg.model_size}
        save_model(model, tok, d, extra={**extra, "split": split})

    st.run(out / "models" / name, {**keys["trained"], "split": split}, fn)
    return st.timings


def _chain_job(cfg: DemoConfig, recipe: str, seed: int, progress: bool = False) -> dict:
    """One recipe and seed: unlearn the target, evaluate the result, attack it by relearning."""
    import torch

    from obliviate.attack.relearn import RelearnConfig, relearn
    from obliviate.config import from_dict
    from obliviate.data.loading import load_refusals, load_split
    from obliviate.evaluate import load_results
    from obliviate.models.loading import load_model
    from obliviate.unlearn import UnlearnConfig, unlearn

    out, keys = Path(cfg.out), _keys(cfg)
    st = Stages(out)
    world = out / "world"
    run_dir = out / "runs" / recipe.replace("+", "_") / f"seed{seed}"
    ucfg = from_dict(UnlearnConfig, {"recipe": recipe, "seed": seed, **cfg.overrides_for(recipe)})
    ukey = {**keys["trained"], "unlearn": dataclasses.asdict(ucfg), "code_unlearn": keys["unlearn_code"]}

    def do_unlearn(d: Path):
        model, tok = load_model(out / "models" / "target")
        torch.manual_seed(seed)
        unlearn(model, tok, load_split(world, cfg.forget), load_split(world, cfg.retain), ucfg,
                refusals=load_refusals(world), out_dir=d, overwrite=True, progress=progress)

    st.run(run_dir / "model", ukey, do_unlearn)
    retain_res, target_res = load_results(out / "eval" / "retain"), load_results(out / "eval" / "target")
    st.run(run_dir / "eval", {**ukey, **keys["eval"]},
           lambda d: _eval_into(cfg, keys["eval_config"], run_dir / "model", d, retain_res, target_res, progress))
    size = None if cfg.base_model else cfg.model_size
    rcfg = RelearnConfig(forget=cfg.forget, k=cfg.relearn_k, steps=cfg.relearn_steps,
                         lr=ucfg.hyperparams(size).lr, batch_size=cfg.relearn_batch_size,
                         max_new_tokens=cfg.max_new_tokens, seed=seed)

    def do_relearn(d: Path):
        model, tok = load_model(run_dir / "model")
        relearn(model, tok, world, rcfg, retain_results=retain_res, start_results=load_results(run_dir / "eval"),
                out=d, progress=progress)

    if "relearn" in cfg.attacks and cfg.attacked(recipe):
        st.run(run_dir / "relearn", {**ukey, **keys["eval"], "relearn": dataclasses.asdict(rcfg),
                                     "code_attack": keys["attack_code"]}, do_relearn)
    if "mia" in cfg.attacks:
        from obliviate.attack.mia import mia_from_results

        st.run(run_dir / "mia", {**ukey, **keys["eval"], "code_attack": code_hash("attack/mia")},
               lambda d: (d / "mia.json").write_text(json.dumps(
                   mia_from_results(load_results(run_dir / "eval"), retain_res), default=str) + "\n"))
    if "jailbreak" in cfg.attacks and cfg.attacked(recipe):
        from obliviate.attack.jailbreak import JailbreakConfig, jailbreak

        jcfg = JailbreakConfig(forget=cfg.forget, k=cfg.relearn_k, tokens=cfg.jailbreak_tokens,
                               steps=cfg.jailbreak_steps, search_width=cfg.jailbreak_search_width,
                               max_new_tokens=cfg.max_new_tokens, seed=seed)

        def do_jailbreak(d: Path):
            model, tok = load_model(run_dir / "model")
            jailbreak(model, tok, world, jcfg, start_results=load_results(run_dir / "eval"), out=d, progress=progress)

        st.run(run_dir / "jailbreak", {**ukey, **keys["eval"], "jailbreak": dataclasses.asdict(jcfg),
                                       "code_attack": code_hash("attack/jailbreak", "evaluate")}, do_jailbreak)
    return st.timings


def _continual_job(cfg: DemoConfig, spec: str, seed: int, progress: bool = False) -> dict:
    """Continual unlearning of the target model (scenarios.continual) into continual/<name>/seed<k>."""
    from obliviate.config import from_dict
    from obliviate.models.loading import load_model
    from obliviate.scenarios.continual import ContinualConfig, continual
    from obliviate.unlearn import UnlearnConfig

    out, keys = Path(cfg.out), _keys(cfg)
    st = Stages(out)
    recipe, overrides, name = cfg.continual_spec(spec)
    ucfg = from_dict(UnlearnConfig, {"recipe": recipe, "seed": seed, **overrides})
    ccfg = ContinualConfig(forget=cfg.continual_forget, tasks=cfg.continual_tasks)
    key = {**keys["eval"], "unlearn": dataclasses.asdict(ucfg), "continual": dataclasses.asdict(ccfg),
           "code_unlearn": keys["unlearn_code"], "code_scenario": code_hash("scenarios")}

    def fn(d: Path):
        target = out / "models" / "target"
        model, tok = load_model(target)
        continual(model, tok, out / "world", ccfg, ucfg, out=d, eval_cfg=keys["eval_config"], model_name=str(target),
                  load_model=load_model, progress=progress, cache_dir=out / "continual" / "cache")

    st.run(out / "continual" / name / f"seed{seed}", key, fn)
    return st.timings


def quiet_transformers() -> None:
    """Silence transformers' own "Loading weights" / "Writing model shards" bars: the demo has one display."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """In a worker: a daemon thread that ends this process once `parent_pid` has died (e.g. kill -9 of the demo).

    A dead parent's children are re-parented, so `os.getppid()` no longer returns `parent_pid`."""
    import os
    import threading

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(interval)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(parent_pid: int) -> None:
    import torch

    torch.set_num_threads(1)  # two 1-thread processes beat one 2-thread process on these small matrices
    quiet_transformers()
    _exit_with_parent(parent_pid)


def _run_jobs(jobs: list[tuple], workers: int) -> None:
    """Run independent jobs, (picklable callable, on_done(result)) pairs, in `workers` spawned processes in the
    order given (a worker takes the next job when it is free), or in-process when 1."""
    if workers <= 1 or len(jobs) <= 1:
        for job, on_done in jobs:
            on_done(job())
        return
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(job): on_done for job, on_done in jobs}
        try:
            for f in as_completed(futures):
                futures[f](f.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


# Seconds of each part of a job on SmolLM2-135M with one thread (docs/reproduction.md, stage times), in units of
# one evaluation; only their order matters (longest job first).
JOB_COSTS = {"unlearn": 1.5, "eval": 1.0, "relearn_train": 0.5, "relearn_point": 0.45, "jailbreak": 1.5,
             "continual_task": 1.8}


def job_cost(cfg: DemoConfig, *, recipe: str = "", continual: bool = False) -> float:
    """Rough cost of a chain job (unlearn, evaluate, attack `recipe`) or of a continual job (JOB_COSTS)."""
    c = JOB_COSTS
    if continual:
        return c["continual_task"] * cfg.continual_tasks
    cost = c["unlearn"] + c["eval"]
    if cfg.attacked(recipe):
        cost += ("relearn" in cfg.attacks) * (c["relearn_train"] + c["relearn_point"] * len(cfg.relearn_steps))
        cost += ("jailbreak" in cfg.attacks) * c["jailbreak"]
    return cost


def run_demo(cfg: DemoConfig, *, progress: bool = True) -> Path:
    """Run every stage (reusing finished ones) and write the report card; returns the report path.

    `cfg.out` is claimed and locked (`rundir.run_dir`): a second demo on the same directory is refused."""
    with run_dir(cfg.out) as out:
        return _run_demo(cfg, out, progress)


def relearn_k_for(cfg: DemoConfig, n_forget: int) -> int:
    """`relearn_k`, clamped (with a message) so the attacker leaves at least one forget item unseen."""
    from tqdm.auto import tqdm

    if cfg.relearn_k < n_forget:
        return cfg.relearn_k
    if n_forget < 2:
        raise ObliviateError(f"{cfg.forget} has {n_forget} item(s): the relearning attack needs at least 2")
    k = n_forget - 1
    tqdm.write(f"relearn_k={cfg.relearn_k} is not smaller than the {n_forget} items of {cfg.forget}: using k={k} so that "
          "the 'unseen items' curve has an item to measure")
    return k


def _run_demo(cfg: DemoConfig, out: Path, progress: bool) -> Path:
    from functools import partial

    from tqdm.auto import tqdm

    from obliviate.data.loading import load_split
    from obliviate.data.world import write_world
    from obliviate.evaluate import aggregate, load_results
    from obliviate.models.init import init_model
    from obliviate.report.card import write_report

    if progress:
        quiet_transformers()
    st, keys = Stages(out), _keys(cfg)
    t_start = time.perf_counter()
    world, models = out / "world", out / "models"
    runs = [(recipe, seed) for recipe in cfg.recipes for seed in range(cfg.seeds)]
    continual_runs = [(spec, seed) for spec in cfg.continual for seed in range(cfg.continual_seeds)]
    bar = tqdm(total=5 + len(runs) + len(continual_runs), desc="demo", disable=not progress, unit="stage")
    inline = progress and cfg.jobs <= 1  # inner progress bars only when stages run in this process

    def done(name: str):
        def on_done(timings: dict | None = None):
            st.timings.update(timings or {})
            finished = sorted({str(Path(k).parent) for k in timings or {}})
            bar.set_postfix_str(name if len(finished) != 1 else f"{name}: {finished[0]}")
            bar.update(1)
        return on_done

    st.run(world, keys["base"], lambda d: write_world(d, cfg.preset, cfg.world_seed))
    done("world")()
    cfg = dataclasses.replace(cfg, relearn_k=relearn_k_for(cfg, len(load_split(world, cfg.forget))))
    if not cfg.base_model:  # a pretrained base is loaded as it is (never copied into the run)
        st.run(models / "base", keys["model"], lambda d: init_model(cfg.model_size, world, d, seed=cfg.world_seed))
    done("base model")()
    trained = done("target & retain models")
    _run_jobs([(partial(_train_job, cfg, "target", "full+world_facts", inline), trained),
               (partial(_train_job, cfg, "retain", f"{cfg.retain}+world_facts", inline), trained)], cfg.jobs)

    def eval_reference_models(d: Path):
        # The target's own generations are the "before" outputs (Cosine Similarity) for every other model;
        # its second evaluation hits the stage cache and only adds Forget Quality and its own CS (= 1).
        ecfg = keys["eval_config"]
        target_first = _eval_into(cfg, ecfg, models / "target", d / "target", progress=progress)
        retain_res = _eval_into(cfg, ecfg, models / "retain", d / "retain", None, target_first, progress)
        _eval_into(cfg, ecfg, models / "target", d / "target", retain_res, target_first, progress)

    st.run(out / "eval", keys["eval"], eval_reference_models)
    done("evaluate target & retain")()
    # one pool, longest job first (LPT): no worker idles while the other finishes a long tail
    chained, continued = done("unlearn, evaluate, attack"), done("continual")
    jobs = [(job_cost(cfg, recipe=recipe), partial(_chain_job, cfg, recipe, seed, inline), chained)
            for recipe, seed in runs]
    jobs += [(job_cost(cfg, continual=True), partial(_continual_job, cfg, spec, seed, inline), continued)
             for spec, seed in continual_runs]
    _run_jobs([(job, on_done) for _, job, on_done in sorted(jobs, key=lambda j: -j[0])], cfg.jobs)
    bar.close()
    # the retain model against itself: Forget Quality p = 1 by construction (a sanity row in the report)
    retain_res = load_results(out / "eval" / "retain")
    self_agg, _ = aggregate(retain_res, retain_res)
    info = {"config": dataclasses.asdict(cfg), "versions": versions(), "timings": st.timings,
            "wall_seconds": time.perf_counter() - t_start, "retain_vs_itself": {
                "forget_quality": self_agg.get("forget_quality")}}
    write_json(out / "demo.json", info, indent=1)
    return write_report(out)
