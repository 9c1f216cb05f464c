"""Do the seeds' trends show on the demo world? Hyper-parameter variants of the demo recipes, over seeds.

    python benchmarks/demo_trends.py --base runs/demo [--seeds 3] [--variants sam,ap,me]

Reuses the world, target/retain models and their evaluations of a finished demo run (`--base`), so each
variant costs only its unlearning, evaluation and relearning runs. Prints, per variant: Forget Quality,
Model Utility, forget/retain ROUGE, Forget Efficacy and MU-18 without ES, and the relearning curve.
The trends checked (SPEC seeds): ME+GD vs GA+GD / NPO+GD on forget efficacy at kept utility;
IDK+AP vs IDK+GD on retain answers; NPO+GD+SAM vs NPO+GD under relearning.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import obliviate  # noqa: F401  (OMP_WAIT_POLICY before torch)
from obliviate.pipeline import DemoConfig, run_demo
from obliviate.report.runs import collect, fmt_ci, mean_ci

VARIANTS = {
    "sam": [("npo+gd", ""), ("npo+gd+sam", ""), ("npo+gd+sam", "sam_rho=0.05"), ("npo+gd+sam", "sam_rho=0.2")],
    "ap": [("idk+gd", ""), ("idk+ap", ""), ("idk+ap", "lam=5"), ("idk+ap", "ap_beta=1.0")],
    "me": [("ga+gd", ""), ("npo+gd", ""), ("me+gd", ""), ("me+gd", "alpha=2"), ("me+gd", "epochs=10")],
}


def metric(ev: dict, *path):
    v = ev
    for p in path:
        v = (v or {}).get(p)
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="runs/demo", help="a finished demo run directory")
    ap.add_argument("--out", default=None, help="default: <base>/variants")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--variants", default="sam,ap,me")
    args = ap.parse_args()
    base = Path(args.base)
    base_cfg = json.loads((base / "demo.json").read_text())["config"]
    out_root = Path(args.out or base / "variants")
    for group in args.variants.split(","):
        print(f"\n## {group}")
        print("| recipe | overrides | FQ | MU | forget ROUGE | retain ROUGE | FE (no ES) | MU-18 (no ES) "
              "| relearn Prob @ steps |")
        print("|---|---|---|---|---|---|---|---|---|")
        for recipe, overrides in VARIANTS[group]:
            name = f"{recipe.replace('+', '_')}__{overrides.replace('=', '').replace(',', '_') or 'default'}"
            out = out_root / name
            for d in ("world", "models", "eval"):
                if not (out / d).exists():
                    shutil.copytree(base / d, out / d)
            cfg = DemoConfig(**{**base_cfg, "out": str(out), "recipes": [recipe], "seeds": args.seeds,
                                "unlearn_overrides": f"{recipe}:{overrides}" if overrides else ""})
            t = time.perf_counter()
            run_demo(cfg, progress=False)
            runs = collect(out)["recipes"][recipe]
            evs = [r["eval"] for r in runs]
            cell = lambda *p: fmt_ci(*mean_ci([metric(e, *p) for e in evs]))  # noqa: E731
            curves = [r["relearn"]["curve"] for r in runs]
            relearn = ", ".join(f"{c['step']}: {fmt_ci(*mean_ci([cv[j]['prob'] for cv in curves]))}"
                                for j, c in enumerate(curves[0]))
            print(f"| {recipe} | {overrides or 'default'} | {cell('aggregates', 'forget_quality')} | "
                  f"{cell('aggregates', 'model_utility')} | {cell('splits', 'forget', 'means', 'rouge_l_recall')} | "
                  f"{cell('splits', 'retain', 'means', 'rouge_l_recall')} | "
                  f"{cell('aggregates', 'forget_efficacy_no_es')} | {cell('aggregates', 'mu18_no_es')} | "
                  f"{relearn} |  ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
