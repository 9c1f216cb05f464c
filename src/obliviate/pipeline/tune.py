"""`obliviate tune`: a recipe's operating point found by Optuna (the search itself is Optuna's, not ours).

    study = run_tune(TuneConfig(n_trials=20), UnlearnConfig(recipe="npo+gd", eval_every="epoch"), inputs, "runs/tune")

Each trial is a normal `unlearn` run directory (`out/trials/trial-NNNN/`: model, run.json, log.jsonl,
trajectory.jsonl) with the trial's values of the search space (`tunespace`). The in-training probe feeds the
pruner: after each evaluation point `on_probe` reports to the trial (`trial.report`) the best objective value among
the points so far where the objective's `subject to` rule holds (what keep=best would keep; a point breaking the
constraint does not count), and raises `optuna.TrialPruned` when the pruner says so, which ends that unlearning
run. A trial's result is the probe's metrics of the model the run kept: with a single objective and no keep /
select of the user's, `obliviate tune` sets keep=best and select=<the objective>, so each trial is scored at its
best point along the way. The objective (`tunespace.Objective`) turns the metrics into the value(s) Optuna
optimises and, with `subject to`, a constraint (infeasible trials are never the best).

The study lives in `storage`: by default `sqlite:///<out>/study.db`, so running the same command again continues
the study (more trials, the sampler seeded by seed + trials so far: deterministic); any Optuna RDB URL
(postgresql://, mysql://) or `journal:<file>` (a JournalStorage file, for workers sharing a file system) lets
several `obliviate tune` processes on several machines work on one study. `n_jobs` > 1 runs trials in threads of
this process: TPE samples from whichever trials have finished and the pruner compares with them, so the results
depend on thread timing, not only on the seed (a one-line warning says so; tune.json: `seed_determined`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from obliviate import ObliviateError
from obliviate.config import MAX_SEED, check_ranges
from obliviate.pipeline.tunespace import Objective, Param, suggest, trial_config
from obliviate.rundir import write_json
from obliviate.unlearn import UnlearnConfig

PRUNERS = ("median", "hyperband", "none")
_LOADING = threading.Lock()  # n_jobs > 1: transformers' model loading is not thread-safe (meta-device init)


@dataclass
class TuneConfig:
    objective: str = "min forget_prob subject to retain_prob >= 0.9 * start"
    space: list[str] = field(default_factory=list)  # key=low..high[:log] | key=a|b|c | YAML files; empty: defaults
    n_trials: int | None = 20  # trials this invocation adds (None: until timeout)
    timeout: float | None = None  # seconds this invocation may start trials for
    n_jobs: int = 1  # trials at once (threads)
    pruner: str | None = None  # median | hyperband | none (None: median, or none for a pareto objective)
    pruner_startup_trials: int = 5  # trials that finish before the median pruner prunes any
    storage: str | None = None  # Optuna storage URL or journal:<file> (None: sqlite:///<out>/study.db)
    study_name: str | None = None  # None: tune-<recipe>
    seed: int = 0  # the sampler's (TPESampler) and the importance evaluator's seed
    keep_models: str = "front"  # front: weights only of the best / Pareto-front trials; all: every trial's

    RANGES: ClassVar[dict[str, str]] = {
        "n_trials": "[1, 1000000]", "timeout": "(0, 1e9]", "n_jobs": "[1, 1024]",
        "pruner_startup_trials": "[0, 1000000]", "seed": f"[0, {MAX_SEED}]",
    }

    def __post_init__(self):
        check_ranges(self)
        if self.pruner is not None and self.pruner not in PRUNERS:
            raise ObliviateError(f"pruner {self.pruner!r}: choose one of {', '.join(PRUNERS)}")
        if self.keep_models not in ("front", "all"):
            raise ObliviateError(f"keep_models {self.keep_models!r}: choose front or all")
        if self.n_trials is None and self.timeout is None:
            raise ObliviateError("give n_trials or timeout: a study needs an end")


@dataclass
class TuneInputs:
    """What every trial shares: the model to unlearn (a path), the data, the probe and its fixed values."""

    model: str
    forget: list[dict]
    retain: list[dict] | None
    probe: Callable[[Any], dict]  # evaluate.probes' Probe: probe(model) -> {metric: value}, `.names`
    refusals: list[str] | None = None
    ref_model: str | None = None
    load: dict = field(default_factory=dict)  # load_model keyword arguments (allow_pickle, trust_remote_code)
    start: dict | None = None  # the probe's metrics of the starting model (`start` in rules)
    reference: dict | None = None  # the reference model's metrics (`retain:` in rules)


def storage_for(url: str | None, out: Path):
    """An Optuna storage: the default SQLite file in `out`, an RDB URL, or `journal:<file>`."""
    import optuna

    if url is None:
        return f"sqlite:///{(out / 'study.db').resolve()}"
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:"):]
        if not path:
            raise ObliviateError("storage 'journal:': give a file, journal:/path/to/study.log")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if "://" not in url:
        raise ObliviateError(f"storage {url!r}: give an Optuna RDB URL (sqlite:///file.db, postgresql://..., "
                             "mysql://...) or journal:<file>")
    return url


def pruner_for(tcfg: TuneConfig, objective: Objective):
    """Optuna's pruner of `tcfg.pruner`; a multi-objective study cannot prune (Optuna reports one value)."""
    import optuna

    name = tcfg.pruner or ("median" if len(objective.parts) == 1 else "none")
    if name != "none" and len(objective.parts) > 1:
        raise ObliviateError(f"pruner {name}: a pareto objective has several values per step and Optuna prunes on "
                             "one; use --pruner none or a single objective")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tcfg.pruner_startup_trials, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def open_study(tcfg: TuneConfig, objective: Objective, recipe: str, out: Path):
    """Create or continue the study (same name in the same storage = the same study)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress display instead
    name = tcfg.study_name or f"tune-{recipe}"
    storage = storage_for(tcfg.storage, out)
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=objective.directions,
                                    pruner=pruner_for(tcfg, objective), load_if_exists=True)
    except ValueError as e:  # e.g. the stored study optimises other directions
        raise ObliviateError(f"study {name!r} in {tcfg.storage or storage}: {e}") from None
    if [d.name.lower() for d in study.directions] != objective.directions:
        raise ObliviateError(f"study {name!r} already optimises {[d.name.lower() for d in study.directions]}, "
                             f"not {objective.directions} ({objective.text!r}); choose another --study-name")
    # Optuna >= 5 takes the constraint from the trial (Trial.set_constraint), Optuna 4 from constraints_func
    old = objective.constraint is not None and not hasattr(optuna.trial.Trial, "set_constraint")
    study.sampler = optuna.samplers.TPESampler(seed=tcfg.seed + len(study.trials),
                                               constraints_func=_violation if old else None)
    return study


def _violation(trial) -> list[float]:
    """Optuna's constraint value: <= 0 feasible (the objective's `subject to` rule held at the kept point)."""
    return [float(trial.user_attrs.get("violation", 1.0))]


def _constrain(trial, objective: Objective, metrics: dict, inputs: TuneInputs) -> bool:
    """Record whether the objective's constraint holds at `metrics` (user attr `violation`: 0 or 1)."""
    feasible = objective.feasible(metrics, inputs.start, inputs.reference)
    trial.set_user_attr("violation", 0.0 if feasible else 1.0)
    if objective.constraint is not None and hasattr(trial, "set_constraint"):
        trial.set_constraint("subject_to", 0.0 if feasible else 1.0)
    return feasible


