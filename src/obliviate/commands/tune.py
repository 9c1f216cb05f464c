"""obliviate tune --model models/target --data data/demo --recipe npo+gd --out runs/tune_npo_gd [--space lr=1e-5..1e-2:log]
[--objective 'min forget_prob subject to retain_prob >= 0.9 * start'] [--n-trials 20] [key=value ...]

A recipe's operating point found by Optuna (pipeline.tune): every trial is an unlearn run directory under
out/trials/, pruned by the in-training probe; out/ receives study.db (a rerun continues the study), tune.json,
best.yaml (for `obliviate unlearn --config`), front.png and report.html / report.md.
"""

from obliviate.commands.flags import add_original_model, checked
from obliviate.data.benchmarks import BENCHMARKS
from obliviate.models.hub import add_model_arguments
from obliviate.pipeline.tune import PRUNERS


def add_arguments(p):
    p.add_argument("--model", required=True, help="model to unlearn (directory, hub id, or smollm2-135m-instruct)")
    p.add_argument("--data", default=None, help="world directory, local JSON/JSONL file or hub id (as for unlearn)")
    p.add_argument("--benchmark", default=None, choices=list(BENCHMARKS), help="benchmark record (default: inferred)")
    p.add_argument("--forget", default=None, help="forget split(s) (default: forget10 / the benchmark's)")
    p.add_argument("--retain", default=None, help="retain split(s) (default: retain90 / the benchmark's)")
    p.add_argument("--recipe", default=None, help="the recipe to tune, e.g. npo+gd (one recipe per study)")
    p.add_argument("--out", required=True, help="run directory: study.db, tune.json, best.yaml, trials/, report")
    p.add_argument("--config", help="YAML with the UnlearnConfig fields every trial shares")
    p.add_argument("--space", action="append", default=None, metavar="KEY=RANGE|FILE",
                   help="searched field: key=low..high, key=low..high:log, key=a|b|c, or a YAML file of key: range "
                        "(repeatable; default: lr (log), epochs and the recipe's beta / lambda / rho)")
    p.add_argument("--objective", default=None, help="'min|max <metric expr> [subject to <rule>]' or 'pareto max "
                   "<metric>, max <metric>' over the probe's metrics (default: 'min forget_prob subject to "
                   "retain_prob >= 0.9 * start')")
    p.add_argument("--n-trials", type=int, default=None, help="trials this invocation adds (default 20)")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    p.add_argument("--n-jobs", type=int, default=None, help="trials at once, as threads (default 1; > 1: results depend on thread timing, not only on --seed)")
    p.add_argument("--pruner", default=None, choices=PRUNERS,
                   help="prune on the in-training probe (default median; none for a pareto objective)")
    p.add_argument("--storage", default=None, help="Optuna storage: an RDB URL (sqlite:///x.db, postgresql://...) or "
                   "journal:<file> (default: sqlite:///<out>/study.db)")
    p.add_argument("--study-name", default=None, help="study name in the storage (default tune-<recipe>)")
    p.add_argument("--seed", type=int, default=None, help="seed of the sampler and of every trial's unlearning")
    p.add_argument("--keep-models", default=None, choices=("front", "all"),
                   help="keep the weights of the best (front) trials only (default) or of all trials")
    p.add_argument("--reference-eval", default=None, help="eval.json of a retain / holdout model: the values of "
                   "retain:<metric> in the objective and rules")
    add_original_model(p, "the reference of npo/dpo/kl/rmu/undial (as for unlearn)", dest="ref_model",
                       old=("--ref-model",))
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickle checkpoints (trusted files only)")
    p.add_argument("--trust-remote-code", action="store_true")
    add_model_arguments(p)
    p.add_argument("overrides", nargs="*", help="UnlearnConfig values every trial shares (e.g. eval_every=epoch "
                   "batch_size=4) and TuneConfig values (e.g. pruner_startup_trials=3)")


def resolve_config(args) -> dict:
    """{"tune": TuneConfig, "unlearn": the UnlearnConfig every trial shares} of a `tune` command line: defaults
    < --config YAML (UnlearnConfig fields) < key=value (each to the config that has the key) < flags."""
    from obliviate.config import load_config
    from obliviate.pipeline.tune import TuneConfig
    from obliviate.unlearn import UnlearnConfig

    tune_keys = {f for f in TuneConfig.__dataclass_fields__}
    own = [o for o in args.overrides if o.partition("=")[0].strip() in tune_keys]
    tcfg = load_config(TuneConfig, None, own, space=args.space, **checked(
        own, objective=args.objective, n_trials=args.n_trials, timeout=args.timeout, n_jobs=args.n_jobs,
        pruner=args.pruner, storage=args.storage, study_name=args.study_name, seed=args.seed,
        keep_models=args.keep_models))
    rest = [o for o in args.overrides if o not in own]
    ucfg = load_config(UnlearnConfig, args.config, rest, recipe=args.recipe, **checked(
        rest, seed=args.seed, reference="original" if args.ref_model else None))
    return {"tune": tcfg, "unlearn": ucfg}


