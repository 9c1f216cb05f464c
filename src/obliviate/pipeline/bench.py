"""`obliviate bench`: training and evaluation speed on one model, printed and saved as JSON + a markdown table.

    results = run_bench(BenchConfig(model="smollm2-135m-instruct", recipes=["ga+gd", "npo+gd"], eval=True), out)

The workload is the issue-13 one: the demo world's forget10 (40 items) / retain90, batch 4 forget + 4 retain,
max_length 128, lr 1e-5. Each recipe runs in its own spawned process (so its peak RSS is its own), which
loads the model once, measures the dense fp32 matmul peak with the same thread settings, then times every
optimiser step after `warmup` steps. Counted per step: forward passes with gradient (each followed by a
backward) and without (reference / perturbed-weight probes), and their non-pad tokens, so

    FLOP utilisation = Σ (6·P·tokens of grad passes + 2·P·tokens of no-grad passes) / step time / matmul peak

with P all parameters (6·P·tokens per forward+backward, as the issue defines it). The fixed cost of a run is
the wall time of a 1-step `obliviate unlearn` subprocess minus one median step, and inside `unlearn`:
its own seconds minus the step times (tokenizing, reference cache, probes, saving).
"""

from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from obliviate import keep_freed_memory
from obliviate.reader import read_json_object

from obliviate.pipeline.pool import call_in_worker, die_with_parent
from obliviate.rundir import write_json, write_text

RECIPES = ("ga+gd", "npo+gd", "me+gd", "idk+ap", "dpo+kl", "npo+gd+sam")


@dataclass
class BenchConfig:
    model: str = "tiny"  # tiny (fresh, built in a temp dir) | smollm2-135m-instruct | a model directory
    data: str | None = None  # world directory (default: the demo world, seed 0, built in a temp dir)
    recipes: list[str] = field(default_factory=lambda: list(RECIPES))
    steps: int = 8  # timed steps per recipe, after the warm-up
    warmup: int = 2
    batch_size: int = 4
    max_length: int = 128
    lr: float = 1e-5
    eval: bool = False
    eval_items: int = 40  # forget10 items scored (answer + paraphrase + perturbed answers each)
    gen_items: int = 16  # prompts generated
    max_new_tokens: int = 200
    demo: bool = False
    fixed_cost: bool = True  # time a 1-step `obliviate unlearn` subprocess
    model_args: str | None = None  # `--model-args` (dtype=..., device_map=...): how the model is loaded

    RANGES: ClassVar[dict[str, str]] = {  # config.check_ranges
        "steps": "[1, 1e6]", "warmup": "[0, 1e6]", "batch_size": "[1, 65536]", "max_length": "[8, 131072]",
        "lr": "(0, 10]", "eval_items": "[1, 1e7]", "gen_items": "[1, 1e7]", "max_new_tokens": "[1, 131072]",
    }

    def __post_init__(self):
        from obliviate.config import check_ranges

        check_ranges(self)


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """Dense fp32 matmul GFLOP/s (best of `reps`, n×n @ n×n) on this process's device (CUDA when present; on
    CPU with this process's thread settings)."""
    import torch

    from obliviate.models.device import default_device

    dev = default_device()
    sync = clock_sync(dev)
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    a @ b  # warm-up
    sync()
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: KiB


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else {}


class PassCounter:
    """Forward calls of the policy and of every copy of it (the deepcopied reference keeps the hook; perturbed-
    weight calls go through the module too): with gradient (a backward follows) or without, and their non-pad
    tokens. The hook is a plain closure so `copy.deepcopy(model)` shares it instead of copying the counter."""

    def __init__(self, model):
        import torch

        self.reset()

        def hook(_module, args, kwargs):
            mask = kwargs.get("attention_mask")
            ids = kwargs.get("input_ids", args[0] if args else None)
            n = int(mask.sum()) if mask is not None else (ids.numel() if ids is not None else 0)
            if torch.is_grad_enabled():
                self.grad, self.grad_tokens = self.grad + 1, self.grad_tokens + n
            else:
                self.nograd, self.nograd_tokens = self.nograd + 1, self.nograd_tokens + n

        model.register_forward_pre_hook(hook, with_kwargs=True)

    def reset(self):
        self.grad = self.nograd = self.grad_tokens = self.nograd_tokens = 0


