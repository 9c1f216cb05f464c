"""Where the time and the memory of one `obliviate unlearn` run go, phase by phase.

Runs `obliviate unlearn` in this process (the CLI's own code path) with the named phases timed and the
resident memory sampled every 20 ms, and prints one table: wall seconds per phase, RSS when the phase ends
and the peak RSS inside it. Phases are the library functions the run calls (wrapped, not changed):

    python benchmarks/run_profile.py --model smollm2-135m-instruct --recipe npo+gd max_steps=1
    python benchmarks/run_profile.py --model smollm2-135m-instruct --recipe ga+gd max_steps=3 --cprofile out.prof

`imports` is the time from interpreter start to the CLI being importable (torch, transformers, accelerate).
With `--cprofile FILE` the whole run is also profiled (read it with `python -m pstats FILE` or snakeviz).
With `--torch-profile`, torch.profiler records the training steps after the second one (the steady state) and
the table of operators by their own CPU time is printed: where a step's time goes.
"""

import time

T0 = time.perf_counter()

import obliviate  # noqa: E402,F401  (OMP_WAIT_POLICY before torch)
import accelerate  # noqa: E402,F401  (what every run imports before it can load a model)
import torch  # noqa: E402
import transformers  # noqa: E402,F401
from obliviate import cli  # noqa: E402

IMPORTS_S = time.perf_counter() - T0

import argparse  # noqa: E402
import cProfile  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from obliviate.pipeline.bench import peak_rss_gib  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**30


class Sampler(threading.Thread):
    """The process's RSS every `every` seconds; `peak_between(t0, t1)` is the largest sample in [t0, t1]."""

    def __init__(self, every: float = 0.02):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), rss_gib()))
            time.sleep(self.every)

    def peak_between(self, t0: float, t1: float) -> float:
        inside = [r for t, r in self.samples if t0 <= t <= t1]
        return max(inside, default=rss_gib())


PROFILER: list = []  # the torch.profiler of --torch-profile, started after the second optimiser step

PHASES = [  # (module, attribute, phase name): the functions the unlearn command and loop call
    ("obliviate.commands.unlearn", "load_model", "load model"),
    ("obliviate.unlearn.loop", "build_data", "tokenize"),
    ("obliviate.unlearn.loop", "cache_ref_logps", "reference cache (NPO/DPO)"),
    ("obliviate.unlearn.loop", "forget_probe", "forget probe (before = cache; after = a pass)"),
    ("obliviate.unlearn.setup", "model_fingerprint", "weights hash"),
    ("obliviate.unlearn.loop", "weights_hash", "weights hash"),
    ("obliviate.unlearn.setup", "adamw", "optimiser set-up"),
    ("obliviate.unlearn.loop", "save_model", "save model"),
]


def instrument(sampler: Sampler, rows: list, profile_steps: range | None = None):
    import importlib

    def wrap(fn, name):
        @functools.wraps(fn)
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                t1 = time.perf_counter()
                rows.append((name, t0, t1, rss_gib(), sampler.peak_between(t0, t1)))
        return timed

    for mod, attr, name in PHASES:
        m = importlib.import_module(mod)
        setattr(m, attr, wrap(getattr(m, attr), name))
    # the training steps: each optimiser step ends one; the time since the previous phase end is the step
    opt_step = torch.optim.AdamW.step

    def step(self, *a, **k):
        t0 = time.perf_counter()
        out = opt_step(self, *a, **k)
        t1 = time.perf_counter()
        done = sum(r[0] == "  of which AdamW" for r in rows) + 1  # optimiser steps finished, this one included
        if profile_steps is not None and done + 1 == profile_steps.start:  # record from the next step on
            PROFILER.append(torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]))
            PROFILER[0].__enter__()
        if PROFILER and done == profile_steps.stop - 1:
            PROFILER[0].__exit__(None, None, None)
        start = max((r[2] for r in rows), default=t0)
        rows.append(("training step (fwd+bwd+AdamW)", start, t1, rss_gib(), sampler.peak_between(start, t1)))
        rows.append(("  of which AdamW", t0, t1, rss_gib(), sampler.peak_between(t0, t1)))
        return out

    torch.optim.AdamW.step = step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default=None, help="world directory (default: the demo world, seed 0, in a temp dir)")
    ap.add_argument("--recipe", default="npo+gd")
    ap.add_argument("--cprofile", default=None, help="also write a cProfile of the run here")
    ap.add_argument("--torch-profile", action="store_true", help="print torch.profiler's operator table of steps 3..")
    ap.add_argument("overrides", nargs="*", help="UnlearnConfig overrides (default: max_steps=1 batch_size=4 ...)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    data = args.data
    if data is None:
        from obliviate.data.world import write_world

        data = str(write_world(Path(tmp.name) / "world", "demo", 0))
    overrides = args.overrides or ["max_steps=1"]
    argv = ["unlearn", "--model", args.model, "--data", data, "--recipe", args.recipe, "--out",
            str(Path(tmp.name) / "run"), "batch_size=4", "lr=1e-5", "max_length=128", "warmup_epochs=0", *overrides]
    sampler = Sampler()
    sampler.start()
    rows: list = []
    steps = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("max_steps=")), None)
    if args.torch_profile and (steps is None or steps < 3):
        raise SystemExit("--torch-profile needs max_steps=N with N >= 3 (steps 3..N are recorded)")
    instrument(sampler, rows, range(3, steps + 1) if args.torch_profile else None)
    os.environ.setdefault("TQDM_DISABLE", "1")
    prof = cProfile.Profile() if args.cprofile else None
    t_run = time.perf_counter()
    if prof:
        prof.enable()
    code = cli.main(argv)
    if prof:
        prof.disable()
        prof.dump_stats(args.cprofile)
    t_end = time.perf_counter()
    sampler.stop.set()
    if code:
        raise SystemExit(code)
    log = [json.loads(line) for line in (Path(tmp.name) / "run" / "log.jsonl").read_text().splitlines()]
    total = IMPORTS_S + (t_end - t_run)
    named = sum(t1 - t0 for n, t0, t1, *_ in rows if not n.startswith("  "))
    print(f"obliviate unlearn {args.recipe} {' '.join(overrides)} on {args.model}: {total:.1f} s in-process "
          f"(+ interpreter start), peak RSS {peak_rss_gib():.2f} GiB, "
          f"torch threads {torch.get_num_threads()}\n")
    print("losses by step: " + ", ".join(f"{r['loss']:.4f}" for r in log) + "\n")
    print("| phase | calls | seconds | per call | RSS at end GiB | peak inside GiB |")
    print("|---|---|---|---|---|---|")
    print(f"| imports (torch, transformers, accelerate, obliviate) | 1 | {IMPORTS_S:.2f} | | — | — |")
    order: dict = {}
    for n, t0, t1, rss, peak in rows:
        calls, r, p = order.get(n, ([], 0.0, 0.0))
        order[n] = (calls + [t1 - t0], rss, max(p, peak))
    for n, (calls, r, p) in order.items():
        each = ", ".join(f"{c:.2f}" for c in calls)
        print(f"| {n} | {len(calls)} | {sum(calls):.2f} | {each} | {r:.2f} | {p:.2f} |")
    print(f"| everything else (arg parsing, config, data loading, run dir, accelerate) | — | "
          f"{t_end - t_run - named:.2f} | | {rss_gib():.2f} | — |")
    if PROFILER:
        print(f"\ntorch.profiler, optimiser steps 3–{steps}, operators by own CPU time:\n")
        print(PROFILER[0].key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
