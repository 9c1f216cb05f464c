"""`run_demo`: every stage of the pipeline in order (reusing finished ones), then the report card."""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from pathlib import Path

from obliviate.config import versions
from obliviate.pipeline.chains import chain_job, continual_job
from obliviate.pipeline.config import DemoConfig, relearn_k_for
from obliviate.pipeline.pool import by_cost, job_cost, quiet_transformers, run_jobs
from obliviate.pipeline.stages import eval_reference_models, stage_keys, train_job
from obliviate.rundir import run_dir, write_json
from obliviate.stagecache import Stages


def run_demo(cfg: DemoConfig, *, progress: bool = True) -> Path:
    """Run every stage (reusing finished ones) and write the report card; returns the report path.

    `cfg.out` is claimed and locked (`rundir.run_dir`): a second demo on the same directory is refused."""
    with run_dir(cfg.out) as out:
        return _run(cfg, out, progress)


class _Progress:
    """The one progress bar (a step per stage group or job); `done(name)` makes a job's on_done callback, which
    also collects the job's stage timings into `st`."""

    def __init__(self, st: Stages, total: int, progress: bool):
        from obliviate.rundir import progress_bar

        self.st, self.bar = st, progress_bar(total=total, desc="demo", progress=progress, unit="stage", leave=True)

    def done(self, name: str):
        def on_done(timings: dict | None = None):
            self.st.timings.update(timings or {})
            finished = sorted({str(Path(k).parent) for k in timings or {}})
            self.bar.set_postfix_str(name if len(finished) != 1 else f"{name}: {finished[0]}")
            self.bar.update(1)
        return on_done


def _run(cfg: DemoConfig, out: Path, progress: bool) -> Path:
    if progress:
        quiet_transformers()
    st, t_start = Stages(out), time.perf_counter()
    runs = [(recipe, seed) for recipe in cfg.recipes for seed in range(cfg.seeds)]
    continual_runs = [(spec, seed) for spec in cfg.continual for seed in range(cfg.continual_seeds)]
    bar = _Progress(st, 5 + len(runs) + len(continual_runs), progress)
    inline = progress and cfg.jobs <= 1  # inner progress bars only when stages run in this process
    cfg = _reference_stages(cfg, out, st, bar, progress, inline)
    # one pool, longest job first (LPT): no worker idles while the other finishes a long tail
    chained, continued = bar.done("unlearn, evaluate, attack"), bar.done("continual")
    jobs = [(job_cost(cfg, recipe=recipe), partial(chain_job, cfg, recipe, seed, inline), chained)
            for recipe, seed in runs]
    jobs += [(job_cost(cfg, continual=True), partial(continual_job, cfg, spec, seed, inline), continued)
             for spec, seed in continual_runs]
    run_jobs(by_cost(jobs), cfg.jobs)
    bar.bar.close()
    return _finish(cfg, out, st, t_start)


def _reference_stages(cfg: DemoConfig, out: Path, st: Stages, bar: _Progress, progress: bool,
                      inline: bool) -> DemoConfig:
    """The world, the base model, the target and retain models and their evaluations; returns `cfg` with
    `relearn_k` clamped to the world's forget split."""
    from obliviate.data.loading import load_split
    from obliviate.data.world import write_world
    from obliviate.models.init import init_model

    keys, world = stage_keys(cfg), out / "world"
    st.run(world, keys["base"], lambda d: write_world(d, cfg.preset, cfg.world_seed))
    bar.done("world")()
    cfg = dataclasses.replace(cfg, relearn_k=relearn_k_for(cfg, len(load_split(world, cfg.forget))))
    if not cfg.base_model:  # a pretrained base is loaded as it is (never copied into the run)
        st.run(out / "models" / "base", keys["model"],
               lambda d: init_model(cfg.model_size, world, d, seed=cfg.world_seed))
    bar.done("base model")()
    trained = bar.done("target & retain models")
    run_jobs([(partial(train_job, cfg, "target", "full+world_facts", inline), trained),
              (partial(train_job, cfg, "retain", f"{cfg.retain}+world_facts", inline), trained)], cfg.jobs)
    st.run(out / "eval", keys["eval"], lambda d: eval_reference_models(cfg, d, progress))
    bar.done("evaluate target & retain")()
    return cfg


def _finish(cfg: DemoConfig, out: Path, st: Stages, t_start: float) -> Path:
    """demo.json (resolved config, versions, stage timings, the retain model against itself) and the report card."""
    from obliviate.evaluate import aggregate, load_results
    from obliviate.report.card import write_report

    # the retain model against itself: Forget Quality p = 1 by construction (a sanity row in the report)
    retain_res = load_results(out / "eval" / "retain")
    self_agg, _ = aggregate(retain_res, retain_res)
    info = {"config": dataclasses.asdict(cfg), "versions": versions(), "timings": st.timings,
            "wall_seconds": time.perf_counter() - t_start, "retain_vs_itself": {
                "forget_quality": self_agg.get("forget_quality")}}
    write_json(out / "demo.json", info, indent=1)
    return write_report(out)
