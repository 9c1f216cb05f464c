"""The pipeline's job chains, one worker job each: a recipe × seed chain (unlearn the target, evaluate the result,
attack it) and a continual-unlearning run. Jobs are module-level functions of picklable arguments (the pool
spawns fresh processes) and return the timings of the stages they ran or reused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from obliviate.pipeline.config import DemoConfig
from obliviate.pipeline.stages import eval_into, stage_keys
from obliviate.rundir import write_json
from obliviate.stagecache import Stages, code_hash


def chain_job(cfg: DemoConfig, recipe: str, seed: int, progress: bool = False) -> dict:
    """One recipe and seed: unlearn the target, evaluate the result, attack it (`attack_stages`)."""
    import torch

    from obliviate.config import from_dict
    from obliviate.data.loading import load_refusals, load_split
    from obliviate.evaluate import load_results
    from obliviate.models.loading import load_model
    from obliviate.unlearn import UnlearnConfig, unlearn

    out, keys = Path(cfg.out), stage_keys(cfg)
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
           lambda d: eval_into(cfg, keys["eval_config"], run_dir / "model", d, retain_res, target_res, progress))
    attack_stages(cfg, st, run_dir, recipe, seed, {**ukey, **keys["eval"]}, ucfg, retain_res, progress)
    return st.timings


def attack_stages(cfg: DemoConfig, st: Stages, run_dir: Path, recipe: str, seed: int, eval_key: dict, ucfg,
                  retain_res: dict, progress: bool) -> None:
    """The attacks of `cfg.attacks` on the unlearned model of `run_dir`, each a stage `run_dir/<attack>/`.

    Seam: this is the one place that dispatches on an attack's name (relearn, mia, jailbreak); it is meant to
    become a loop over the attack registry (each record's run() and key). `eval_key` = the key of the evaluated
    model; mia reuses the evaluation's scores (no new pass) and runs on every recipe, relearn and jailbreak only
    on `cfg.attacked(recipe)`."""
    from obliviate.evaluate import load_results
    from obliviate.models.loading import load_model

    world = Path(cfg.out) / "world"
    if "relearn" in cfg.attacks and cfg.attacked(recipe):
        from obliviate.attack.relearn import RelearnConfig, relearn

        size = None if cfg.base_model else cfg.model_size
        rcfg = RelearnConfig(forget=cfg.forget, k=cfg.relearn_k, steps=cfg.relearn_steps,
                             lr=ucfg.hyperparams(size).lr, batch_size=cfg.relearn_batch_size,
                             max_new_tokens=cfg.max_new_tokens, seed=seed)

        def do_relearn(d: Path):
            model, tok = load_model(run_dir / "model")
            relearn(model, tok, world, rcfg, retain_results=retain_res,
                    start_results=load_results(run_dir / "eval"), out=d, progress=progress)

        st.run(run_dir / "relearn", {**eval_key, "relearn": dataclasses.asdict(rcfg),
                                     "code_attack": code_hash("attack/relearn", "evaluate")}, do_relearn)
    if "mia" in cfg.attacks:
        from obliviate.attack.mia import mia_from_results

        st.run(run_dir / "mia", {**eval_key, "code_attack": code_hash("attack/mia")}, lambda d: write_json(
            d / "mia.json", mia_from_results(load_results(run_dir / "eval"), retain_res), indent=None))
    if "jailbreak" in cfg.attacks and cfg.attacked(recipe):
        from obliviate.attack.jailbreak import JailbreakConfig, jailbreak

        jcfg = JailbreakConfig(forget=cfg.forget, k=cfg.relearn_k, tokens=cfg.jailbreak_tokens,
                               steps=cfg.jailbreak_steps, search_width=cfg.jailbreak_search_width,
                               max_new_tokens=cfg.max_new_tokens, seed=seed)

        def do_jailbreak(d: Path):
            model, tok = load_model(run_dir / "model")
            jailbreak(model, tok, world, jcfg, start_results=load_results(run_dir / "eval"), out=d, progress=progress)

        st.run(run_dir / "jailbreak", {**eval_key, "jailbreak": dataclasses.asdict(jcfg),
                                       "code_attack": code_hash("attack/jailbreak", "evaluate")}, do_jailbreak)


def continual_job(cfg: DemoConfig, spec: str, seed: int, progress: bool = False) -> dict:
    """Continual unlearning of the target model (scenarios.continual) into continual/<name>/seed<k>."""
    from obliviate.config import from_dict
    from obliviate.models.loading import load_model
    from obliviate.scenarios.continual import ContinualConfig, continual
    from obliviate.unlearn import UnlearnConfig

    out, keys = Path(cfg.out), stage_keys(cfg)
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
