"""obliviate eval --model runs/unlearned --data data/demo --forget forget10 [--retain-model runs/retain]
[--original-model runs/target] [--nli MODEL] [--harness lm-eval --tasks wmdp_bio,mmlu [--harness-data DIR]]
[--out DIR] [key=value ...]

Writes `<out>/eval.json` (layout: obliviate/evaluate/suite.py) and prints a short table. `--retain-model`
/ `--original-model` are evaluated first into `<out>/retain/` and `<out>/before/` (cached: re-runs skip
finished work); `--retain-results` / `--original-results` reuse a saved eval.json instead (`--before-model` and
`--before-results` are deprecated spellings).
"""

import contextlib
import dataclasses
import time
from pathlib import Path

from obliviate import ObliviateError
from obliviate.commands.flags import add_original_model, checked, renamed
from obliviate.config import load_config
from obliviate.data.benchmarks import BENCHMARKS, resolve_benchmark
from obliviate.models.hub import add_model_arguments
from obliviate.rundir import is_main_rank, run_dir


def add_arguments(p):
    p.add_argument("--model", required=True,
                   help="model directory, PEFT adapter directory, hub id, or smollm2-135m-instruct")
    p.add_argument("--data", default=None, help="world directory, local JSON/JSONL file, hub id (locuslab/TOFU), or a "
                   "local mirror of a benchmark's hub repository (default with --benchmark: its hub ids)")
    p.add_argument("--benchmark", default=None, choices=list(BENCHMARKS),
                   help="which roles and metrics to evaluate (default: inferred from --data, and said)")
    p.add_argument("--forget", default=None, help="TOFU/world forget split (default forget10; its _perturbed twin "
                   "is used)")
    p.add_argument("--out", default=None, help="output directory (default: <model>/eval)")
    p.add_argument("--retain-model", default=None, help="retain model: Forget Quality and PrivLeak reference")
    p.add_argument("--retain-results", default=None, help="saved eval.json of the retain model (instead)")
    add_original_model(p, "the Cosine Similarity reference", dest="before_model", old=("--before-model",))
    p.add_argument("--original-results", dest="before_results", default=None,
                   help="saved eval.json of the model before unlearning (instead)")
    renamed(p, "--before-results", "--original-results", "before_results")
    p.add_argument("--nli", default=None, help="NLI model id/path for the Entailment Score")
    p.add_argument("--harness", default=None, choices=["lm-eval"], help="also run lm-evaluation-harness's own task "
                   "definitions on the model (pip install 'obliviate[harness]'); results in eval.json `harness`")
    p.add_argument("--tasks", default=None, help="lm-eval tasks / groups, comma-separated, e.g. wmdp_bio,mmlu")
    p.add_argument("--harness-data", default=None, help="local copies of the tasks' hub datasets, "
                   "DIR/<owner>/<name>/<config>/<split>.jsonl (default data/hub), e.g. data/hub/cais/wmdp/wmdp-bio")
    p.add_argument("--config", help="YAML file with EvalConfig fields")
    p.add_argument("--overwrite", action="store_true", help="replace an eval.json of another model in --out")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickle checkpoints (trusted files only)")
    p.add_argument("--trust-remote-code", action="store_true")
    add_model_arguments(p)
    p.add_argument("overrides", nargs="*", help="EvalConfig overrides, e.g. max_new_tokens=48 max_items=20")


def _out_dir(args) -> Path:
    if args.out:
        return Path(args.out)
    if Path(args.model).is_dir():
        return Path(args.model) / "eval"
    raise ObliviateError(f"--model {args.model} is not a local directory: pass --out")


