"""obliviate bench [--model tiny|smollm2-135m-instruct|PATH] [--recipes ga+gd,npo+gd] [--eval] [--demo] [--out DIR]:
training/evaluation speed, printed and saved as bench.json + bench.md (see obliviate/pipeline/bench.py).
The standalone benchmark scripts (unlearn_speed, eval_speed, demo_trends, ...) are not part of the installed
package: they live in a repository checkout's benchmarks/ and run as `python benchmarks/NAME.py`."""

import argparse
from pathlib import Path

from obliviate import ObliviateError
from obliviate.commands.flags import checked
from obliviate.models.hub import add_model_arguments, parse_model_args
from obliviate.rundir import run_dir


def add_arguments(p):
    p.add_argument("name", nargs="*", help=argparse.SUPPRESS)  # only to point `obliviate bench NAME` users on
    p.add_argument("--model", default=None, help="tiny (fresh, built in a temp dir), smollm2-135m-instruct, or a "
                                                 "model directory (default: tiny)")
    p.add_argument("--data", default=None, help="world directory with forget10/retain90 (default: demo world, seed 0)")
    p.add_argument("--recipes", default=None, help="comma-separated (default: ga+gd,npo+gd,me+gd,idk+ap,dpo+kl,"
                                                   "npo+gd+sam); 'none' to skip training")
    p.add_argument("--steps", type=int, default=None, help="timed steps per recipe after the warm-up (default 8)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 2)")
    p.add_argument("--eval", action="store_true", default=None, help="also time the scoring pass and generation")
    p.add_argument("--eval-items", type=int, default=None, help="forget10 items scored with --eval (default 40)")
    p.add_argument("--gen-items", type=int, default=None, help="prompts generated with --eval (default 16)")
    p.add_argument("--demo", action="store_true", default=None,
                   help="also time `obliviate demo --preset tiny --seeds 1` per stage")
    p.add_argument("--no-fixed-cost", dest="fixed_cost", action="store_false", default=None,
                   help="skip the 1-step `obliviate unlearn` subprocess")
    p.add_argument("--out", default=None, help="run directory for bench.json and bench.md (default: "
                   "runs/bench/<model>; a non-empty directory obliviate did not write is refused)")
    p.add_argument("--config", help="YAML file with BenchConfig fields (e.g. batch_size, max_length, lr)")
    add_model_arguments(p)
    p.add_argument("overrides", nargs="*", help="BenchConfig overrides, e.g. batch_size=8 max_length=256")


# the standalone scripts of a repository checkout's benchmarks/ (tests/test_bench.py keeps this list exact): a name
# on the command line is only ever matched against it, never turned into a path
SCRIPTS = ("before_after", "classifier_attacks", "compare_runs", "compile_ab", "contbatch_ab", "demo_trends",
           "eval_speed", "levers_ab", "logps_lever", "ou_side_by_side", "ou_train_rows", "run_profile", "unlearn_speed")


def run(args):
    if args.name:
        if args.name[0] not in SCRIPTS:
            raise ObliviateError(f"bench: unknown benchmark {args.name[0]!r}; the benchmark scripts are "
                                 f"{', '.join(SCRIPTS)} (`obliviate bench` itself takes no name)")
        raise ObliviateError(f"`obliviate bench {args.name[0]}` no longer runs a script: the benchmark scripts are "
                             f"not installed with the package; from a repository checkout run "
                             f"`python benchmarks/{args.name[0]}.py`")
    from obliviate.pipeline.bench import markdown, run_bench

    cfg = resolve_config(args)
    with run_dir(args.out or Path("runs") / "bench" / Path(cfg.model).name, cfg.model) as out:
        results = run_bench(cfg, out)
    print(markdown(results), end="")
    print(f"saved {out / 'bench.json'} and {out / 'bench.md'}")
    return {"out": str(out), "model": cfg.model, "results": results,
            "outputs": {"bench": str(out / "bench.json"), "markdown": str(out / "bench.md")}}


def resolve_config(args):
    """The BenchConfig of a `bench` command line: defaults < --config YAML < key=value < flags; every recipe
    name and model arg checked before anything runs."""
    from obliviate.config import load_config
    from obliviate.pipeline.bench import BenchConfig
    from obliviate.unlearn.recipe import parse_recipe

    recipes = None if args.recipes is None else \
        [] if args.recipes == "none" else [r.strip() for r in args.recipes.split(",") if r.strip()]
    cfg = load_config(BenchConfig, args.config, args.overrides, recipes=recipes, **checked(
        args.overrides, model=args.model, data=args.data, eval=args.eval, demo=args.demo, fixed_cost=args.fixed_cost,
        model_args=args.model_args, steps=args.steps, warmup=args.warmup, eval_items=args.eval_items,
        gen_items=args.gen_items))
    parse_model_args(cfg.model_args)  # a bad key is an error before anything runs
    for r in cfg.recipes:
        parse_recipe(r)  # a bad name is an error before anything runs
    return cfg
