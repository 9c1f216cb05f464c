"""≥3-seed benchmark of the classifier attacks on sklearn digits (CPU): DFHL-RS vs baselines, PLG-MI vs baselines.

    python benchmarks/classifier_attacks.py --part steal --seeds 0,1 &      # one process per core
    python benchmarks/classifier_attacks.py --part all --seeds 2           # ...
    python benchmarks/classifier_attacks.py --tables --seeds 0,1,2          # print the tables from runs/

Each (seed, mode) writes a normal `obliviate steal` / `obliviate invert` run directory under --out;
--tables reads their results.json and prints mean ± std tables with wall times (Markdown).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import obliviate  # noqa: F401  (sets OMP_WAIT_POLICY before torch)
import torch

from obliviate.classifier.invert import METHODS, InvertConfig, invert
from obliviate.classifier.report import STEAL_COLS, pm, write_invert_report, write_steal_report
from obliviate.classifier.steal import StealConfig, steal
from obliviate.html import table_md

STEAL_MODES = ("hee", "plain", "at", "ue")


def run_steal(out: Path, seed: int, overrides: dict) -> None:
    target_dir = None
    for mode in STEAL_MODES:
        run_dir = out / "steal" / f"seed{seed}" / mode
        if (run_dir / "results.json").exists():
            print(f"skip {run_dir} (done)", flush=True)
        else:
            torch.manual_seed(seed)
            cfg = StealConfig(mode=mode, seed=seed, target=target_dir, **overrides)
            r = steal(cfg, run_dir, report=write_steal_report)
            print(f"steal seed {seed} {mode}: clone {json.dumps({k: round(v, 3) for k, v in r['clone'].items()})} "
                  f"({r['wall_time_s']['total']:.0f} s)", flush=True)
        target_dir = target_dir or str(out / "steal" / f"seed{seed}" / STEAL_MODES[0] / "target")


def run_invert(out: Path, seed: int, overrides: dict, methods: list[str], sub: str = "invert") -> None:
    run_dir = out / sub / f"seed{seed}"
    if (run_dir / "results.json").exists():
        print(f"skip {run_dir} (done)", flush=True)
        return
    torch.manual_seed(seed)
    r = invert(InvertConfig(seed=seed, methods=methods, **overrides), run_dir, report=write_invert_report)
    print(f"invert seed {seed}: " + json.dumps({m: {k: round(v, 3) for k, v in d.items()}
                                               for m, d in r["methods"].items()}), flush=True)


def tables(out: Path, seeds: list[int], sub: str = "invert") -> str:
    lines = []
    steal_runs = {m: [json.loads(p.read_text()) for s in seeds
                      if (p := out / "steal" / f"seed{s}" / m / "results.json").exists()] for m in STEAL_MODES}
    if steal_runs["hee"]:
        cols = [c for c in STEAL_COLS if c in steal_runs["hee"][0]["clone"]]
        head = ["model", "n"] + cols + ["agreement", "queries", "attack wall s", "total wall s"]
        t = steal_runs["hee"]
        rows = [["target (PGD-AT)", len(t)] + [pm([r["target"][c] for r in t]) for c in cols]
                + ["", "", "", pm([r["wall_time_s"]["target"] + r["wall_time_s"]["target_eval"] for r in t], 1)]]
        for m, rs in steal_runs.items():
            if rs:
                rows.append([f"clone: {m}", len(rs)] + [pm([r["clone"][c] for r in rs]) for c in cols]
                            + [pm([r["agreement"] for r in rs]), pm([r["queries"] for r in rs], 0),
                               pm([r["wall_time_s"]["attack"] for r in rs], 1),
                               pm([r["wall_time_s"]["total"] for r in rs], 1)])
        eps, aa_n = t[0]["eps"], t[0]["aa_n"]
        lines += [f"### DFHL-RS on digits (L∞ ε = {eps}, AA on {aa_n} test images), mean ± std over seeds", "",
                  table_md(head, rows), ""]
    inv = [json.loads(p.read_text()) for s in seeds if (p := out / sub / f"seed{s}" / "results.json").exists()]
    if inv:
        head = ["method", "n", "Acc@1 ↑", "Acc@5 ↑", "KNN ↓", "FD (E feats) ↓", "target acc on recs", "wall s"]
        rows = [[m, len(inv)] + [pm([r["methods"][m][c] for r in inv], 3 if c.startswith("acc") else 2)
                                 for c in ("acc1", "acc5", "knn", "fd", "target_acc1")]
                + [pm([r["wall_time_s"][m] for r in inv], 1)] for m in inv[0]["methods"]]
        rows.append(["real held-out private", len(inv)] + [pm([r["real_test_reference"][c] for r in inv],
                                                               3 if c.startswith("acc") else 2)
                                                            for c in ("acc1", "acc5", "knn", "fd")] + ["", ""])
        first = next(p for s in seeds if (p := out / sub / f"seed{s}" / "run.json").exists())
        gan_iters = json.loads(first.read_text())["config"]["gan_iters"]
        lines += [f"### PLG-MI on digits ({gan_iters} GAN iterations; private = 45 % of digits, public = "
                  "disjoint rotated+blurred digits), mean ± std over seeds", "", table_md(head, rows), "",
                  f"target test acc {pm([r['target_test_acc'] for r in inv])}; evaluation classifier "
                  f"{pm([r['eval_test_acc'] for r in inv])}; top-n pseudo-label purity "
                  f"{pm([r['pseudo_label_purity'] for r in inv])}; models (target+E) "
                  f"{pm([r['wall_time_s']['models'] for r in inv], 1)} s", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["steal", "invert", "all"], default="all")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/bench_classifier")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tables", action="store_true", help="only print the tables of finished runs")
    ap.add_argument("--gan-iters", type=int, help="PLG-MI GAN iterations (default: InvertConfig's); results go to "
                    "invert_g<N>/")
    ap.add_argument("--methods", default=",".join(METHODS), help="PLG-MI methods to run")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out, seeds = Path(args.out), [int(s) for s in args.seeds.split(",")]
    sub = f"invert_g{args.gan_iters}" if args.gan_iters else "invert"
    inv_over = {"gan_iters": args.gan_iters} if args.gan_iters else {}
    if not args.tables:
        t0 = time.time()
        for seed in seeds:
            if args.part in ("steal", "all"):
                run_steal(out, seed, {})
            if args.part in ("invert", "all"):
                run_invert(out, seed, inv_over, args.methods.split(","), sub)
        print(f"benchmark part {args.part} seeds {seeds}: {time.time() - t0:.0f} s wall", flush=True)
    print(tables(out, seeds, sub))
    return 0


if __name__ == "__main__":
    sys.exit(main())
