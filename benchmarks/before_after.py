"""Before/after speed: `obliviate bench` on an older checkout and on this one, alternating, then the ratios.

    git worktree add /tmp/base 119e2ba        # the "before" code (detached)
    python benchmarks/before_after.py --base-src /tmp/base/src --model smollm2-135m-instruct \
        --recipes ga+gd,npo+gd --eval --rounds 2 --out runs/bench/before_after

Each round runs the base then this tree (`PYTHONPATH` switched; same thread settings), so a machine shared
with other work slows both alike; the per-figure best over rounds is compared. This tree's
`obliviate/pipeline/bench.py` and `commands/bench.py` are copied into the base checkout (overwriting its own;
they use only public APIs that existed before). Writes `<out>/before_r*/`, `<out>/after_r*/` and `<out>/ratios.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"


def bench(src: Path, out: Path, args) -> dict:
    cmd = [sys.executable, "-m", "obliviate", "bench", "--model", args.model, "--out", str(out),
           "--recipes", args.recipes, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += (["--eval", "--eval-items", str(args.eval_items), "--gen-items", str(args.gen_items)] if args.eval else []) + (["--demo"] if args.demo else [])
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(src), "TQDM_DISABLE": "1"})
    return json.loads((out / "bench.json").read_text())


def best(runs: list[dict], path: tuple, lower: bool = True):
    values = []
    for r in runs:
        x = r
        for k in path:
            x = x.get(k) if isinstance(x, dict) else None
        if isinstance(x, (int, float)):
            values.append(x)
    return (min(values) if lower else max(values)) if values else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-src", required=True, help="the src/ folder of the 'before' checkout")
    p.add_argument("--model", default="tiny")
    p.add_argument("--recipes", default="ga+gd,npo+gd")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--eval", action="store_true")
    p.add_argument("--eval-items", type=int, default=40)
    p.add_argument("--gen-items", type=int, default=16)
    p.add_argument("--demo", action="store_true")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="runs/bench/before_after")
    args = p.parse_args()
    base, out = Path(args.base_src), Path(args.out)
    (base / "obliviate" / "pipeline").mkdir(exist_ok=True)  # an older checkout has no pipeline package
    rels = ["obliviate/pipeline/bench.py", "obliviate/commands/bench.py"]
    rels += [] if (base / "obliviate/pipeline/__init__.py").exists() else ["obliviate/pipeline/__init__.py"]
    for rel in rels:
        shutil.copy(HERE / rel, base / rel)
    before, after = [], []
    for k in range(args.rounds):
        before.append(bench(base, out / f"before_r{k}", args))
        after.append(bench(HERE, out / f"after_r{k}", args))
    rows = []
    for recipe in args.recipes.split(","):
        for label, key, lower in (("s/step (median)", ("s_per_step", "median"), True),
                                  ("tokens/s (median)", ("tokens_per_s", "median"), False),
                                  ("FLOP utilisation (median)", ("flop_utilisation", "median"), False),
                                  ("peak RSS GiB", ("peak_rss_gib",), True),
                                  ("set-up inside unlearn s", ("unlearn_fixed_s",), True),
                                  ("load s", ("load_s",), True)):
            rows.append((f"{recipe} {label}", best(before, ("recipes", recipe, *key), lower),
                         best(after, ("recipes", recipe, *key), lower)))
    rows.append(("fixed cost wall s", best(before, ("fixed_cost", "wall_fixed_s")),
                 best(after, ("fixed_cost", "wall_fixed_s"))))
    if args.eval:
        for key in ("scoring_items_per_s", "generation_items_per_s"):
            rows.append((f"eval {key}", best(before, ("eval", key), False), best(after, ("eval", key), False)))
        rows.append(("eval peak RSS GiB", best(before, ("eval", "peak_rss_gib")), best(after, ("eval", "peak_rss_gib"))))
    if args.demo:
        rows.append(("demo wall s", best(before, ("demo", "wall_s")), best(after, ("demo", "wall_s"))))
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    lines = [f"model `{args.model}`, best of {args.rounds} alternating rounds; load average at start: "
             + ", ".join(f"{r['machine']['load_average'][0]:.1f}" for r in before + after), "",
             "| figure | before | after | after/before |", "|---|---|---|---|"]
    lines += [f"| {name} | {fmt(b)} | {fmt(a)} | {fmt(a / b) if a is not None and b else 'n/a'} |" for name, b, a in rows]
    (out / "ratios.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
