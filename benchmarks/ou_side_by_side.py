"""open-unlearning next to obliviate on one machine (issue 27's table): training speed, set-up, memory, evaluation.

    python benchmarks/ou_side_by_side.py --work /tmp/ou_parity               # training rows, 2 repetitions
    python benchmarks/ou_side_by_side.py --work /tmp/ou_parity --rows all    # + the TOFU evaluation row and parity
    python benchmarks/ou_side_by_side.py --work /tmp/ou_parity --rows all --table-only   # print, run nothing

Training rows (ou_train_rows.py, whose docstring gives the workload and the s/step definition): per repetition,
per method (NPO ↔ npo+gd, GradDiff ↔ ga+gd), a 10-step and a 2-step run of open-unlearning's `src/train.py`
then of `obliviate unlearn`, each under `/usr/bin/time -v`. The evaluation row: `src/eval.py` against
`obliviate eval parity=open-unlearning` (and paper mode), one run each, cached in <work> (--rerun-eval re-runs).
The table (figure | open-unlearning | obliviate | ÷ | target; means with each repetition in brackets) is printed
and written to <work>/ratios.md, every run's figures to <work>/ratios.json.

Set-up (all under --work, never inside this repository; nothing of open-unlearning is committed here):
  * open-unlearning's source at d3d7cf9, `git archive`d from the lead's mirror (--mirror);
  * a venv with its requirements.txt from PyPI (+ its lm-eval extra, which evals/__init__.py imports), torch==2.13.0
    from the local wheel (as scripts/setup.sh), without bitsandbytes / tensorboard (unused by eval, and by train
    with optim=adamw_torch report_to=none) and deepspeed (GPU-only; rmu.py imports it at module level, so an
    empty module in <work>/shims stands in);
  * SmolLM2-135M-Instruct's fp32 copy (`obliviate.models.loading`) re-described for transformers 4.45.1: that
    version reads neither `rope_parameters` (it would fall back to rope_theta = 10 000) nor the
    `TokenizersBackend` tokenizer class, so config.json / tokenizer_config.json are rewritten (weights symlinked);
  * obliviate's synthetic world (`obliviate world --preset demo`) as a local `locuslab/TOFU` dataset directory
    (JSON lines + a README `configs:` block), which `datasets.load_dataset("locuslab/TOFU", name=...)` reads
    offline from the working directory. The world has no real-authors split: its Model Utility rows are removed
    on both sides (6 of TOFU's 9 values, as obliviate's world always has).
open-unlearning runs `src/eval.py experiment=eval/tofu/default` and `src/train.py experiment=unlearn/tofu/default`
with Hydra overrides only (CPU, fp32, sdpa, the template's own system prompt). Timings are whatever this machine
gives; quote them with what else was running (ratios.md records the load average at start and end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ou_train_rows import alternate, figures, table as ratios_table, time_v, write_ratios

from obliviate.pipeline.bench import machine

COMMIT = "d3d7cf9"
MIRROR = "/work/.mirror/locuslab+open-unlearning/repo"
PIP = ["huggingface-hub==0.29.1", "transformers==4.45.1", "numpy==2.2.3", "hydra-core==1.3", "hydra_colorlog==1.2.0",
       "datasets==3.0.1", "accelerate==0.34.2", "rouge-score==0.1.2", "scipy==1.14.1", "scikit-learn==1.5.2"]
SPLITS = ("forget10_perturbed", "holdout10", "retain_perturbed", "world_facts_perturbed",  # evaluation
          "forget10", "retain90")  # training
RA_METRICS = ("ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, check=True, env=kw.pop("env", ENV), **kw)


def shim(work: Path) -> Path:
    """src/trainer/unlearn/rmu.py:5 imports deepspeed at module level (train.py and eval.py import it), never
    calls it on these paths, and it is GPU-only: an empty module in <work>/shims stands in."""
    (work / "shims" / "deepspeed").mkdir(parents=True, exist_ok=True)
    (work / "shims" / "deepspeed" / "__init__.py").write_text('"""Empty stand-in: imported by open-unlearning, '
                                                              'never used on CPU."""\n')
    return work / "shims"


def setup_source(work: Path, mirror: str) -> Path:
    src = work / "open-unlearning"
    if not (src / "src" / "eval.py").is_file():
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", f"--git-dir={mirror}", "archive", COMMIT], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    return src