def _reference(kind: str, model_spec, results_path, data, cfg, out: Path, args, bench):
    """A saved eval.json, or evaluate the reference model (without cosine / NLI / extras) into out/<kind>."""
    from obliviate.evaluate import evaluate, load_results
    from obliviate.models.loading import load_model

    if results_path and model_spec:
        flag = {"before": "original"}.get(kind, kind)
        raise ObliviateError(f"pass --{flag}-model or --{flag}-results, not both")
    if results_path:
        return load_results(results_path)
    if not model_spec:
        return None
    ref_cfg = dataclasses.replace(cfg, embedder=None, nli=None, verbmem=None, knowmem=None, mcq=[], harness=None,
                                  tasks=[])
    model, tok = load_model(model_spec, allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
                            model_args=args.model_args)
    t = time.time()
    res = evaluate(model, tok, data, ref_cfg, benchmark=bench, out=out / kind, model_name=str(model_spec),
                   overwrite=args.overwrite)
    print(f"evaluated {kind} model {model_spec} in {time.time() - t:.1f}s -> {out / kind / 'eval.json'}")
    return res


def resolve_config(args):
    """The EvalConfig of an `eval` command line: defaults < --config YAML < key=value < flags."""
    from obliviate.evaluate import EvalConfig

    return load_config(EvalConfig, args.config, args.overrides, tasks=args.tasks, **checked(
        args.overrides, forget=args.forget, nli=args.nli, harness=args.harness, harness_data=args.harness_data))


def run(args):
    import torch

    cfg = resolve_config(args)
    bench, said = resolve_benchmark(args.benchmark, args.data)
    if args.forget and "forget" not in bench.split_roles:
        raise ObliviateError(f"--forget picks a TOFU forget level; benchmark {bench.name} evaluates its own roles "
                             f"({', '.join(bench.eval_roles())})")
    print(said)
    torch.manual_seed(cfg.seed)
    # `accelerate launch`: every process evaluates its share of the items; the main one claims, locks and writes
    with run_dir(_out_dir(args), args.model) if is_main_rank() else contextlib.nullcontext(_out_dir(args)) as out:
        return _run(args, cfg, out, bench)


def _run(args, cfg, out: Path, bench) -> dict | None:
    from obliviate.evaluate import evaluate
    from obliviate.evaluate.nli import load_nli
    from obliviate.evaluate.suite import summary_rows
    from obliviate.models.loading import load_model

    model, tok = load_model(args.model, allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
                          model_args=args.model_args)
    retain = _reference("retain", args.retain_model, args.retain_results, args.data, cfg, out, args, bench)
    before = _reference("before", args.before_model, args.before_results, args.data, cfg, out, args, bench)
    nli = load_nli(cfg.nli, allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code) \
        if cfg.nli else None
    t = time.time()
    results = evaluate(model, tok, args.data, cfg, benchmark=bench, retain_results=retain, before_results=before,
                       out=out, model_name=str(args.model), overwrite=args.overwrite, nli=nli)
    if not is_main_rank():
        return
    where = results.get("device", {})
    on = f"{where.get('device')} ({where.get('dtype')}{', bf16 autocast' if where.get('autocast') else ''})"
    _print_table(summary_rows(results), f"obliviate eval: {args.model} on {on} ({time.time() - t:.1f}s)")
    print(f"wrote {out / 'eval.json'}")
    return {"out": str(out), "model": str(args.model), "benchmark": bench.name, "device": where,
            "metrics": headline_numbers(results), "outputs": {"eval": str(out / "eval.json")}}


def headline_numbers(results: dict) -> dict:
    """eval.json's aggregates that are numbers (forget_quality, model_utility, mia.min_k, ...; one level of
    nesting), a non-finite one as None; the reasons of the not computed ones under "not_computed"."""
    import math

    def number(v):
        return (v if math.isfinite(v) else None) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    out = {}
    for key, value in (results.get("aggregates") or {}).items():
        if isinstance(value, dict):
            value = {k: number(v) for k, v in value.items() if isinstance(number(v), (int, float, type(None)))}
        else:
            value = number(value)
        if isinstance(value, (int, float, dict, type(None))):
            out[key] = value
    not_computed = results.get("not_computed", {})
    for key in not_computed:
        if not key.startswith("split:"):
            out.setdefault(key, None)  # null, with its reason under not_computed
    return {**out, "not_computed": not_computed}


def _print_table(rows, title):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric / split", overflow="fold")
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
