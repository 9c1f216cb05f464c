"""The scenarios' tables, plots and report-card sections (the computation lives in `obliviate.scenarios`).

    headers, rows = continual_table(info)        # info: a continual.json (scenarios.continual)
    fig = plot_continual([info, ...])
    section = continual_section("runs/demo")     # (html, markdown) or None: every continual.json under the run
    headers, rows = realworld_table(info)        # info: a realworld.json (scenarios.realworld)
"""

from __future__ import annotations

import re
from pathlib import Path

from obliviate import html as H
from obliviate.report.glossary import arrowed
from obliviate.stagecache import read_whole, stage_done
from obliviate.rundir import write_bytes


def continual_table(info: dict) -> tuple[list[str], list[list]]:
    """(headers, rows) of the per-task table: utility, the current task's and earlier tasks' forgetting."""
    fe = "forget_efficacy" if any("forget_efficacy" in (r.get("current") or {}) for r in info["rows"]) \
        else "forget_efficacy_no_es"
    mu = "mu18" if any("mu18" in r for r in info["rows"]) else "mu18_no_es"
    label = "" if fe == "forget_efficacy" else " (no ES)"
    headers = ["task", f"MU-18{label}", "Model Utility", f"FE current{label}", f"FE earlier tasks{label}",
               "FE min earlier", "forget ROUGE current", "forget ROUGE earlier", "retain ROUGE", "world ROUGE"]
    rows = []
    for r in info["rows"]:
        cur, early = r.get("current") or {}, r.get("earlier_all") or {}
        per = [e.get(fe) for e in r.get("earlier", []) if e.get(fe) is not None]
        if r["task"] == 0:  # the starting model on task 1
            cur = (r.get("pool_tasks") or [{}])[0]
        rows.append([r["task"], r.get(mu), r.get("model_utility"), cur.get(fe), early.get(fe),
                     min(per) if per else None, cur.get("rouge_l_recall"), early.get("rouge_l_recall"),
                     (r.get("retain") or {}).get("rouge_l_recall"), (r.get("world_facts") or {}).get("rouge_l_recall")])
    return headers, rows


def plot_continual(infos: list[dict]):
    """MU and FE against the task index, one line per recipe/reference (dashed: FE on earlier tasks)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, info in enumerate(infos):
        headers, rows = continual_table(info)
        name = f"{info['recipe']} (ref {info['reference']})"
        tasks = [r[0] for r in rows]
        axes[0].plot(tasks, [r[1] for r in rows], marker="o", color=f"C{i}", label=name)
        axes[1].plot(tasks, [r[3] for r in rows], marker="o", color=f"C{i}", label=f"{name}: current task")
        early = [(r[0], r[4]) for r in rows if r[4] is not None]
        if early:
            axes[1].plot(*zip(*early), ls="--", marker=".", color=f"C{i}", label=f"{name}: earlier tasks")
    axes[0].set_ylabel(headers[1])
    axes[1].set_ylabel("Forget Efficacy" + (" (no ES)" if "no ES" in headers[3] else ""))
    for ax in axes:
        ax.set_xlabel("task (0 = before unlearning)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=7)
    fig.suptitle("Continual unlearning: utility and forgetting after each task")
    fig.tight_layout()
    return fig


def find_continual(run: str | Path, notes: list[str] | None = None) -> list[dict]:
    """Every finished continual.json under `run` (itself included), in path order; what is skipped gets a line
    in `notes`. Finished: whole JSON with a row per task (+ row 0); inside a pipeline run (`continual/<name>/
    seed<k>/`) also a stage the pipeline marked complete (a whole stage.json), so an interrupted stage's
    `seed<k>.partial` or a `seed0.bak` copy is never shown as a result."""
    run, out = Path(run), []
    for f in sorted(run.rglob("continual.json")):
        rel, info = f.parent.relative_to(run), read_whole(f)
        staged = "continual" in (run.name, *rel.parts[:-2]) and len(rel.parts) >= 2
        why = ("not whole JSON" if not isinstance(info, dict) else
               "an unfinished run (fewer rows than tasks)" if len(info.get("rows", [])) < len(info.get("plan", [])) + 1
               else "not a finished pipeline stage" if staged and not (re.fullmatch(r"seed\d+", f.parent.name) and
                                                                         stage_done(f.parent))
               else "")
        if why:
            (notes if notes is not None else []).append(f"ignored {f.relative_to(run)}: {why}")
        else:
            out.append(info | {"path": str(f.parent)})
    return out


def continual_section(run: str | Path, out: str | Path | None = None,
                      notes: list[str] | None = None) -> tuple[str, str] | None:
    """(html, markdown) of the report card's continual section (its figure written to `out`, default `run`), or
    None when `run` holds no finished continual results."""
    infos = find_continual(run, notes)
    if not infos:
        return None
    png = H.figure_png(plot_continual(infos))
    write_bytes(Path(out or run) / "continual.png", png)
    html, md = [], ["## Continual unlearning", "", "![continual](continual.png)", ""]
    for info in infos:
        headers, rows = continual_table(info)
        headers = [arrowed(h) for h in headers]
        title = (f"{info['recipe']} (reference {info['reference']}): {len(info['plan'])} tasks of "
                 f"{info['plan'][0]['n']} items, base retain {info['base_retain_n']} items — {info['path']}")
        html += [H.paragraph(title), H.table_html(headers, rows)]
        md += [f"**{title}**", "", H.table_md(headers, rows), ""]
    note = ("Row 0 = the model before unlearning (on task 1's items). FE current = Forget Efficacy on the task just "
            "unlearned; FE earlier tasks = on all earlier tasks' items, re-scored by the current model (does "
            "forgotten knowledge come back?); FE min earlier = the worst earlier task.")
    return (H.section("Continual unlearning", H.image_html(png, "utility and forgetting after each task"), *html,
                      H.paragraph(note, note=True)), "\n".join(md + [note, ""]))


def realworld_table(info: dict) -> tuple[list[str], list[list]]:
    headers = ["model", "FE forget (no ES)", "MU neighbours (no ES)", "forget ROUGE", "forget Prob",
               "neighbour ROUGE", "neighbour Prob", "neighbour TR", "general ROUGE", "general Prob"]
    rows = []
    for name in ("before", "after"):
        s = info[name]
        g = lambda k, f: (s.get(k) or {}).get(f)  # noqa: E731
        rows.append([name, s.get("forget_efficacy_no_es"), s.get("mu_neighbor_no_es"), g("forget", "rouge_l_recall"),
                     g("forget", "prob"), g("neighbor", "rouge_l_recall"), g("neighbor", "prob"),
                     g("neighbor", "truth_ratio"), g("general", "rouge_l_recall"), g("general", "prob")])
    return headers, rows
