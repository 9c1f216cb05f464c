"""The pipeline's job chains, one worker job each: a recipe × seed chain (unlearn the target, evaluate the result,
attack it) and a continual-unlearning run. Jobs are module-level functions of picklable arguments (the pool
spawns fresh processes) and return the timings of the stages they ran or reused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from obliviate.models.tracking import result_fields
from obliviate.pipeline.config import DemoConfig
from obliviate.pipeline.stages import eval_into, stage_keys
from obliviate.rundir import remove_entry
from obliviate.stagecache import Stages, code_hash


def chain_job(cfg: DemoConfig, recipe: str, seed: int, progress: bool = False) -> dict:
    """One recipe and seed: unlearn the target, evaluate the result, attack it (`attack_stages`)."""
    import torch

    from obliviate.config import from_dict
    from obliviate.data.loading import load_refusals, load_split
    from obliviate.evaluate import load_results
    from obliviate.evaluate.probes import probe_for
    from obliviate.models.loading import load_model
    from obliviate.unlearn import UnlearnConfig, unlearn

    out, keys = Path(cfg.out), stage_keys(cfg)
    st = Stages(out)
    world = out / "world"
    run_dir = out / "runs" / recipe.replace("+", "_") / f"seed{seed}"
    ucfg = from_dict(UnlearnConfig, {"recipe": recipe, "seed": seed, **cfg.unlearn_values(recipe)})
    ukey = {**keys["trained"], "unlearn": result_fields(ucfg), "code_unlearn": keys["unlearn_code"]}

    retain_res, target_res = load_results(out / "eval" / "retain"), load_results(out / "eval" / "target")
    # eval_every / stop / guard / select in the recipe's overrides: probe the world, the retain model the reference
    probe, reference = probe_for(ucfg, world, forget=cfg.forget, reference_eval=retain_res)

    def do_unlearn(d: Path):
        model, tok = load_model(out / "models" / "target", model_args=cfg.model_args)
        if probe is not None:
            probe.tokenizer = tok
        torch.manual_seed(seed)
        unlearn(model, tok, load_split(world, cfg.forget), load_split(world, cfg.retain), ucfg,
                refusals=load_refusals(world), out_dir=d, overwrite=True, progress=progress, probe=probe,
                reference=reference, after_probe=False)  # the evaluation below is the 'after' probe
        # a finished stage is reused whole, never resumed: its resume state (weights + AdamW, 1.6 GB on SmolLM2)
        # and the kept point's copy of model.safetensors only fill the disk (18 runs: ~38 GB), as in continual
        remove_entry(d / "checkpoints")

    st.run(run_dir / "model", ukey, do_unlearn)
    st.run(run_dir / "eval", {**ukey, **keys["eval"]},
           lambda d: eval_into(cfg, keys["eval_config"], run_dir / "model", d, retain_res, target_res, progress))
    record_eval_as_after(run_dir / "model", run_dir / "eval")
    attack_stages(cfg, st, run_dir, recipe, seed, {**ukey, **keys["eval"]}, ucfg, retain_res, progress)
    return st.timings


def record_eval_as_after(model_dir: Path, eval_dir: Path) -> None:
    """The unlearning run's 'after' forget probe, folded into its evaluation (one forget pass fewer per chain): the
    evaluation's forget split — the same items — gives its forget Prob (mean of exp(−mean NLL)) and mean log-prob
    (−mean NLL), written into the run's summary.json once (`unlearn.loop.record_after`)."""
    from obliviate.evaluate import load_results
    from obliviate.reader import read_json_object
    from obliviate.unlearn.loop import AFTER_PENDING, record_after

    if read_json_object(model_dir / "summary.json").get("after_from") != AFTER_PENDING:
        return  # recorded already, or a run that took its own probe
    forget = load_results(eval_dir)["splits"]["forget"]
    means = forget["means"]
    record_after(model_dir, means["prob_raw"], -means["nll_mean"],
                 f"../{eval_dir.name}/eval.json: forget split {forget['source']} (prob_raw, −nll_mean)")


