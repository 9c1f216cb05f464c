"""`obliviate invert`: PLG-MI model inversion of an image classifier, with baselines.

    obliviate invert --train-target digits --public rotate-blur --baseline all --seeds 3 --out runs/invert
    obliviate invert --target runs/invert/target --baseline gmi gan_iters=200
"""

from __future__ import annotations

import argparse

BASELINES = ("gmi", "no-guidance", "ce", "random")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from obliviate.classifier.commands.common import add_common_arguments

    add_common_arguments(parser, kind="invert", config="InvertConfig", example="gan_iters=200",
                         train_help="train a target on the private split of this dataset (default: digits)")
    parser.add_argument("--public", choices=["rotate-blur", "inverted", "none"],
                        help="distribution shift of the public images (default rotate-blur)")
    parser.add_argument("--baseline", choices=BASELINES + ("all",), action="append",
                        help="also run this baseline (repeatable; 'all' = every baseline)")


def _base(args) -> dict:
    from obliviate.classifier.commands.common import target_dataset

    methods = None
    if args.baseline:
        chosen = list(BASELINES) if "all" in args.baseline else list(dict.fromkeys(args.baseline))
        methods = ["plg"] + chosen
    return dict(dataset=target_dataset(args), target=args.target, public=args.public, methods=methods, seed=args.seed,
                model_args=args.model_args)


def resolve_config(args):
    """The InvertConfig of the first seed: defaults < --config YAML < key=value < flags."""
    from obliviate.classifier.invert import InvertConfig
    from obliviate.config import load_config

    return load_config(InvertConfig, args.config, args.overrides, **_base(args))


def run(args: argparse.Namespace) -> dict:
    from obliviate.classifier.invert import InvertConfig, invert
    from obliviate.classifier.commands.common import run_seeds

    def describe(cfg, result) -> str:
        return "\n".join(f"seed {cfg.seed} {m:12s} acc@1={v['acc1']:.3f} acc@5={v['acc5']:.3f} knn={v['knn']:.2f} "
                         f"fd={v['fd']:.2f} ({result['wall_time_s'][m]:.0f} s on {result['device']})"
                         for m, v in result["methods"].items())

    return run_seeds(args, InvertConfig, invert, _base(args), kind="invert", heavy_key="reconstructions", describe=describe)
