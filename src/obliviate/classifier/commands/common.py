"""What `obliviate steal` and `obliviate invert` share: the target's dataset, the seeds loop, the summary page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from obliviate import ObliviateError
from obliviate.reader import read_json_object


def target_dataset(args) -> str | None:
    """--train-target, else --dataset, else the dataset recorded in a --target's model.json."""
    dataset = args.train_target or args.dataset
    if args.target and dataset is None and (Path(args.target) / "model.json").exists():
        dataset = read_json_object(Path(args.target) / "model.json", what="--target").get("meta", {}).get("dataset")
    return dataset


def run_seeds(args, config_cls, attack: Callable, base: dict, *, kind: str, heavy_key: str,
              describe: Callable[[object, dict], str]) -> dict:
    """Run `attack(cfg, run_dir)` for seeds seed, seed+1, …; print `describe(cfg, result)`; summarise."""
    from obliviate.config import load_config
    from obliviate.rundir import run_dir

    if args.seeds < 1:
        raise ObliviateError(f"--seeds must be at least 1, got {args.seeds}")
    first = load_config(config_cls, args.config, args.overrides, **base).seed
    with run_dir(args.out, args.target) as out:
        return _run_seeds(args, config_cls, attack, base, first, out, kind=kind, heavy_key=heavy_key,
                          describe=describe)


def _run_seeds(args, config_cls, attack, base, first, out: Path, *, kind, heavy_key, describe) -> dict:
    import torch

    from obliviate.config import load_config
    from obliviate.classifier.report import write_invert_report, write_steal_report, write_summary

    runs = []
    for i in range(args.seeds):
        cfg = load_config(config_cls, args.config, args.overrides, **{**base, "seed": first + i})
        run_dir = out if args.seeds == 1 else out / f"seed{cfg.seed}"
        torch.manual_seed(cfg.seed)
        result = attack(cfg, run_dir, allow_pickle=args.allow_pickle,
                        report=write_steal_report if kind == "steal" else write_invert_report)
        runs.append((cfg.seed, run_dir, {k: v for k, v in result.items() if k != heavy_key}))
        print(describe(cfg, result))
    if args.seeds > 1:
        write_summary(out, kind, runs)
    print(f"report: {out / 'report.html'}")
    return {"out": str(out), "runs": [{"seed": seed, "dir": str(d), **res} for seed, d, res in runs],
            "outputs": {"report": str(out / "report.html")}}


DATASETS = ["digits", "fashion-mnist"]


def add_common_arguments(parser, *, kind: str, config: str, train_help: str, example: str) -> None:
    """Flags both verbs take: the target (saved or trained), seeds, config, run directory, pickle opt-in."""
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--target", metavar="DIR", help="saved target classifier (model.safetensors + model.json)")
    src.add_argument("--train-target", metavar="DATASET", choices=DATASETS, help=train_help)
    parser.add_argument("--dataset", choices=DATASETS,
                        help="dataset of a --target (default: the one in its model.json, else digits)")
    parser.add_argument("--seed", type=int, help="first seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (seed, seed+1, ...)")
    parser.add_argument("--config", metavar="YAML", help=f"{config} values")
    parser.add_argument("--out", default=f"runs/{kind}", help=f"run directory (default runs/{kind})")
    parser.add_argument("--allow-pickle", action="store_true", help="allow loading a pickle checkpoint (runs code!)")
    parser.add_argument("--model-args", default=None, metavar="device_map=DEV",
                        help="where the classifiers run: device_map=cpu|cuda|cuda:N|auto (default: CUDA when "
                             "present, else the CPU; the language-model verbs' flag, of which only device_map applies)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"{config} overrides, e.g. {example}")