def setup_venv(work: Path) -> Path:
    py = work / "venv" / "bin" / "python"
    if not (work / "venv" / ".ready").is_file():
        run([sys.executable, "-m", "venv", str(work / "venv")])
        run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0"])  # the local CPU wheel (scripts/setup.sh)
        run([str(py), "-m", "pip", "install", "-q", *PIP, "lm-eval==0.4.8"])  # evals/__init__.py imports lm_eval
        (work / "venv" / ".ready").touch()
    return py


def setup_model(work: Path) -> Path:
    """The fp32 SmolLM2 copy, with a config / tokenizer config transformers 4.45.1 reads the same way."""
    from obliviate.models.loading import SMOLLM2, load_tokenizer
    from obliviate.models.loading import _smollm2_dir  # noqa: PLC2701  (the cached fp32 directory)

    load_tokenizer(SMOLLM2)
    src, out = _smollm2_dir(), work / "smollm2-ou"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "tokenizer.json", "generation_config.json"):
        if not (out / name).exists():
            (out / name).symlink_to(src / name)
    cfg = json.loads((src / "config.json").read_text())
    cfg["rope_theta"] = cfg.pop("rope_parameters", {}).get("rope_theta", 10000.0)
    cfg["torch_dtype"] = cfg.pop("dtype", "float32")
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    tcfg = json.loads((src / "tokenizer_config.json").read_text())
    tcfg = {k: v for k, v in tcfg.items() if k not in ("backend", "is_local", "local_files_only")}
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tcfg["chat_template"] = (src / "chat_template.jinja").read_text()
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=1))
    return out


