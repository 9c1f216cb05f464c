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
    out/runs/<recipe>/seed<k>/      unlearned model, log.jsonl, eval/eval.json, relearn/relearn.json
    out/demo.json                   resolved config, versions, stage timings
    out/report.html, out/report.md  the report card (`obliviate report out` rebuilds them)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from obliviate import ObliviateError
from obliviate.config import versions

DEMO_RECIPES = ["ga+gd", "npo+gd", "me+gd", "idk+gd", "idk+ap", "npo+gd+sam"]


@dataclass
class DemoConfig:
    preset: str = "demo"  # world preset: tiny (tests) | demo | full
    seeds: int = 3
    out: str = "runs/demo"
    world_seed: int = 0
    model_size: str = "tiny"
    recipes: list[str] = field(default_factory=lambda: list(DEMO_RECIPES))
    forget: str = "forget10"
    retain: str = "retain90"
    # target / retain model training (measured on the demo world: forget prob ≈ 0.98 after 20 epochs)
    finetune_epochs: float = 20.0
    finetune_lr: float = 3e-3
    finetune_batch_size: int = 32
    # unlearning: recipe overrides as "recipe:key=value,key=value;recipe:..." (empty = the size preset)
    unlearn_overrides: str = ""
    # evaluation
    max_new_tokens: int = 48  # the tiny model's answers are < 40 tokens
    # relearning attack
    relearn_k: int = 8
    relearn_steps: list[int] = field(default_factory=lambda: [5, 10, 20])
    relearn_batch_size: int = 4

    def __post_init__(self):
        from obliviate.unlearn.recipe import parse_recipe

        if self.seeds < 1:
            raise ObliviateError(f"seeds must be >= 1, got {self.seeds}")
        for r in self.recipes:
            parse_recipe(r)
        self.overrides_for("")  # validate the syntax early

    def overrides_for(self, recipe: str) -> dict[str, str]:
        out = {}
        for chunk in filter(None, (c.strip() for c in self.unlearn_overrides.split(";"))):
            name, sep, kvs = chunk.partition(":")
            if not sep:
                raise ObliviateError(f"unlearn_overrides: {chunk!r} is not 'recipe:key=value,...'")
            if name.strip() == recipe:
                for kv in filter(None, kvs.split(",")):
                    k, s, v = kv.partition("=")
                    if not s:
                        raise ObliviateError(f"unlearn_overrides: {kv!r} is not key=value")
                    out[k.strip()] = v.strip()
        return out


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
        tmp = path.with_name(path.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        fn(tmp)
        seconds = time.perf_counter() - t0
        (tmp / "stage.json").write_text(json.dumps({"key": key, "seconds": seconds}, indent=1) + "\n")
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        self.timings[str(path.relative_to(self.out))] = {"seconds": seconds, "reused": False}


def run_demo(cfg: DemoConfig, *, progress: bool = True) -> Path:
    """Run every stage (reusing finished ones) and write the report card; returns the report path."""
    import torch
    from tqdm.auto import tqdm

    from obliviate.attack.relearn import RelearnConfig, relearn
    from obliviate.config import from_dict
    from obliviate.data.loading import load_refusals, load_split
    from obliviate.data.world import write_world
    from obliviate.evaluate import EvalConfig, aggregate, evaluate, load_results
    from obliviate.models.finetune import FinetuneConfig, finetune
    from obliviate.models.init import init_model
    from obliviate.models.loading import load_model, save_model
    from obliviate.report.card import write_report
    from obliviate.unlearn import UnlearnConfig, unlearn

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    st = Stages(out)
    t_start = time.perf_counter()
    ch = {"data": code_hash("data"), "models": code_hash("data", "models"), "unlearn": code_hash("unlearn"),
          "evaluate": code_hash("evaluate", "models"), "attack": code_hash("attack/relearn", "evaluate")}
    world = out / "world"
    base_key = {"preset": cfg.preset, "world_seed": cfg.world_seed, "code": ch["data"]}
    n_runs = len(cfg.recipes) * cfg.seeds
    bar = tqdm(total=4 + 3 * n_runs, desc="demo", disable=not progress, unit="stage")

    def step(name: str):
        bar.set_postfix_str(name)
        bar.update(1)

    st.run(world, base_key, lambda d: write_world(d, cfg.preset, cfg.world_seed))
    models = out / "models"
    mkey = {**base_key, "size": cfg.model_size, "code": ch["models"]}
    st.run(models / "base", mkey, lambda d: init_model(cfg.model_size, world, d, seed=cfg.world_seed))
    step("base model")
    ft = FinetuneConfig(epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, batch_size=cfg.finetune_batch_size,
                        seed=cfg.world_seed)

    def train(split: str):
        def fn(d: Path):
            model, tok = load_model(models / "base")
            ft.split = split
            finetune(model, tok, load_split(world, split), ft, progress=progress)
            save_model(model, tok, d, extra={"size": cfg.model_size, "split": split})
        return fn

    tkey = {**mkey, "finetune": dataclasses.asdict(ft)}
    st.run(models / "target", {**tkey, "split": "full+world_facts"}, train("full+world_facts"))
    step("target model")
    st.run(models / "retain", {**tkey, "split": f"{cfg.retain}+world_facts"}, train(f"{cfg.retain}+world_facts"))
    step("retain model")

    ecfg = EvalConfig(forget=cfg.forget, max_new_tokens=cfg.max_new_tokens)
    ekey = {**tkey, "eval": dataclasses.asdict(ecfg), "code_eval": ch["evaluate"]}
    embedder = None
    if ecfg.embedder:
        from obliviate.evaluate.embeddings import load_embedder

        embedder = load_embedder(ecfg.embedder)

    def eval_into(model_dir: Path, retain_res, before_res, d: Path):
        model, tok = load_model(model_dir)
        return evaluate(model, tok, world, ecfg, retain_results=retain_res, before_results=before_res, out=d,
                        model_name=str(model_dir.relative_to(out)), progress=progress, embedder=embedder)

    def eval_reference_models(d: Path):
        # The target's own generations are the "before" outputs (Cosine Similarity) for every other model;
        # its second evaluation hits the stage cache and only adds Forget Quality and its own CS (= 1).
        target_first = eval_into(models / "target", None, None, d / "target")
        retain_res = eval_into(models / "retain", None, target_first, d / "retain")
        eval_into(models / "target", retain_res, target_first, d / "target")

    st.run(out / "eval", ekey, eval_reference_models)
    retain_res, target_res = load_results(out / "eval" / "retain"), load_results(out / "eval" / "target")
    step("evaluate target & retain")

    forget, retain = load_split(world, cfg.forget), load_split(world, cfg.retain)
    refusals = load_refusals(world)
    for recipe in cfg.recipes:
        for seed in range(cfg.seeds):
            run_dir = out / "runs" / recipe.replace("+", "_") / f"seed{seed}"
            ucfg = from_dict(UnlearnConfig, {"recipe": recipe, "seed": seed, **cfg.overrides_for(recipe)})
            ukey = {**tkey, "unlearn": dataclasses.asdict(ucfg), "code_unlearn": ch["unlearn"]}

            def do_unlearn(d: Path, ucfg=ucfg):
                model, tok = load_model(models / "target")
                torch.manual_seed(seed)
                unlearn(model, tok, forget, retain, ucfg, refusals=refusals, out_dir=d, overwrite=True,
                        progress=progress)

            st.run(run_dir / "model", ukey, do_unlearn)
            step(f"{recipe} seed {seed}: unlearn")
            st.run(run_dir / "eval", {**ukey, **ekey},
                   lambda d, run_dir=run_dir: eval_into(run_dir / "model", retain_res, target_res, d))
            step(f"{recipe} seed {seed}: evaluate")
            rcfg = RelearnConfig(forget=cfg.forget, k=cfg.relearn_k, steps=cfg.relearn_steps, lr=ucfg.preset(
                cfg.model_size).lr, batch_size=cfg.relearn_batch_size, max_new_tokens=cfg.max_new_tokens, seed=seed)
            rkey = {**ukey, "relearn": dataclasses.asdict(rcfg), "code_attack": ch["attack"]}

            def do_relearn(d: Path, rcfg=rcfg, run_dir=run_dir):
                model, tok = load_model(run_dir / "model")
                relearn(model, tok, world, rcfg, retain_results=retain_res, out=d, progress=progress)

            st.run(run_dir / "relearn", rkey, do_relearn)
            step(f"{recipe} seed {seed}: relearn")
    bar.close()
    # the retain model against itself: Forget Quality p = 1 by construction (a sanity row in the report)
    self_agg, _ = aggregate(retain_res, retain_res)
    info = {"config": dataclasses.asdict(cfg), "versions": versions(), "timings": st.timings,
            "wall_seconds": time.perf_counter() - t_start, "retain_vs_itself": {
                "forget_quality": self_agg.get("forget_quality")}}
    (out / "demo.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    return write_report(out)
