"""`obliviate steal`: DFHL-RS hard-label robustness stealing of an image classifier.

    obliviate steal --train-target digits --mode hee --seeds 3 --out runs/steal
    obliviate steal --target runs/steal/seed0/target --mode plain budget=20000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from obliviate import ObliviateError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--target", metavar="DIR", help="saved target classifier (model.safetensors + model.json)")
    src.add_argument("--train-target", metavar="DATASET", choices=["digits", "fashion-mnist"],
                     help="adversarially train a target on this dataset (default: digits)")
    parser.add_argument("--dataset", choices=["digits", "fashion-mnist"],
                        help="dataset of a --target (default: the one in its model.json, else digits)")
    parser.add_argument("--mode", choices=["hee", "at", "ae", "ue", "plain"], help="hee = DFHL-RS (default)")
    parser.add_argument("--budget", type=int, metavar="QUERIES", help="hard-label query budget")
    parser.add_argument("--seed", type=int, help="first seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (seed, seed+1, ...)")
    parser.add_argument("--config", metavar="YAML", help="StealConfig values")
    parser.add_argument("--out", default="runs/steal", help="run directory (default runs/steal)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow loading a pickle checkpoint (runs code!)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="StealConfig overrides, e.g. epochs=10")


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from obliviate.attack.classifier.dfhl_rs import StealConfig, steal
    from obliviate.attack.classifier.report import write_summary
    from obliviate.config import load_config

    if args.seeds < 1:
        raise ObliviateError(f"--seeds must be at least 1, got {args.seeds}")
    dataset = args.train_target or args.dataset
    if args.target and dataset is None and (Path(args.target) / "model.json").exists():
        dataset = json.loads((Path(args.target) / "model.json").read_text()).get("meta", {}).get("dataset")
    base = dict(dataset=dataset, target=args.target, mode=args.mode, budget=args.budget, seed=args.seed,
                allow_pickle=args.allow_pickle or None)
    cfg0 = load_config(StealConfig, args.config, args.overrides, **base)
    out = Path(args.out)
    runs = []
    for i in range(args.seeds):
        cfg = load_config(StealConfig, args.config, args.overrides, **{**base, "seed": cfg0.seed + i})
        run_dir = out if args.seeds == 1 else out / f"seed{cfg.seed}"
        torch.manual_seed(cfg.seed)
        result = steal(cfg, run_dir)
        runs.append((cfg.seed, run_dir, {k: v for k, v in result.items() if k != "clone_model"}))
        t, c = result["target"], result["clone"]
        print(f"seed {cfg.seed} [{cfg.mode}] target " + " ".join(f"{k}={v:.3f}" for k, v in t.items())
              + f"\n          clone  " + " ".join(f"{k}={v:.3f}" for k, v in c.items())
              + f"  agreement={result['agreement']:.3f} queries={result['queries']}"
              f" ({result['wall_time_s']['total']:.0f} s)")
    if args.seeds > 1:
        write_summary(out, "steal", runs)
    print(f"report: {out / 'report.html'}")
    return 0