def run_trial(trial, ucfg: UnlearnConfig, space: dict[str, Param], objective: Objective, inputs: TuneInputs,
              out: Path, prunes: bool) -> list[float] | float:
    """One trial: an unlearn run with the trial's values, pruned through on_probe, scored on the kept model."""
    import optuna

    from obliviate.models.loading import load_model
    from obliviate.unlearn import unlearn

    values = suggest(trial, space)
    cfg = trial_config(ucfg, values)
    run = out / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run.relative_to(out)))
    with _LOADING:
        model, tok = load_model(inputs.model, **inputs.load)
        ref = load_model(inputs.ref_model, with_tokenizer=False, **inputs.load) if inputs.ref_model else None
    started = time.perf_counter()

    best: list[float] = []  # the best score among the feasible points so far: what keep=best would keep

    def on_probe(record: dict) -> None:
        metrics = record["metrics"]
        value = objective.values(metrics, inputs.start, inputs.reference)[0]
        if not math.isnan(value) and objective.feasible(metrics, inputs.start, inputs.reference) and \
                (not best or objective.parts[0].better(value, best[-1])):
            best.append(value)
        if not prunes or not best:
            return
        trial.report(best[-1], int(record["step"]))
        if trial.should_prune():
            trial.set_user_attr("pruned_step", int(record["step"]))
            trial.set_user_attr("metrics", metrics)
            trial.set_user_attr("seconds", time.perf_counter() - started)
            _write_trial(run, trial.number, "pruned", values, metrics, _constrain(trial, objective, metrics, inputs))
            raise optuna.TrialPruned(f"pruned at step {record['step']}")

    model, log = unlearn(model, tok, inputs.forget, inputs.retain, cfg, refusals=inputs.refusals, out_dir=run,
                         overwrite=True, ref_model=ref, progress=False, probe=inputs.probe, on_probe=on_probe,
                         reference=inputs.reference)
    kept = log.summary["trajectory"]  # the kept point (keep=last|best) and why the run ended
    metrics = kept["kept_metrics"]
    trial.set_user_attr("kept_step", kept["kept_step"])
    trial.set_user_attr("ended", kept["ended"])
    feasible = _constrain(trial, objective, metrics, inputs)
    trial.set_user_attr("metrics", metrics)
    trial.set_user_attr("seconds", time.perf_counter() - started)
    _write_trial(run, trial.number, "complete", values, metrics, feasible)
    result = objective.values(metrics, inputs.start, inputs.reference)
    return result[0] if len(result) == 1 else result