def setup_data(work: Path, src: Path, preset: str) -> Path:
    world = work / "world"
    if not (world / "forget10_perturbed.json").is_file():
        run([sys.executable, "-m", "obliviate", "world", "--preset", preset, "--out", str(world)])
    tofu = src / "locuslab" / "TOFU"
    tofu.mkdir(parents=True, exist_ok=True)
    configs = []
    for split in SPLITS:
        records = json.loads((world / f"{split}.json").read_text())
        keep = ("question", "answer", "paraphrased_answer", "perturbed_answer")
        lines = [json.dumps({k: r[k] for k in keep if k in r}) for r in records]
        (tofu / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
        configs.append(f"- config_name: {split}\n  data_files:\n  - split: train\n    path: {split}.jsonl")
    (tofu / "README.md").write_text("---\nconfigs:\n" + "\n".join(configs) + "\n---\n")
    return world


def run_ou(work: Path, py: Path, src: Path, model: Path) -> dict:
    out = src / "saves" / "eval" / "parity"
    if not (out / "seconds.txt").is_file():  # TOFU_EVAL.json is written after every metric: not a sign of the end
        overrides = [
            "experiment=eval/tofu/default", "task_name=parity", "forget_split=forget10", "holdout_split=holdout10",
            f"model.model_args.pretrained_model_name_or_path={model}",
            f"model.tokenizer_args.pretrained_model_name_or_path={model}",
            "model.model_args.device_map=cpu", "model.model_args.attn_implementation=sdpa",
            "model.model_args.torch_dtype=float32", "model.template_args.system_prompt=null",
            "~model.template_args.date_string",
            *[f"~eval.tofu.metrics.model_utility.pre_compute.{m}" for m in RA_METRICS],
        ]
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        run(["nice", "-n", "5", "/usr/bin/time", "-v", "-o", str(out / "time.txt"), str(py), "src/eval.py",
             *overrides], cwd=src, env={**ENV, "PYTHONPATH": str(shim(work))})
        (out / "seconds.txt").write_text(f"{time.time() - t0:.0f}\n")
    return json.loads((out / "TOFU_EVAL.json").read_text())


EVAL_BATCHES = ["batch_size=32", "gen_batch_size=32"]  # open-unlearning's eval batch; --ours-eval-defaults drops it


def run_ours(work: Path, world: Path, parity: str, batches: list[str] = EVAL_BATCHES) -> dict:
    out = work / f"obliviate-{parity}"
    if not (out / "eval.json").is_file():
        t0 = time.time()
        run(["nice", "-n", "5", "/usr/bin/time", "-v", "-o", f"{out}.time.txt", sys.executable, "-m", "obliviate",
             "eval", "--model", "smollm2-135m-instruct", "--data", str(world), "--out", str(out), "--overwrite",
             f"parity={parity}", "embedder=null", *batches])
        (out / "seconds.txt").write_text(f"{time.time() - t0:.0f}\n")
        Path(f"{out}.time.txt").rename(out / "time.txt")  # the run directory is claimed by `eval`: written after
    return json.loads((out / "eval.json").read_text())


OU_KEYS = {  # the rows: open-unlearning's metric (pre-computed parts are top-level entries of TOFU_EVAL.json)
    "forget Prob": "forget_Q_A_Prob", "forget ROUGE-L recall": "forget_Q_A_ROUGE",
    "forget truth ratio": "forget_truth_ratio", "extraction strength (forget)": "extraction_strength",
    "retain Prob": "retain_Q_A_Prob", "retain ROUGE": "retain_Q_A_ROUGE", "retain truth ratio": "retain_Truth_Ratio",
    "world facts Prob (normalised)": "wf_Q_A_Prob_normalised", "world facts ROUGE": "wf_Q_A_ROUGE",
    "world facts truth ratio": "wf_Truth_Ratio", "Model Utility": "model_utility", "MIA Min-K AUC": "mia_min_k",
}
GEN_ROLES = {"forget": "forget_Q_A_ROUGE", "retain": "retain_Q_A_ROUGE", "world_facts": "wf_Q_A_ROUGE"}


def ou_rows(ou: dict) -> dict[str, float]:
    return {row: ou[key]["agg_value"] for row, key in OU_KEYS.items() if key in ou}


def generation_agreement(ou: dict, ours: dict) -> list[str]:
    """Per generated split: how many greedy answers are identical text (the rest explain ROUGE differences)."""
    out = []
    for role, key in GEN_ROLES.items():
        if key not in ou or role not in ours["splits"]:
            continue
        theirs = [ou[key]["value_by_index"][str(i)]["generation"] for i in range(len(ou[key]["value_by_index"]))]
        mine = [it.get("generation") for it in ours["splits"][role]["items"]]
        same = sum(a == b for a, b in zip(theirs, mine))
        out.append(f"{role}: {same}/{len(theirs)} greedy answers identical")
    return out


def our_rows(r: dict) -> dict[str, float]:
    s, a = r["splits"], r["aggregates"]
    return {
        "forget Prob": s["forget"]["means"]["prob"], "forget ROUGE-L recall": s["forget"]["means"]["rouge_l_recall"],
        "forget truth ratio": s["forget"]["means"]["truth_ratio"],
        "extraction strength (forget)": s["forget"]["means"]["extraction_strength"],
        "retain Prob": s["retain"]["means"]["prob"], "retain ROUGE": s["retain"]["means"]["rouge_l_recall"],
        "retain truth ratio": s["retain"]["means"]["truth_ratio"],
        "world facts Prob (normalised)": s["world_facts"]["means"]["prob"],
        "world facts ROUGE": s["world_facts"]["means"]["rouge_l_recall"],
        "world facts truth ratio": s["world_facts"]["means"]["truth_ratio"],
        "Model Utility": a["model_utility"], "MIA Min-K AUC": a["mia"]["min_k"],
    }


def table(ou: dict[str, float], paper: dict[str, float] | None, par: dict[str, float]) -> str:
    """The issue's table; `paper`: None when that run is missing (shown as —)."""
    lines = ["| metric | open-unlearning | obliviate paper | obliviate parity=open-unlearning | |parity − OU| |",
             "|---|---|---|---|---|"]
    for k, v in ou.items():
        if k not in par:
            continue
        p = f"{paper[k]:.4f}" if paper else "—"
        lines.append(f"| {k} | {v:.4f} | {p} | {par[k]:.4f} | {abs(par[k] - v):.2e} |")
    return "\n".join(lines)


def eval_rows(work: Path, src: Path, args) -> dict:
    """The evaluation row (runs cached: an existing result is reused) after printing the parity table."""
    if args.rerun_eval and not args.table_only:  # the cached results kept aside, named by the time of the re-run
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for d in (src / "saves" / "eval" / "parity", work / "obliviate-paper", work / "obliviate-open-unlearning"):
            if d.exists():
                d.rename(d.with_name(f"{d.name}.{stamp}"))
    if not args.table_only:
        py, model = setup_venv(work), setup_model(work)
        world = setup_data(work, src, args.preset)
        run_ou(work, py, src, model)
        for parity in ("paper", "open-unlearning"):
            run_ours(work, world, parity, [] if args.ours_eval_defaults else EVAL_BATCHES)
    ou_dir = src / "saves" / "eval" / "parity"
    ou = json.loads((ou_dir / "TOFU_EVAL.json").read_text())
    mine = {p: json.loads((work / f"obliviate-{p}" / "eval.json").read_text()) for p in ("paper", "open-unlearning")
            if (work / f"obliviate-{p}" / "seconds.txt").is_file()}
    paper = our_rows(mine["paper"]) if "paper" in mine else None
    print(table(ou_rows(ou), paper, our_rows(mine["open-unlearning"])))
    print("\n".join(generation_agreement(ou, mine["open-unlearning"])))
    for name, d in [("open-unlearning", ou_dir)] + [(f"obliviate {p}", work / f"obliviate-{p}") for p in mine]:
        if (d / "seconds.txt").is_file():
            print(f"{name}: {(d / 'seconds.txt').read_text().strip()} s")
    return {tool: {"wall_s": float((d / "seconds.txt").read_text()),  # time.txt: runs from before it was recorded
                   "rss_gib": time_v(d / "time.txt")["rss_gib"] if (d / "time.txt").is_file() else None}
            for tool, d in (("open-unlearning", ou_dir), ("obliviate", work / "obliviate-open-unlearning"))}


def train_rows(work: Path, src: Path, args) -> list[dict]:
    """The training rows' runs, alternating (ou_train_rows.alternate)."""
    ou = {"work": work, "src": src, "py": setup_venv(work), "model": setup_model(work),
          "env": {**ENV, "PYTHONPATH": str(shim(work))}}
    world = setup_data(work, src, args.preset)
    return alternate(ou, work, world, args.reps, args.steps, args.nice, ENV, args.ours)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Rows: --rows train (default) runs the training rows (NPO / GradDiff s/step, "
                                        "2-step wall and peak RSS; ou_train_rows.py); --rows eval the TOFU evaluation "
                                        "row and parity table; --rows all both. Writes <work>/ratios.md and .json.")
    ap.add_argument("--work", default="/tmp/ou_parity", help="scratch directory (outside the repository)")
    ap.add_argument("--mirror", default=MIRROR, help="bare git dir of open-unlearning holding commit " + COMMIT)
    ap.add_argument("--preset", default="demo", help="obliviate world preset")
    ap.add_argument("--rows", choices=("train", "eval", "all"), default="train", help="rows to run (default train)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of the alternating training runs (default 2)")
    ap.add_argument("--steps", type=int, default=10,
                    help="the long run's steps (default 10): s/step = (t_steps − t2)/(steps − 2)")
    ap.add_argument("--nice", type=int, default=5, help="niceness of every measured run, both tools (default 5)")
    ap.add_argument("--ours", nargs="*", default=[], metavar="K=V", help="extra `obliviate unlearn` overrides")
    ap.add_argument("--ours-eval-defaults", action="store_true",
                    help="run `obliviate eval` at its default batch sizes (16 scored, 64 generated) instead of "
                         "open-unlearning's 32")
    ap.add_argument("--rerun-eval", action="store_true",
                    help="re-run the evaluation row (its cached results are renamed <dir>.<time>, not deleted)")
    ap.add_argument("--table-only", action="store_true", help="print the tables from earlier runs")
    args = ap.parse_args()
    if args.reps < 1 or args.steps < 3:
        raise SystemExit("--reps must be ≥ 1 and --steps ≥ 3 (s/step needs a run longer than the 2-step one)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src = setup_source(work, args.mirror)
    if args.table_only:  # nothing runs and nothing is written
        saved = json.loads((work / "ratios.json").read_text()) if (work / "ratios.json").is_file() else {}
        eval_row = eval_rows(work, src, args) if args.rows in ("eval", "all") else saved.get("eval")
        print(ratios_table(figures(saved.get("runs", [])) if args.rows != "eval" else None, eval_row))
        return
    head = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or None  # None: not run from a git checkout
    info = {"machine": machine(), "ou_commit": COMMIT, "ou_pip": PIP, "obliviate_commit": head, "reps": args.reps,
            "steps": args.steps, "rows": args.rows, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "ours_overrides": args.ours, "nice": args.nice}
    eval_row = eval_rows(work, src, args) if args.rows in ("eval", "all") else None
    runs = train_rows(work, src, args) if args.rows in ("train", "all") else []
    info["load_average_end"] = os.getloadavg()
    print(write_ratios(work, runs, eval_row, info))
    print(f"saved {work / 'ratios.md'} and {work / 'ratios.json'}")


if __name__ == "__main__":
    main()
