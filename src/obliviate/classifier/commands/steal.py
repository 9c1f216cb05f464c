"""`obliviate steal`: DFHL-RS hard-label robustness stealing of an image classifier.

    obliviate steal --train-target digits --mode hee --seeds 3 --out runs/steal
    obliviate steal --target runs/steal/seed0/target --mode plain budget=20000
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from obliviate.classifier.commands.common import add_common_arguments

    add_common_arguments(parser, kind="steal", config="StealConfig", example="epochs=10",
                         train_help="adversarially train a target on this dataset (default: digits)")
    parser.add_argument("--mode", choices=["hee", "at", "ae", "ue", "plain"], help="hee = DFHL-RS (default)")
    parser.add_argument("--budget", type=int, metavar="QUERIES", help="hard-label query budget")


def _base(args) -> dict:
    from obliviate.classifier.commands.common import target_dataset

    return dict(dataset=target_dataset(args), target=args.target, mode=args.mode, budget=args.budget, seed=args.seed,
                model_args=args.model_args)


def resolve_config(args):
    """The StealConfig of the first seed: defaults < --config YAML < key=value < flags."""
    from obliviate.classifier.steal import StealConfig
    from obliviate.config import load_config

    return load_config(StealConfig, args.config, args.overrides, **_base(args))


def run(args: argparse.Namespace) -> dict:
    from obliviate.classifier.steal import StealConfig, steal
    from obliviate.classifier.commands.common import run_seeds

    def describe(cfg, result) -> str:
        t, c = result["target"], result["clone"]
        return (f"seed {cfg.seed} [{cfg.mode}] target " + " ".join(f"{k}={v:.3f}" for k, v in t.items())
                + "\n          clone  " + " ".join(f"{k}={v:.3f}" for k, v in c.items())
                + f"  agreement={result['agreement']:.3f} queries={result['queries']}"
                f" ({result['wall_time_s']['total']:.0f} s on {result['device']})")

    return run_seeds(args, StealConfig, steal, _base(args), kind="steal", heavy_key="clone_model", describe=describe)