def _write_trial(run: Path, number: int, state: str, values: dict, metrics: dict, feasible: bool | None = None):
    write_json(run / "trial.json", {"trial": number, "state": state, "params": values, "metrics": metrics,
                                    "feasible": feasible})


def run_tune(tcfg: TuneConfig, ucfg: UnlearnConfig, space: dict[str, Param], objective: Objective,
             inputs: TuneInputs, out: str | Path) -> dict:
    """Add `tcfg.n_trials` trials (or until `tcfg.timeout`) to the study in `out`; write tune.json, best.yaml and
    run.json there and return the summary (`summarize`)."""
    import optuna

    from obliviate.config import write_run_info
    from obliviate.rundir import progress_bar

    out = Path(out)
    warn_parallel(tcfg)
    study = open_study(tcfg, objective, ucfg.recipe, out)
    prunes = not isinstance(study.pruner, optuna.pruners.NopPruner)
    ran = []
    bar = progress_bar(total=tcfg.n_trials, desc=f"tune {ucfg.recipe}", unit="trial", leave=True)

    def progress(study, trial) -> None:
        ran.append(trial.number)
        bar.update(1)
        shown = {k: f"{v:.3g}" if isinstance(v, float) else v for k, v in trial.params.items()}
        tail = f"pruned at step {trial.user_attrs.get('pruned_step')}" if trial.state.name == "PRUNED" else \
            f"value {trial.values}" if trial.values else trial.state.name.lower()
        bar.write(f"trial {trial.number}: {shown} -> {tail}")

    started = time.perf_counter()
    study.optimize(lambda t: run_trial(t, ucfg, space, objective, inputs, out, prunes), n_trials=tcfg.n_trials,
                   timeout=tcfg.timeout, n_jobs=tcfg.n_jobs, callbacks=[progress], catch=(),
                   show_progress_bar=False)
    bar.close()
    summary = summarize(study, objective, tcfg.seed)
    summary.update({"study": study.study_name, "storage": _shown_storage(tcfg.storage, out),
                    "objective": objective.text, "directions": objective.directions,
                    "space": {k: p.describe() for k, p in space.items()}, "axes": objective.axes(),
                    "start": inputs.start, "reference": inputs.reference, "recipe": ucfg.recipe,
                    "trials_this_run": len(ran), "seed_determined": tcfg.n_jobs == 1,
                    "seconds_this_run": time.perf_counter() - started})
    write_json(out / "tune.json", summary)
    write_best(out, summary["best"], ucfg, objective, study.study_name, inputs.model)
    if tcfg.keep_models == "front":
        drop_weights(out, summary)
    write_run_info(out, tcfg, seed=tcfg.seed, extra={"unlearn": dataclasses.asdict(ucfg)})
    return summary


