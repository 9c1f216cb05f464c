"""obliviate unlearn --model models/target --data data/demo --forget forget10 --retain retain90 --recipe npo+gd --out runs/npo_gd [key=value ...]"""

import contextlib
from pathlib import Path

from obliviate.commands.flags import add_lora, add_original_model, checked
from obliviate.config import load_config
from obliviate.data.benchmarks import BENCHMARKS, resolve_benchmark, training_records
from obliviate.data.loading import load_refusals
from obliviate.evaluate.probes import probe_for
from obliviate.models.hub import add_model_arguments
from obliviate.models.loading import check_output_dir, load_model
from obliviate.rundir import is_main_rank, run_dir, write_json
from obliviate.unlearn import UnlearnConfig, unlearn
from obliviate.unlearn.checkpoint import checkpoints_root
from obliviate.unlearn.loop import recipe_needs
from obliviate.reader import read_json_object


def add_arguments(p):
    p.add_argument("--model", required=True,
                   help="model directory, PEFT adapter directory, hub id, or smollm2-135m-instruct")
    p.add_argument("--data", default=None, help="world directory, local JSON/JSONL file, hub id (locuslab/TOFU), or a "
                   "local mirror of a benchmark's hub repository (default with --benchmark: its hub ids)")
    p.add_argument("--benchmark", default=None, choices=list(BENCHMARKS),
                   help="benchmark record giving the forget/retain sets (default: inferred from --data)")
    p.add_argument("--forget", default=None, help="forget split(s), '+'-joined (default: forget10; other benchmarks: "
                   "their forget_train role, or a config/split such as raw/forget)")
    p.add_argument("--retain", default=None, help="retain split(s) for the regulariser (default: retain90; other "
                   "benchmarks: their retain_train role)")
    p.add_argument("--recipe", default=None, help="objective[+regularizer][+smoothing], e.g. npo+gd+sam (see `obliviate ls`)")
    p.add_argument("--out", required=True, help="run directory: model, run.json, log.jsonl, summary.json, checkpoints/")
    p.add_argument("--config", help="YAML file with UnlearnConfig fields")
    p.add_argument("--seed", type=int, default=None)
    add_lora(p, "train a LoRA adapter (peft), merged at the end")
    p.add_argument("--max-memory", type=float, default=None, metavar="GIB",
                   help="peak memory the run may use on CPU, for micro_batch=auto (default: half of what is available)")
    add_original_model(p, "the reference of npo/dpo/kl/rmu/undial", dest="ref_model", old=("--ref-model",))
    p.add_argument("--reference-eval", default=None, metavar="EVAL_JSON",
                   help="a retain or holdout model's eval.json: the retain:<metric> values of stop/guard/select rules")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickle checkpoints (trusted files only)")
    p.add_argument("--trust-remote-code", action="store_true")
    add_model_arguments(p)
    p.add_argument("overrides", nargs="*", help="UnlearnConfig overrides, e.g. lr=1e-3 npo_beta=0.2 smoothing=sam; "
                   "evaluation during training: eval_every=epoch stop='forget_prob <= 0.30' "
                   "guard='retain_prob >= 0.9 * start' keep=best select='min forget_prob' (docs/unlearning.md); tracking: "
                   "log_with=tensorboard|wandb|trackio|mlflow tracker_dir=DIR (default: OUT/trackers)")


def resolve_config(args) -> UnlearnConfig:
    """The UnlearnConfig of an `unlearn` command line: defaults < --config YAML < key=value < flags."""
    return load_config(UnlearnConfig, args.config, args.overrides, recipe=args.recipe, **checked(
        args.overrides, seed=args.seed, lora=args.lora,
        reference="original" if args.ref_model else None, max_memory=args.max_memory))


def run(args):
    cfg = resolve_config(args)
    bench, said = resolve_benchmark(args.benchmark, args.data)
    if is_main_rank():
        print(said)
    # `accelerate launch` (torchrun sets RANK): the main process claims, locks and writes the run directory
    out = Path(args.out)
    with run_dir(out, args.model, args.ref_model) if is_main_rank() else contextlib.nullcontext():
        check_output_dir(out, args.model, args.ref_model, overwrite=args.overwrite)
        checkpoints_root(out)  # a planted `checkpoints` symlink is refused before any training
        return _run(args, cfg, out, bench)


def unlearn_records(args, cfg, bench) -> tuple[str | None, str | None, list, list | None, list | None]:
    """(forget split, retain split, forget records, retain records, refusals) of the --data/--forget/--retain
    flags: what the recipe needs (also `obliviate tune`'s)."""
    forget_split = args.forget or bench.train_splits.get("forget_train")
    retain_split = args.retain or bench.train_splits.get("retain_train")
    forget, _ = training_records(bench, args.data, "forget_train", forget_split)
    needs = recipe_needs(cfg)  # a missing retain set: training_records says so, before any model is loaded
    retain = training_records(bench, args.data, "retain_train", retain_split)[0] \
        if needs & {"retain", "retain_alternate"} else None
    refusals = load_refusals(args.data) if needs & {"alternate", "retain_alternate"} else None
    return forget_split, retain_split, forget, retain, refusals


def _run(args, cfg, out: Path, bench):
    forget_split, retain_split, forget, retain, refusals = unlearn_records(args, cfg, bench)
    # the probe's sample and the rules' metric names, checked before the model is loaded
    probe, reference = probe_for(cfg, args.data, benchmark=bench, forget=forget_split,
                                 reference_eval=args.reference_eval)
    load = dict(allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
                model_args=args.model_args)
    model, tok = load_model(args.model, **load)
    if probe is not None:
        probe.tokenizer = tok
    ref = load_model(args.ref_model, with_tokenizer=False, **load) if args.ref_model else None
    model, log = unlearn(model, tok, forget, retain, cfg, refusals=refusals, out_dir=out, resume=args.resume,
                         overwrite=args.overwrite, ref_model=ref, probe=probe, reference=reference)
    if not is_main_rank():  # `accelerate launch`: the main process reports
        return
    meta = out / "obliviate.json"
    info = read_json_object(meta) if meta.is_file() else {}
    info.update({"unlearned_from": str(args.model), "data": str(args.data if args.data else bench.hub_id),
                 "benchmark": bench.name, "forget": forget_split or "forget_train",
                 "retain": (retain_split or "retain_train") if retain is not None else None})
    write_json(meta, info)
    s = log.summary
    summary = {"out": str(out), "recipe": cfg.recipe, "steps": s["steps"], "seconds": s["seconds"],
               "forget_prob_before": s["forget_prob_before"], "forget_prob_after": s["forget_prob_after"],
               "outputs": {"model": str(out), "summary": str(out / "summary.json"), "log": str(out / "log.jsonl"),
                           "run": str(out / "run.json")}}
    print(f"unlearned {cfg.recipe}: {s['steps']} steps in {s['seconds']:.1f}s; forget answer probability "
          f"{s['forget_prob_before']:.3f} -> {s['forget_prob_after']:.3f}; saved to {Path(out)}")
    if s.get("trajectory"):
        t = s["trajectory"]
        print(f"evaluation during training: {t['points']} points, probe {t['probe_seconds']:.1f}s vs training "
              f"{t['train_seconds']:.1f}s; trajectory in {Path(out) / 'trajectory.jsonl'}")
        summary["outputs"]["trajectory"] = str(out / "trajectory.jsonl")
    return summary
