"""A/B of run-level levers: whole `obliviate unlearn` runs, alternating arms, under `/usr/bin/time -v`.

    python benchmarks/levers_ab.py --arm base: --arm mb2:micro_batch=2 --rounds 2 max_steps=2
    python benchmarks/levers_ab.py --arm base: --arm trim:ENV:MALLOC_MMAP_THRESHOLD_=4194304 max_steps=3
    python benchmarks/levers_ab.py --arm eager:compile=false --arm compiled:compile=true max_steps=8

Each arm is `NAME:OVERRIDE OVERRIDE ...` (UnlearnConfig `key=value` overrides, and `ENV:K=V` environment
variables); the trailing overrides apply to every arm. Every round runs each arm once, in order, as a fresh
process on the bench workload (demo world seed 0 forget10/retain90, batch 4 + 4, max_length 128, lr 1e-5, no
warm-up, SmolLM2 by default). Peak RSS (`time -v` maximum resident set size) does not depend on the machine's
load; CPU seconds (user + sys) depend on it less than wall time. Prints one row per run and, per arm, the median
over rounds and its ratio to the first arm; the losses of each run's log show whether an arm changed the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

FIELDS = {"rss_gib": r"Maximum resident set size \(kbytes\): (\d+)", "user_s": r"User time \(seconds\): ([\d.]+)",
          "sys_s": r"System time \(seconds\): ([\d.]+)", "faults": r"Minor \(reclaiming a frame\) page faults: (\d+)",
          "wall": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)"}


def parse_arm(text: str) -> tuple[str, list[str], dict]:
    name, _, rest = text.partition(":")
    overrides, env = [], {}
    for tok in rest.split():
        if tok.startswith("ENV:"):
            k, _, v = tok[4:].partition("=")
            env[k] = v
        else:
            overrides.append(tok)
    return name, overrides, env


def seconds(wall: str) -> float:
    parts = [float(x) for x in wall.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def run(args, world: Path, tmp: Path, name: str, overrides: list[str], env: dict, k: int) -> dict:
    out = tmp / f"{name}-{k}"
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "obliviate", "unlearn", "--model", args.model,
           "--data", str(world), "--recipe", args.recipe, "--out", str(out), "batch_size=4", "lr=1e-5",
           "max_length=128", "warmup_epochs=0", *args.common, *overrides]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1", **env})
    if p.returncode:
        raise SystemExit(f"{name} failed:\n{p.stderr[-3000:]}")
    row = {f: float(m.group(1)) if f != "wall" else seconds(m.group(1))
           for f, rx in FIELDS.items() if (m := re.search(rx, p.stderr))}
    row["rss_gib"] /= 2 ** 20
    row["cpu_s"] = row["user_s"] + row["sys_s"]
    info = json.loads((out / "run.json").read_text())
    row["micro_batch"] = info.get("micro_batch")
    row["losses"] = [json.loads(x)["loss"] for x in (out / "log.jsonl").read_text().splitlines()]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", action="append", required=True, help="NAME:overrides (repeat; the first is the base)")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--recipe", default="npo+gd")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the rows here as JSON")
    ap.add_argument("common", nargs="*", help="overrides for every arm (e.g. max_steps=2)")
    args = ap.parse_args()
    arms = [parse_arm(a) for a in args.arm]
    from obliviate.data.world import write_world

    rows: dict[str, list[dict]] = {name: [] for name, _, _ in arms}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        world = write_world(tmp / "world", "demo", 0)
        for k in range(args.rounds):
            for name, overrides, env in arms:
                r = run(args, world, tmp, name, overrides, env, k)
                rows[name].append(r)
                print(f"round {k + 1} {name}: peak {r['rss_gib']:.3f} GiB, cpu {r['cpu_s']:.1f} s "
                      f"(user {r['user_s']:.1f} sys {r['sys_s']:.1f}), wall {r['wall']:.1f} s, faults "
                      f"{int(r['faults'])}, micro_batch {r['micro_batch']}, losses "
                      f"{', '.join(f'{x:.5f}' for x in r['losses'])}", flush=True)
    base = arms[0][0]
    print("\n| arm | peak RSS GiB (median) | ÷ base | CPU s (median) | ÷ base | wall s (median) |\n|---|---|---|---|---|---|")
    med = {n: {f: statistics.median(r[f] for r in rs) for f in ("rss_gib", "cpu_s", "wall")} for n, rs in rows.items()}
    for n, m in med.items():
        print(f"| {n} | {m['rss_gib']:.3f} | {m['rss_gib'] / med[base]['rss_gib']:.3f} | {m['cpu_s']:.1f} | "
              f"{m['cpu_s'] / med[base]['cpu_s']:.3f} | {m['wall']:.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
