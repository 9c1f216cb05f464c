"""`obliviate invert`: PLG-MI model inversion of an image classifier, with baselines.

    obliviate invert --train-target digits --public rotate-blur --baseline all --seeds 3 --out runs/invert
    obliviate invert --target runs/invert/target --baseline gmi gan_iters=200
"""

from __future__ import annotations

import argparse
from pathlib import Path

from obliviate import ObliviateError

BASELINES = ("gmi", "no-guidance", "ce", "random")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--target", metavar="DIR", help="saved target classifier (model.safetensors + model.json)")
    src.add_argument("--train-target", metavar="DATASET", choices=["digits", "fashion-mnist"],
                     help="train a target on the private split of this dataset (default: digits)")
    parser.add_argument("--dataset", choices=["digits", "fashion-mnist"], help="private/public dataset of a --target")
    parser.add_argument("--public", choices=["rotate-blur", "inverted", "none"],
                        help="distribution shift of the public images (default rotate-blur)")
    parser.add_argument("--baseline", choices=BASELINES + ("all",), action="append",
                        help="also run this baseline (repeatable; 'all' = every baseline)")
    parser.add_argument("--seed", type=int, help="first seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (seed, seed+1, ...)")
    parser.add_argument("--config", metavar="YAML", help="InvertConfig values")
    parser.add_argument("--out", default="runs/invert", help="run directory (default runs/invert)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow loading a pickle checkpoint (runs code!)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="InvertConfig overrides, e.g. gan_iters=200")


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from obliviate.attack.classifier.plg_mi import InvertConfig, invert
    from obliviate.attack.classifier.report import write_summary
    from obliviate.config import load_config

    if args.seeds < 1:
        raise ObliviateError(f"--seeds must be at least 1, got {args.seeds}")
    methods = None
    if args.baseline:
        chosen = list(BASELINES) if "all" in args.baseline else list(dict.fromkeys(args.baseline))
        methods = ["plg"] + chosen
    dataset = args.train_target or args.dataset
    if args.target and dataset is None and (Path(args.target) / "model.json").exists():
        dataset = json.loads((Path(args.target) / "model.json").read_text()).get("meta", {}).get("dataset")
    base = dict(dataset=dataset, target=args.target, public=args.public, methods=methods, seed=args.seed,
                allow_pickle=args.allow_pickle or None)
    cfg0 = load_config(InvertConfig, args.config, args.overrides, **base)
    out = Path(args.out)
    runs = []
    for i in range(args.seeds):
        cfg = load_config(InvertConfig, args.config, args.overrides, **{**base, "seed": cfg0.seed + i})
        run_dir = out if args.seeds == 1 else out / f"seed{cfg.seed}"
        torch.manual_seed(cfg.seed)
        result = invert(cfg, run_dir)
        runs.append((cfg.seed, run_dir, {k: v for k, v in result.items() if k != "reconstructions"}))
        for m, v in result["methods"].items():
            print(f"seed {cfg.seed} {m:12s} acc@1={v['acc1']:.3f} acc@5={v['acc5']:.3f} knn={v['knn']:.2f} "
                  f"fd={v['fd']:.2f} ({result['wall_time_s'][m]:.0f} s)")
    if args.seeds > 1:
        write_summary(out, "invert", runs)
    print(f"report: {out / 'report.html'}")
    return 0
