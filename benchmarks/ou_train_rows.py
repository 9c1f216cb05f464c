"""The training rows of issue 27's table: open-unlearning's `src/train.py` next to `obliviate unlearn`, alternating.

    python benchmarks/ou_side_by_side.py --work /tmp/ou_parity --reps 2      # sets both tools up, runs, writes
    python benchmarks/ou_train_rows.py --work /tmp/ou_parity                  # the table of <work>/ratios.json again

Imported by ou_side_by_side.py (which owns the set-up: open-unlearning's source, venv, model copy and the world in
TOFU's layout). Workload, the same for both tools: SmolLM2-135M-Instruct fp32 on CPU, the demo world's forget10
(40 items) / retain90, batch 4 forget + 4 retain (per-device batch 4, no gradient accumulation), max length 128,
lr 1e-5, no warm-up, linear decay, weight decay 0.01, gradient clipping 1.0, seed 0; NPO ↔ `npo+gd`, GradDiff ↔
`ga+gd`. Every run is a fresh process under `/usr/bin/time -v` (wall = its elapsed time, peak RSS = its maximum
resident set size), niced equally, with 10 and with 2 optimiser steps.

s/step = (t10 − t2) / 8, where t is the tool's own in-process training timer of one run: open-unlearning's
`train_runtime` (transformers' Trainer, from the start of its training loop to its end; `trainer_state.json`)
and obliviate's `seconds` (`summary.json`: `unlearn` from tokenizing to the last step, before the 'after' probe
and the save). Whatever each timer counts once per run (data, reference cache, optimiser set-up) cancels in the
difference; what it counts per step stays. open-unlearning's `train.py` always saves the model after training
(`trainer.save_model`, no switch; `save_strategy=no` only drops checkpoints), so its save is in its 2-step wall,
as obliviate's save is in ours. Its evaluation is switched off (`~eval.tofu`, `do_eval=false`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

METHODS = {"NPO": "npo+gd", "GradDiff": "ga+gd"}  # open-unlearning trainer → obliviate recipe
TIME_V = {"rss_gib": r"Maximum resident set size \(kbytes\): (\d+)", "user_s": r"User time \(seconds\): ([\d.]+)",
          "sys_s": r"System time \(seconds\): ([\d.]+)",
          "wall_s": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)"}
TARGETS = {"s_per_step": "≤ 0.50", "wall": "≤ 10 s for obliviate", "rss": "≤ 3.0 GiB by default",
           "eval": "≤ 0.33"}  # the last column


def time_v(path: Path) -> dict:
    """Wall seconds, peak RSS (GiB), user and system CPU seconds of a `/usr/bin/time -v -o path` report."""
    text = path.read_text()
    row = {}
    for key, rx in TIME_V.items():
        m = re.search(rx, text)
        if m is None:
            raise SystemExit(f"{path}: no {key!r} in the /usr/bin/time report")
        if key == "wall_s":
            row[key] = sum(float(p) * 60 ** i for i, p in enumerate(reversed(m.group(1).split(":"))))
        else:
            row[key] = float(m.group(1)) / (2 ** 20 if key == "rss_gib" else 1)
    return row


def timed(cmd: list, out: Path, *, cwd: Path | None, env: dict, nice: int) -> dict:
    """Run `cmd` under `/usr/bin/time -v` (output to out/time.txt, the command's own to out/console.log)."""
    out.mkdir(parents=True, exist_ok=True)
    full = ["nice", "-n", str(nice), "/usr/bin/time", "-v", "-o", str(out / "time.txt"), *map(str, cmd)]
    print("+", " ".join(full), flush=True)
    with open(out / "console.log", "w") as log:
        p = subprocess.run(full, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if p.returncode:
        tail = (out / "console.log").read_text()[-3000:]
        raise SystemExit(f"exit {p.returncode}: {' '.join(map(str, cmd[:4]))} ... (log {out / 'console.log'}):\n{tail}")
    return time_v(out / "time.txt")


def ou_overrides(model: Path, method: str, steps: int, name: str) -> list[str]:
    """open-unlearning's `src/train.py` on the workload above, by Hydra overrides only."""
    return [
        "--config-name=unlearn.yaml", "experiment=unlearn/tofu/default", f"trainer={method}", f"task_name={name}",
        "forget_split=forget10", "retain_split=retain90",
        f"model.model_args.pretrained_model_name_or_path={model}",
        f"model.tokenizer_args.pretrained_model_name_or_path={model}",
        "++model.model_args.device_map=cpu", "++model.model_args.attn_implementation=sdpa",
        "model.model_args.torch_dtype=float32", "model.template_args.system_prompt=null",
        "~model.template_args.date_string",
        "data.forget.TOFU_QA_forget.args.max_length=128", "data.retain.TOFU_QA_retain.args.max_length=128",
        "trainer.args.per_device_train_batch_size=4", "trainer.args.gradient_accumulation_steps=1",
        "trainer.args.learning_rate=1e-5", "trainer.args.warmup_epochs=0", f"++trainer.args.max_steps={steps}",
        "trainer.args.bf16=false", "trainer.args.bf16_full_eval=false",
        "trainer.args.optim=adamw_torch",  # its default paged_adamw_32bit needs bitsandbytes (CUDA)
        "trainer.args.report_to=none", "trainer.args.logging_steps=1",
        "trainer.args.do_eval=false", "trainer.args.eval_on_start=false", "trainer.args.eval_strategy=no",
        "~eval.tofu",  # no evaluator is built: train.py skips them when `eval` is empty
    ]


def run_ou(ou: dict, method: str, steps: int, rep: int, nice: int) -> dict:
    from obliviate.reader import read_json_object

    name = f"side_{method}_s{steps}_r{rep}"
    out = ou["src"] / "saves" / "unlearn" / name
    shutil.rmtree(out, ignore_errors=True)  # hydra's run dir: a stale one would keep an old trainer_state.json
    row = timed([ou["py"], "src/train.py", *ou_overrides(ou["model"], method, steps, name)],
                ou["work"] / "train" / name, cwd=ou["src"], env=ou["env"], nice=nice)
    history = read_json_object(out / "trainer_state.json")["log_history"]
    row["train_s"] = next(h["train_runtime"] for h in history if "train_runtime" in h)
    row["losses"] = [h["loss"] for h in history if "loss" in h]
    (out / "model.safetensors").unlink()  # 0.54 GB per run; its timings are read
    return row


def run_ours(work: Path, world: Path, recipe: str, steps: int, rep: int, nice: int, env: dict,
             extra: list[str]) -> dict:
    from obliviate.reader import read_json_lines, read_json_object

    out = work / "train" / f"side_{recipe}_s{steps}_r{rep}"
    shutil.rmtree(out, ignore_errors=True)
    row = timed([sys.executable, "-m", "obliviate", "unlearn", "--model", "smollm2-135m-instruct", "--data", world,
                 "--forget", "forget10", "--retain", "retain90", "--recipe", recipe, "--out", out / "run", "--quiet",
                 "batch_size=4", "max_length=128", "lr=1e-5", "warmup_epochs=0", f"max_steps={steps}", *extra],
                out, cwd=None, env=env, nice=nice)
    row["train_s"] = read_json_object(out / "run" / "summary.json")["seconds"]
    row["micro_batch"] = read_json_object(out / "run" / "run.json").get("micro_batch")
    row["losses"] = [r["loss"] for r in read_json_lines(out / "run" / "log.jsonl")]
    (out / "run" / "model.safetensors").unlink(missing_ok=True)
    return row


def alternate(ou: dict, work: Path, world: Path, reps: int, long: int, nice: int, env: dict,
              extra: list[str]) -> list[dict]:
    """Every repetition: per method, per step count (`long`, then 2), open-unlearning then obliviate."""
    runs = []
    for rep in range(1, reps + 1):
        for method, recipe in METHODS.items():
            for steps in (long, 2):
                for tool in ("open-unlearning", "obliviate"):
                    row = (run_ou(ou, method, steps, rep, nice) if tool == "open-unlearning"
                           else run_ours(work, world, recipe, steps, rep, nice, env, extra))
                    runs.append({"tool": tool, "method": method, "steps": steps, "rep": rep, **row})
                    print(f"rep {rep} {tool} {method} {steps} steps: timer {row['train_s']:.2f} s, wall "
                          f"{row['wall_s']:.1f} s, peak {row['rss_gib']:.2f} GiB, losses "
                          f"{', '.join(f'{x:.4f}' for x in row['losses'][:3])}", flush=True)
    return runs


def figures(runs: list[dict]) -> dict:
    """Per method and tool, one value per repetition: s/step = (t_long − t2) / (long − 2) of the timers (long = 10
    by default), the 2-step run's wall seconds and peak RSS."""
    out: dict = {"s_per_step": {}, "wall_s": {}, "rss_gib": {}}
    for method in METHODS:
        for tool in ("open-unlearning", "obliviate"):
            mine = [r for r in runs if r["method"] == method and r["tool"] == tool]
            reps = sorted({r["rep"] for r in mine})
            by = {(r["rep"], r["steps"]): r for r in mine}
            long = max((r["steps"] for r in mine), default=2)
            two = [by[rep, 2] for rep in reps if (rep, 2) in by]
            out["s_per_step"].setdefault(method, {})[tool] = [
                (by[rep, long]["train_s"] - by[rep, 2]["train_s"]) / (long - 2) for rep in reps
                if long > 2 and {(rep, long), (rep, 2)} <= by.keys()]
            out["wall_s"].setdefault(method, {})[tool] = [r["wall_s"] for r in two]
            out["rss_gib"].setdefault(method, {})[tool] = [r["rss_gib"] for r in two]
    return out


def _cell(values: list[float], unit: str = "", digits: int = 2) -> str:
    """The mean, and every repetition's value in brackets when there are several."""
    if not values:
        return "—"
    mean = f"{statistics.mean(values):.{digits}f}{unit}"
    return mean if len(values) == 1 else f"{mean} ({', '.join(f'{v:.{digits}f}' for v in values)})"


def _ratio(ours: list[float], theirs: list[float]) -> str:
    return f"{statistics.mean(ours) / statistics.mean(theirs):.2f}" if ours and theirs else "—"


def table(fig: dict | None, eval_row: dict | None) -> str:
    """Issue 27's table: figure | open-unlearning | obliviate | obliviate ÷ OU | target; a cell is the mean over
    repetitions with each repetition's value in brackets; wall and RSS rows are NPO / GradDiff. `fig` None: no
    training rows; `eval_row` None: no evaluation row."""
    lines = ["| figure | open-unlearning | obliviate | obliviate ÷ OU | target |", "|---|---|---|---|---|"]
    lines += _train_lines(fig) if fig else []
    if eval_row:
        ou, ours = eval_row["open-unlearning"], eval_row["obliviate"]
        rss = {k: f", {v['rss_gib']:.2f} GiB" if v.get("rss_gib") else "" for k, v in eval_row.items()}
        lines.append(f"| TOFU evaluation of the base model (its metric set; ours computes more) | {ou['wall_s']:.1f} s"
                     f"{rss['open-unlearning']} | {ours['wall_s']:.1f} s{rss['obliviate']} | "
                     f"{ours['wall_s'] / ou['wall_s']:.2f} | {TARGETS['eval']} |")
    return "\n".join(lines)


def _train_lines(fig: dict) -> list[str]:
    lines = []
    for method, recipe in METHODS.items():
        v = fig["s_per_step"][method]
        lines.append(f"| {method} / {recipe} s/step | {_cell(v['open-unlearning'])} | {_cell(v['obliviate'])} | "
                     f"{_ratio(v['obliviate'], v['open-unlearning'])} | {TARGETS['s_per_step']} |")
    for key, label, unit, digits, target in (("wall_s", "2-step run, wall (NPO / GradDiff)", " s", 1, "wall"),
                                             ("rss_gib", "2-step run, peak RSS (NPO / GradDiff)", " GiB", 2, "rss")):
        cells = {tool: " / ".join(_cell(fig[key][m][tool], unit, digits) for m in METHODS)
                 for tool in ("open-unlearning", "obliviate")}
        ratio = " / ".join(_ratio(fig[key][m]["obliviate"], fig[key][m]["open-unlearning"]) for m in METHODS)
        lines.append(f"| {label} | {cells['open-unlearning']} | {cells['obliviate']} | {ratio} | {TARGETS[target]} |")
    return lines


def write_ratios(work: Path, runs: list[dict], eval_row: dict | None, info: dict) -> str:
    """`<work>/ratios.md` (the table and the conditions) and `<work>/ratios.json` (every run, the figures)."""
    from obliviate.rundir import write_json, write_text

    fig = figures(runs) if runs else None
    md = table(fig, eval_row)
    write_json(work / "ratios.json", {**info, "figures": fig, "eval": eval_row, "runs": runs})
    m = info["machine"]
    write_text(work / "ratios.md", f"{md}\n\nMachine: {m['cpu']}, {m['cores']} cores; load average at start "
               f"{', '.join(f'{x:.2f}' for x in m['load_average'])}, at end "
               f"{', '.join(f'{x:.2f}' for x in info['load_average_end'])}. {info['reps']} repetition(s), runs "
               f"alternating (open-unlearning, obliviate); open-unlearning at {info['ou_commit']}; {info['date']}."
               f"{_micro_batches(runs)}\n")
    return md


def _micro_batches(runs: list[dict]) -> str:
    """obliviate's micro-batch per recipe (`micro_batch=auto` sizes it from the memory free at start)."""
    mb = {METHODS[r["method"]]: set() for r in runs if r["tool"] == "obliviate"}
    for r in runs:
        if r["tool"] == "obliviate":
            mb[METHODS[r["method"]]].add(r.get("micro_batch"))
    return "".join(f" obliviate {k}: micro-batch {', '.join(map(str, sorted(v, key=str)))}." for k, v in mb.items())


def main() -> None:
    from obliviate.reader import read_json_object

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/ou_parity", help="the work directory of ou_side_by_side.py")
    work = Path(ap.parse_args().work)
    saved = read_json_object(work / "ratios.json")
    print(table(figures(saved["runs"]) if saved["runs"] else None, saved.get("eval")))


if __name__ == "__main__":
    main()