PARALLEL_WARNING = ("--n-jobs > 1: trials run in parallel threads; results depend on timing, not only on the seed "
                    "(use --n-jobs 1 for a reproducible study)")


def warn_parallel(tcfg: TuneConfig) -> bool:
    """Warn (one line) when trials run in threads: TPE samples from whichever trials have finished and the
    pruner compares with them, so the proposals depend on thread timing. Whether the study is seed-determined."""
    if tcfg.n_jobs > 1:
        warnings.warn(PARALLEL_WARNING, stacklevel=2)
    return tcfg.n_jobs == 1


def write_best(out: Path, best: list[dict], ucfg: UnlearnConfig, objective: Objective, study: str, model: str):
    """best.yaml (the best trial, or the first of the Pareto front) and, for a pareto objective, front/trial-N.yaml
    per front trial: configs `obliviate unlearn --config` takes."""
    from obliviate.pipeline.tunespace import recipe_yaml
    from obliviate.rundir import write_text

    for i, trial in enumerate(best):
        name = "best.yaml" if i == 0 else f"front/trial-{trial['number']:04d}.yaml"
        header = (f"# obliviate unlearn --model {model} --config {name} --out runs/trial{trial['number']}\n"
                  f"# trial {trial['number']} of study {study!r} ({objective.text}): {trial['values']}\n")
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        write_text(out / name, recipe_yaml(trial_config(ucfg, trial["params"]), trial["params"], header))
        if i == 0 and len(best) > 1:
            write_text(out / "front" / f"trial-{trial['number']:04d}.yaml", (out / name).read_text())


def _shown_storage(url: str | None, out: Path) -> str:
    """The storage as recorded: the default file, or the URL without a password."""
    import re

    return f"sqlite:///{out / 'study.db'}" if url is None else re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def summarize(study, objective: Objective, seed: int) -> dict:
    """Every trial (state, params, metrics, values), the best (or Pareto-front) trials, and the importances."""
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name.lower(), "params": t.params, "values": t.values,
                     "metrics": t.user_attrs.get("metrics"), "feasible": t.user_attrs.get("violation", 1.0) <= 0
                     if t.state.name == "COMPLETE" else None, "pruned_step": t.user_attrs.get("pruned_step"),
                     "kept_step": t.user_attrs.get("kept_step"), "ended": t.user_attrs.get("ended"),
                     "seconds": t.user_attrs.get("seconds"), "run_dir": t.user_attrs.get("run_dir")})
    done = [r for r in rows if r["state"] == "complete" and r["feasible"] and r["values"]
            and not any(math.isnan(v) for v in r["values"])]
    if len(objective.parts) == 1:
        sign = 1 if objective.directions[0] == "maximize" else -1
        best = sorted(done, key=lambda r: (-sign * r["values"][0], r["number"]))[:1]
    else:
        front = {t.number for t in study.best_trials}
        best = [r for r in done if r["number"] in front]
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail", "running")}
    return {"trials": rows, "best": best, "counts": counts, "importances": importances(study, objective, seed)}


def importances(study, objective: Objective, seed: int) -> dict:
    """optuna.importance (fANOVA, seeded) per objective, or {"not_computed": reason}."""
    import optuna

    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    varied = [n for n in {k for t in done for k in t.params} if len({t.params.get(n) for t in done}) > 1]
    if len(done) < 3 or not varied:
        return {"not_computed": f"{len(done)} completed trial(s) varying {len(varied)} parameter(s); importances "
                                "need at least 3 completed trials that vary a parameter"}
    out = {}
    for i, part in enumerate(objective.parts):
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        try:
            out[part.text] = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=lambda t, i=i: t.values[i])
        except (RuntimeError, ValueError) as e:
            return {"not_computed": f"optuna.importance: {e}"}
    return out


def drop_weights(out: Path, summary: dict) -> None:
    """Delete the model weights and checkpoints of trials not in `summary['best']` (their run.json, logs,
    trajectory and trial.json stay; best.yaml reruns a trial)."""
    import shutil

    keep = {r["run_dir"] for r in summary["best"]}
    for r in summary["trials"]:
        run = out / (r["run_dir"] or "")
        if r["run_dir"] and r["run_dir"] not in keep and run.is_dir():
            for f in run.glob("*.safetensors"):
                f.unlink()
            shutil.rmtree(run / "checkpoints", ignore_errors=True)