def attack_config(cfg: DemoConfig, name: str, config_cls: type, ucfg, seed: int):
    """The config of attack `name` in a pipeline run: the run's shared settings (forget split, the attacker's k
    known forget items, the unlearning lr, generation length, seed, the run's cache of control-model evaluations),
    then the DemoConfig fields named
    `<name>_<field>` (e.g. `relearn_steps`, `jailbreak_tokens`), each kept only where `config_cls` has the field."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    size = None if cfg.base_model else cfg.model_size
    shared = {"forget": cfg.forget, "k": cfg.relearn_k, "lr": ucfg.hyperparams(size).lr,
              "max_new_tokens": cfg.max_new_tokens, "seed": seed, "eval_cache": str(Path(cfg.out) / "attack_cache")}
    own = {f.name[len(name) + 1:]: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
           if f.name.startswith(name + "_")}
    return config_cls(**{k: v for k, v in {**shared, **own}.items() if k in fields})


def attack_code(attack) -> str:
    """The code hash of an attack's stage: its declared modules (`Attack.code`), else the source file of its
    `run` (an attack defined outside the package included)."""
    import inspect

    if attack.code:
        return code_hash(*attack.code)
    source = Path(inspect.getsourcefile(attack.run))
    return code_hash(source.stem, root=source.parent)


def attack_stages(cfg: DemoConfig, st: Stages, run_dir: Path, recipe: str, seed: int, eval_key: dict, ucfg,
                  retain_res: dict, progress: bool) -> None:
    """Each attack of `cfg.attacks` (an `attack.registry.ATTACKS` record) on the unlearned model of `run_dir`, as
    the stage `run_dir/<attack>/`, keyed by the evaluated model's key, the attack's config and its code.

    An attack that runs from the evaluation's saved scores (`Attack.reuses_eval`, e.g. mia: no model pass) or is
    marked `every_model` (quantize, reformat) runs on every recipe; the others on `cfg.attacked(recipe)`. An attack's
    `pipeline_models` get the run's target / retain models (its controls). Every attack gets the model's own evaluation (its start)
    and the retain model's (Forget Quality, MIA's reference)."""
    from obliviate.attack.registry import ATTACKS
    from obliviate.evaluate import load_results

    world = Path(cfg.out) / "world"
    models = {"original": Path(cfg.out) / "models" / "target", "retain_model": Path(cfg.out) / "models" / "retain"}
    for name in cfg.attacks:
        attack = ATTACKS[name]
        if not (attack.reuses_eval or attack.every_model or cfg.attacked(recipe)):
            continue
        acfg = attack_config(cfg, name, attack.config, ucfg, seed)

        def do_attack(d: Path, attack=attack, acfg=acfg):
            load = _loader(cfg)
            attack.run(load(run_dir / "model"), world, acfg, d, start_results=load_results(run_dir / "eval"),
                       retain_results=retain_res, progress=progress,
                       **{ref: load(models[ref]) for ref in attack.pipeline_models})

        st.run(run_dir / name, {**eval_key, name: dataclasses.asdict(acfg), "code_attack": attack_code(attack)},
               do_attack)


def _loader(cfg: DemoConfig):
    """With --model-args, the attacks get (model, tokenizer) pairs loaded with them (as `obliviate attack` does);
    without, paths they load themselves."""
    if not cfg.model_args:
        return lambda path: path
    from obliviate.models.loading import load_model

    return lambda path: load_model(path, model_args=cfg.model_args)


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
    key = {**keys["eval"], "unlearn": result_fields(ucfg), "continual": dataclasses.asdict(ccfg),
           "code_unlearn": keys["unlearn_code"], "code_scenario": code_hash("scenarios")}

    def fn(d: Path):
        target = out / "models" / "target"
        model, tok = load_model(target, model_args=cfg.model_args)
        continual(model, tok, out / "world", ccfg, ucfg, out=d, eval_cfg=keys["eval_config"], model_name=str(target),
                  load_model=lambda path: load_model(path, model_args=cfg.model_args), progress=progress,
                  cache_dir=out / "continual" / "cache")

    st.run(out / "continual" / name / f"seed{seed}", key, fn)
    return st.timings