def run(args):
    from obliviate import ObliviateError

    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise ObliviateError("tune needs Optuna: pip install 'obliviate[tune]' (or pip install optuna)")
    from obliviate.pipeline.tune import run_tune
    from obliviate.report.card import write_report
    from obliviate.rundir import run_dir

    tcfg, ucfg = resolve_config(args).values()
    with run_dir(args.out, args.model) as out:
        inputs, ucfg, space, objective = tune_inputs(tcfg, ucfg, args)
        s = run_tune(tcfg, ucfg, space, objective, inputs, out)
        report = write_report(out)
    c = s["counts"]
    best = s["best"][0] if s["best"] else None
    print(f"tune {ucfg.recipe}: {s['trials_this_run']} trial(s) in {s['seconds_this_run']:.0f} s; study "
          f"{s['study']!r} now has {len(s['trials'])} ({c['complete']} completed, {c['pruned']} pruned, "
          f"{c['fail']} failed)")
    print(f"best trial {best['number']}: {best['params']} -> {best['values']}; {out / 'best.yaml'}" if best else
          "no completed trial satisfies the objective yet: no best.yaml")
    print(f"report card: {report}")
    return {"out": str(out), "recipe": ucfg.recipe, "trials_this_run": s["trials_this_run"],
            "trials": len(s["trials"]), "counts": c, "best": best,
            "outputs": {"tune": str(out / "tune.json"), "report": str(report),
                        **({"best": str(out / "best.yaml")} if best else {})}}


def tune_inputs(tcfg, ucfg, args):
    """(TuneInputs, the UnlearnConfig every trial shares, the space, the objective): the data, the probe and its
    start / reference values; every name checked before any trial."""
    import dataclasses

    from obliviate import ObliviateError
    from obliviate.commands.unlearn import unlearn_records
    from obliviate.data.benchmarks import resolve_benchmark
    from obliviate.evaluate.probes import probe_for
    from obliviate.models.loading import load_model, model_size_name
    from obliviate.pipeline.tune import TuneInputs
    from obliviate.pipeline.tunespace import default_space, parse_objective, parse_space

    space = parse_space(tcfg.space or [])
    if ucfg.eval_every is None:  # the pruner needs intermediate values
        ucfg = dataclasses.replace(ucfg, eval_every="epoch")
        print("eval_every=epoch: the probe runs after every epoch of each trial (feeds the pruner)")
    bench, said = resolve_benchmark(args.benchmark, args.data)
    print(said)
    forget_split, _, forget, retain, refusals = unlearn_records(args, ucfg, bench)
    # every metric the data gives, for the objective, before the model loads
    full, _ = probe_for(dataclasses.replace(ucfg, probe_metrics="all"), args.data, benchmark=bench,
                        forget=forget_split)
    objective = parse_objective(tcfg.objective, full.names)
    if len(objective.parts) == 1 and ucfg.keep == "last" and ucfg.select is None:
        try:  # each trial at its best point (not with smoothing=wa: UnlearnConfig says why)
            ucfg = dataclasses.replace(ucfg, keep="best", select=objective.text)
            print(f"keep=best select={objective.text!r}: each trial keeps its best point under the objective")
        except ObliviateError:
            pass
    # the probe scores probe_metrics, the rules' metrics and the objective's
    probe, reference = probe_for(ucfg, roles=full.roles, reference_eval=args.reference_eval,
                                 metrics=tuple(sorted(set().union(*(p.metrics() for p in objective.parts)))))
    if reference is None and objective.reads_reference():
        raise ObliviateError(f"objective {objective.text!r} reads retain:<metric> values: give --reference-eval "
                             "(the retain model's eval.json)")
    load = dict(allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code, model_args=args.model_args)
    model, tok = load_model(args.model, **load)
    probe.tokenizer = tok
    space = space or default_space(ucfg, model_size_name(model))
    inputs = TuneInputs(model=args.model, forget=forget, retain=retain, probe=probe, refusals=refusals,
                        ref_model=args.ref_model, load=load, start=probe(model), reference=reference)
    return inputs, ucfg, space, objective

