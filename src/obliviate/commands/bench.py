"""obliviate bench [--model tiny|smollm2-135m-instruct|PATH] [--recipes ga+gd,npo+gd] [--eval] [--demo] [--out DIR]:
training/evaluation speed, printed and saved as bench.json + bench.md (see obliviate/pipeline/bench.py).
The standalone benchmark scripts (unlearn_speed, eval_speed, demo_trends, ...) are not part of the installed
package: they live in a repository checkout's benchmarks/ and run as `python benchmarks/NAME.py`."""

import argparse
from pathlib import Path

from obliviate import ObliviateError
from obliviate.models.hub import add_model_arguments, parse_model_args
from obliviate.rundir import run_dir


def add_arguments(p):
    p.add_argument("name", nargs="*", help=argparse.SUPPRESS)  # only to point `obliviate bench NAME` users on
    p.add_argument("--model", default="tiny", help="tiny (fresh, built in a temp dir), smollm2-135m-instruct, or a "
                                                   "model directory (default: tiny)")
    p.add_argument("--data", default=None, help="world directory with forget10/retain90 (default: demo world, seed 0)")
    p.add_argument("--recipes", default=None, help="comma-separated (default: ga+gd,npo+gd,me+gd,idk+ap,dpo+kl,"
                                                   "npo+gd+sam); 'none' to skip training")
    p.add_argument("--steps", type=int, default=None, help="timed steps per recipe after the warm-up (default 8)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 2)")
    p.add_argument("--eval", action="store_true", help="also time the scoring pass and generation")
    p.add_argument("--eval-items", type=int, default=None, help="forget10 items scored with --eval (default 40)")
    p.add_argument("--gen-items", type=int, default=None, help="prompts generated with --eval (default 16)")
    p.add_argument("--demo", action="store_true", help="also time `obliviate demo --preset tiny --seeds 1` per stage")
    p.add_argument("--no-fixed-cost", action="store_true", help="skip the 1-step `obliviate unlearn` subprocess")
    p.add_argument("--out", default=None, help="run directory for bench.json and bench.md (default: "
                   "runs/bench/<model>; a non-empty directory obliviate did not write is refused)")
    add_model_arguments(p)


# the standalone scripts of a repository checkout's benchmarks/ (tests/test_bench.py keeps this list exact): a name
# on the command line is only ever matched against it, never turned into a path
SCRIPTS = ("before_after", "classifier_attacks", "compare_runs", "demo_trends", "eval_speed", "logps_lever",
           "ou_side_by_side", "run_profile", "unlearn_speed")


def run(args):
    if args.name:
        if args.name[0] not in SCRIPTS:
            raise ObliviateError(f"bench: unknown benchmark {args.name[0]!r}; the benchmark scripts are "
                                 f"{', '.join(SCRIPTS)} (`obliviate bench` itself takes no name)")
        raise ObliviateError(f"`obliviate bench {args.name[0]}` no longer runs a script: the benchmark scripts are "
                             f"not installed with the package; from a repository checkout run "
                             f"`python benchmarks/{args.name[0]}.py`")
    from obliviate.pipeline.bench import BenchConfig, markdown, run_bench

    cfg = BenchConfig(model=args.model, data=args.data, eval=args.eval, demo=args.demo,
                      fixed_cost=not args.no_fixed_cost, model_args=args.model_args)
    parse_model_args(cfg.model_args)  # a bad key is an error before anything runs
    if args.recipes is not None:
        cfg.recipes = [] if args.recipes == "none" else [r.strip() for r in args.recipes.split(",") if r.strip()]
        from obliviate.unlearn.recipe import parse_recipe

        for r in cfg.recipes:
            parse_recipe(r)  # a bad name is an error before anything runs
    for name in ("steps", "warmup", "eval_items", "gen_items"):
        value = getattr(args, name)
        if value is not None:
            if value < (0 if name == "warmup" else 1):
                raise ObliviateError(f"--{name.replace('_', '-')} must be >= {0 if name == 'warmup' else 1}, got {value}")
            setattr(cfg, name, value)
    with run_dir(args.out or Path("runs") / "bench" / Path(args.model).name, args.model) as out:
        results = run_bench(cfg, out)
    print(markdown(results), end="")
    print(f"saved {out / 'bench.json'} and {out / 'bench.md'}")