def clock_sync(device):
    """What to call before reading the clock on `device`: CUDA runs kernels asynchronously, so without
    `torch.cuda.synchronize` a step's time would land in the next one; nothing on the CPU."""
    import torch

    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def _recipe_worker(cfg: dict, model_dir: str, data_dir: str, recipe: str) -> dict:
    keep_freed_memory()  # as the CLI does (a spawned worker starts with malloc's defaults)
    return recipe_speed(BenchConfig(**cfg), model_dir, data_dir, recipe)


def recipe_speed(cfg: BenchConfig, model_dir: str, data_dir: str, recipe: str) -> dict:
    """Per-step times, passes and tokens of one recipe, in this process (see the module docstring)."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from obliviate.data.loading import load_split
    from obliviate.models.loading import load_model
    from obliviate.unlearn import UnlearnConfig, unlearn

    peak = matmul_peak()
    t = time.perf_counter()
    model, tok = load_model(model_dir, model_args=cfg.model_args)
    load_s = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())
    forget, retain = load_split(data_dir, "forget10"), load_split(data_dir, "retain90")
    counter = PassCounter(model)
    steps: list[dict] = []
    mark = {"t": None}
    sync = clock_sync(next(model.parameters()).device)

    def on_step(*_):
        sync()
        now = time.perf_counter()
        steps.append({"seconds": now - mark["t"], "grad": counter.grad, "nograd": counter.nograd,
                      "grad_tokens": counter.grad_tokens, "nograd_tokens": counter.nograd_tokens})
        counter.reset()
        mark["t"] = time.perf_counter()

    def first_forward(*_a, **_k):  # the step clock starts at the first training forward, after set-up
        if mark["t"] is None and torch.is_grad_enabled():
            sync()
            mark["t"] = time.perf_counter()
            counter.reset()

    model.register_forward_pre_hook(first_forward, with_kwargs=True)
    handle = register_optimizer_step_post_hook(on_step)
    ucfg = UnlearnConfig(recipe=recipe, max_steps=cfg.warmup + cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                         max_length=cfg.max_length, warmup_epochs=0)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unlearn(model, tok, forget, retain, ucfg, progress=False)
    total = time.perf_counter() - t
    handle.remove()
    timed = steps[cfg.warmup:]
    flops = [(6 * params * s["grad_tokens"] + 2 * params * s["nograd_tokens"]) / s["seconds"] for s in timed]
    return {
        "recipe": recipe, "params": params, "threads": torch.get_num_threads(), "matmul_peak_gflops": peak,
        "s_per_step": spread([s["seconds"] for s in timed]),
        "tokens_per_s": spread([(s["grad_tokens"]) / s["seconds"] for s in timed]),
        "flop_utilisation": spread([f / (peak * 1e9) for f in flops]),
        "passes_per_step": {"forward_backward": statistics.mean(s["grad"] for s in timed),
                            "forward_only": statistics.mean(s["nograd"] for s in timed)},
        "peak_rss_gib": peak_rss_gib(),
        "cuda_peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None,
        "load_s": load_s, "unlearn_fixed_s": total - sum(s["seconds"] for s in steps),
    }


def _spawn(target, *args) -> dict:
    """`target(*args)` in its own spawned process (its peak RSS is its own), tied to this one both ways
    (`pool.call_in_worker`: a killed worker is an error here within a second, a killed parent ends the worker)."""
    return call_in_worker(target, *args, what="bench worker")


def _eval_worker(cfg: dict, model_dir: str, data_dir: str) -> dict:
    keep_freed_memory()  # as the CLI does (a spawned worker starts with malloc's defaults)
    return eval_speed(BenchConfig(**cfg), model_dir, data_dir)


def eval_speed(cfg: BenchConfig, model_dir: str, data_dir: str) -> dict:
    """Items/s of the one-pass scoring (answer + paraphrase + perturbed answers per item) and of generation."""
    from obliviate.data.format import encode_prompt
    from obliviate.data.loading import load_split
    from obliviate.evaluate.config import EvalConfig
    from obliviate.evaluate.generate import generate
    from obliviate.evaluate.passes import forward_scores
    from obliviate.models.loading import load_model

    ecfg = EvalConfig()
    model, tok = load_model(model_dir, model_args=cfg.model_args)
    model.eval()
    records = load_split(data_dir, "forget10_perturbed")[: cfg.eval_items]
    pairs = [(r["question"], a) for r in records
             for a in [r["answer"]] + ([r["paraphrased_answer"]] if r.get("paraphrased_answer") else [])
             + list(r.get("perturbed_answer", []))]
    forward_scores(model, tok, pairs[: ecfg.batch_size], batch_size=ecfg.batch_size)  # warm-up
    t = time.perf_counter()
    forward_scores(model, tok, pairs, batch_size=ecfg.batch_size, max_length=ecfg.max_length)
    score_s = time.perf_counter() - t
    prompts = [encode_prompt(tok, r["question"]) for r in records[: cfg.gen_items]]
    t = time.perf_counter()
    _, ids = generate(model, tok, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=ecfg.gen_batch_size)
    gen_s = time.perf_counter() - t
    return {"scoring_items": len(records), "scoring_sequences": len(pairs), "scoring_s": score_s,
            "scoring_items_per_s": len(records) / score_s, "scoring_sequences_per_s": len(pairs) / score_s,
            "generation_items": len(prompts), "generation_s": gen_s, "generation_items_per_s": len(prompts) / gen_s,
            "generated_tokens": sum(len(i) for i in ids), "max_new_tokens": cfg.max_new_tokens,
            "batch_size": ecfg.batch_size, "gen_batch_size": ecfg.gen_batch_size, "peak_rss_gib": peak_rss_gib()}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "obliviate", *args]


def fixed_cost(cfg: BenchConfig, model_dir: str, data_dir: str, recipe: str, tmp: Path) -> float:
    """Wall seconds of a 1-step `obliviate unlearn` subprocess (imports, loading, set-up, probes, saving)."""
    t = time.perf_counter()
    subprocess.run(_cli("unlearn", "--model", model_dir, "--data", data_dir, "--recipe", recipe,
                        "--out", str(tmp / "fixed"), "--overwrite", "max_steps=1", f"batch_size={cfg.batch_size}",
                        f"lr={cfg.lr}", f"max_length={cfg.max_length}", "warmup_epochs=0"),
                   check=True, capture_output=True, env={**os.environ, "TQDM_DISABLE": "1"},
                   preexec_fn=die_with_parent)
    return time.perf_counter() - t


def demo_stages(tmp: Path) -> dict:
    """Wall seconds of `obliviate demo --preset tiny --seeds 1` and of each of its stages (stage.json files)."""
    out = tmp / "demo"
    t = time.perf_counter()
    subprocess.run(_cli("demo", "--preset", "tiny", "--seeds", "1", "--out", str(out)), check=True,
                   capture_output=True, preexec_fn=die_with_parent)
    wall = time.perf_counter() - t
    stages = {str(f.parent.relative_to(out)): read_json_object(f)["seconds"] for f in sorted(out.rglob("stage.json"))}
    return {"wall_s": wall, "stages_s": stages}


def _workload(cfg: BenchConfig, tmp: Path) -> tuple[str, str]:
    from obliviate.data.world import write_world
    from obliviate.models.loading import SMOLLM2, _smollm2_dir

    data = cfg.data or str(write_world(tmp / "world", "demo", 0))
    if cfg.model == "tiny":
        from obliviate.models.init import init_model

        init_model("tiny", data, tmp / "model", seed=0)
        return str(tmp / "model"), data
    if cfg.model == SMOLLM2:
        return str(_smollm2_dir()), data
    return cfg.model, data


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "LD_PRELOAD") if k in os.environ},
            "load_average": os.getloadavg()}


def run_bench(cfg: BenchConfig, out: Path, *, progress: bool = True) -> dict:
    """Every measurement `cfg` asks for; writes `out/bench.json` and `out/bench.md` (atomically; `out` is a run
    directory the caller claimed, `rundir.run_dir`); returns the results."""
    from obliviate.rundir import progress_bar

    results: dict = {"config": asdict(cfg), "machine": machine(), "recipes": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir, data_dir = _workload(cfg, tmp)
        results["model_dir"], results["data_dir"] = model_dir, data_dir
        jobs = [*cfg.recipes, *(["fixed cost"] if cfg.fixed_cost and cfg.recipes else []),
                *(["eval"] if cfg.eval else []), *(["demo"] if cfg.demo else [])]
        bar = progress_bar(jobs, desc="bench", progress=progress, leave=True)
        for job in bar:
            bar.set_postfix_str(job)
            if job == "fixed cost":
                recipe = cfg.recipes[0]
                wall = fixed_cost(cfg, model_dir, data_dir, recipe, tmp)
                step = results["recipes"][recipe]["s_per_step"]["median"]
                results["fixed_cost"] = {"recipe": recipe, "wall_1_step_s": wall, "wall_fixed_s": wall - step}
            elif job == "eval":
                results["eval"] = _spawn(_eval_worker, asdict(cfg), model_dir, data_dir)
            elif job == "demo":
                results["demo"] = demo_stages(tmp)
            else:
                results["recipes"][job] = _spawn(_recipe_worker, asdict(cfg), model_dir, data_dir, job)
    first = next(iter(results["recipes"].values()), {})
    results["params"], results["matmul_peak_gflops"] = first.get("params"), first.get("matmul_peak_gflops")
    write_json(out / "bench.json", results)
    write_text(out / "bench.md", markdown(results))
    return results


def markdown(r: dict) -> str:
    """The bench results as markdown tables (what `obliviate bench` prints)."""
    m, c = r["machine"], r["config"]
    lines = [f"model `{c['model']}` ({(r.get('params') or 0) / 1e6:.1f}M params), {m['cpu']}, {m['cores']} cores, "
             f"{m['torch_threads']} torch threads, load average {m['load_average'][0]:.2f} at start; dense fp32 "
             f"matmul peak {r.get('matmul_peak_gflops') or float('nan'):.1f} GFLOP/s (2048², in-process)",
             f"workload: demo world forget10/retain90, batch {c['batch_size']}+{c['batch_size']}, max_length "
             f"{c['max_length']}, lr {c['lr']}, {c['steps']} timed steps after {c['warmup']} warm-up", ""]
    if r["recipes"]:
        lines += ["| recipe | s/step median (min–max) | tokens/s median | FLOP util. median (min–max) | "
                  "fwd+bwd / fwd-only per step | peak RSS GiB | load s | set-up in unlearn s |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, x in r["recipes"].items():
            s, u, p = x["s_per_step"], x["flop_utilisation"], x["passes_per_step"]
            lines.append(f"| {name} | {s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f}) | "
                         f"{x['tokens_per_s']['median']:.0f} | {100 * u['median']:.1f}% ({100 * u['min']:.1f}–"
                         f"{100 * u['max']:.1f}%) | {p['forward_backward']:g} / {p['forward_only']:g} | "
                         f"{x['peak_rss_gib']:.2f} | {x['load_s']:.2f} | {x['unlearn_fixed_s']:.2f} |")
    if "fixed_cost" in r:
        f = r["fixed_cost"]
        lines += ["", f"fixed cost of a run ({f['recipe']}, `obliviate unlearn` max_steps=1, wall): "
                      f"{f['wall_fixed_s']:.1f} s (1-step run {f['wall_1_step_s']:.1f} s)"]
    if "eval" in r:
        e = r["eval"]
        lines += ["", "| evaluation | items | seconds | items/s |", "|---|---|---|---|",
                  f"| scoring pass ({e['scoring_sequences']} sequences, batch {e['batch_size']}) | "
                  f"{e['scoring_items']} | {e['scoring_s']:.2f} | {e['scoring_items_per_s']:.2f} |",
                  f"| generation (≤{e['max_new_tokens']} new tokens, {e['generated_tokens']} generated, batch "
                  f"{e['gen_batch_size']}) | {e['generation_items']} | {e['generation_s']:.2f} | "
                  f"{e['generation_items_per_s']:.2f} |"]
    if "demo" in r:
        d = r["demo"]
        lines += ["", f"demo (tiny, 1 seed): {d['wall_s']:.1f} s wall", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in d["stages_s"].items()]
    return "\n".join(lines) + "\n"
