"""Report pages for `steal` and `invert` runs: report.html + report.md + PNG plots in the run directory.

`report_section(run_dir)` returns the HTML section so the main report card can embed a run.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from obliviate import ObliviateError  # noqa: E402
from obliviate.html import (figure_png, image_html, paragraph, render_page, section, table_html,  # noqa: E402
                                   table_md)
from obliviate.stats import mean_ci  # noqa: E402
from obliviate.reader import read_json_object
from obliviate.rundir import write_bytes, write_text

STEAL_COLS = ("clean", "fgsm", "pgd20", "pgd100", "cw100", "aa")
INVERT_COLS = ("acc1", "acc5", "knn", "fd")


def image_grid(images: torch.Tensor, *, ncol: int, title: str = "", row_labels: list[str] | None = None):
    """A matplotlib figure of images (N, C, H, W) in [0, 1], `ncol` per row."""
    n = len(images)
    nrow = max(1, (n + ncol - 1) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 0.55 + 0.6, nrow * 0.55 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        if i < n:
            img = images[i].detach().cpu().numpy()
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
        if row_labels and i % ncol == 0 and i // ncol < len(row_labels):
            ax.set_ylabel(row_labels[i // ncol], rotation=0, labelpad=12, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _steal_rows(result: dict) -> list[list]:
    cols = [c for c in STEAL_COLS if c in result["target"]]
    return [["target"] + [result["target"][c] for c in cols],
            [f"clone ({result['mode']})"] + [result["clone"].get(c) for c in cols]], cols


def learning_curves(result: dict):
    h = result["history"]
    pts = [(e, c, r) for e, c, r in zip(h["epoch"], h["val_clean"], h["val_pgd20"]) if c is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    if pts:
        e, c, r = zip(*pts)
        ax1.plot(e, c, "o-", label="clone clean (val)")
        ax1.plot(e, r, "s-", label=f"clone PGD-20 (val, ε={result['eps']})")
    tv = result.get("target_val", {})
    if tv:
        ax1.axhline(tv["clean"], ls="--", c="C0", lw=0.8, label="target clean (val)")
        ax1.axhline(tv["pgd20"], ls="--", c="C1", lw=0.8, label="target PGD-20 (val)")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("accuracy")
    ax1.set_ylim(0, 1.02)
    ax1.legend(fontsize=7)
    ax2.plot(h["epoch"], h["query_entropy"], label="clone entropy on queries")
    ax2.plot(h["epoch"], h["clone_loss"], label="clone CE")
    ax2.set_xlabel("epoch")
    ax2.legend(fontsize=7)
    fig.suptitle(f"DFHL-RS [{result['mode']}] learning curves", fontsize=10)
    fig.tight_layout()
    return fig


def write_steal_report(out: Path, result: dict, *, bank: torch.Tensor | None) -> None:
    out = Path(out)
    curves = figure_png(learning_curves(result))
    write_bytes(out / "learning_curves.png", curves)
    if bank is not None:
        grid = figure_png(image_grid(bank[-64:], ncol=16, title="memory bank (last 64 synthetic images)"))
        write_bytes(out / "memory_bank.png", grid)
    html = _steal_html(out, result)
    write_text(out / "report.html", render_page("obliviate steal", [html], subtitle=str(out)))
    rows, cols = _steal_rows(result)
    md = [f"# obliviate steal — {result['mode']} on {result['dataset']} (seed {result['seed']})", "",
          table_md(["model"] + list(cols), rows), "",
          f"Agreement with target: {result['agreement']:.3f}; queries: {result['queries']}; "
          f"best epoch (validation): {result['best_epoch']}; wall time: {result['wall_time_s']['total']} s.", "",
          "![learning curves](learning_curves.png)", "", "![memory bank](memory_bank.png)", ""]
    write_text(out / "report.md", "\n".join(md))


def _steal_html(out: Path, result: dict) -> str:
    rows, cols = _steal_rows(result)
    parts = [table_html(["model"] + list(cols), rows),
             paragraph(f"L∞ ε = {result['eps']}; accuracies on {result['n_test']} test images "
                       f"(AutoAttack standard on the first {result['aa_n']}). Agreement with target "
                       f"{result['agreement']:.3f}; {result['queries']} hard-label queries; checkpoint chosen on "
                       f"validation (epoch {result['best_epoch']}); wall time {result['wall_time_s']['total']} s.",
                       note=True)]
    for name, cap in (("learning_curves.png", "validation accuracy vs epochs"),
                      ("memory_bank.png", "memory bank: synthetic images")):
        if (out / name).exists():
            parts.append(image_html((out / name).read_bytes(), cap))
    return section(f"Robustness stealing (DFHL-RS, mode {result['mode']}, {result['dataset']})", *parts)


def reconstruction_grid(recs: dict[str, torch.Tensor], classes: torch.Tensor, private, *, per: int = 3):
    """Rows = classes; column blocks = real private images, then each method's reconstructions."""
    K = int(classes.max()) + 1
    blocks = [("real", private.x, private.y)] + [(m, r, classes) for m, r in recs.items()]
    tiles = []
    for k in range(K):
        for _, x, y in blocks:
            sel = x[y == k][:per]
            tiles += list(sel) + [torch.zeros_like(x[0])] * (per - len(sel))
    fig = image_grid(torch.stack(tiles), ncol=per * len(blocks), row_labels=[str(k) for k in range(K)],
                     title="  |  ".join(f"{b[0]}" for b in blocks))
    return fig


def write_invert_report(out: Path, result: dict, *, recs: dict, classes: torch.Tensor, private) -> None:
    out = Path(out)
    write_bytes(out / "reconstructions.png", figure_png(reconstruction_grid(recs, classes, private)))
    html = _invert_html(out, result)
    write_text(out / "report.html", render_page("obliviate invert", [html], subtitle=str(out)))
    md = [f"# obliviate invert — {result['dataset']} (seed {result['seed']})", "",
          table_md(["method"] + list(INVERT_COLS) + ["wall s"], _invert_rows(result)), "",
          f"Target test accuracy {result['target_test_acc']:.3f}; evaluation classifier {result['eval_test_acc']:.3f}; "
          f"top-n pseudo-label purity {result['pseudo_label_purity']:.3f}. FD is a Fréchet distance in the "
          "evaluation classifier's feature space, not FID.", "", "![reconstructions](reconstructions.png)", ""]
    write_text(out / "report.md", "\n".join(md))


def _invert_rows(result: dict) -> list[list]:
    rows = [[m] + [v[c] for c in INVERT_COLS] + [result["wall_time_s"].get(m)] for m, v in result["methods"].items()]
    ref = result["real_test_reference"]
    return rows + [["(real held-out images)"] + [ref[c] for c in INVERT_COLS] + [None]]


def _invert_html(out: Path, result: dict) -> str:
    parts = [table_html(["method", "Acc@1 ↑", "Acc@5 ↑", "KNN dist ↓", "FD (E features) ↓", "wall s"],
                        _invert_rows(result)),
             paragraph(f"Evaluation classifier E (different architecture and seed) test accuracy "
                       f"{result['eval_test_acc']:.3f}; target {result['target_test_acc']:.3f}. Top-n = "
                       f"{result['top_n']} of {result['n_public']} shifted public images (pseudo-label purity "
                       f"{result['pseudo_label_purity']:.3f}). FD is a Fréchet distance in E's feature space, "
                       "not FID.", note=True)]
    if (out / "reconstructions.png").exists():
        parts.append(image_html((out / "reconstructions.png").read_bytes(), "real private images | reconstructions"))
    return section(f"Model inversion (PLG-MI, {result['dataset']})", *parts)


def report_section(run_dir: str | Path) -> str:
    """The HTML section of a steal or invert run directory (reads results.json and the PNGs)."""
    d = Path(run_dir)
    path = d / "results.json"
    if not path.exists():
        raise ObliviateError(f"{d}: no results.json (not a steal/invert run directory)")
    result = read_json_object(path)
    if "mode" in result and "clone" in result:
        return _steal_html(d, result)
    if "methods" in result:
        return _invert_html(d, result)
    raise ObliviateError(f"{path}: neither a steal nor an invert result")


def pm(values: list[float], digits: int = 3) -> str:
    """'mean ± 95 % t-interval half-width' over seeds (obliviate.stats.mean_ci, as in the report card)."""
    m, h = mean_ci(values)
    if m is None:
        return "—"
    return f"{m:.{digits}f}" if h is None else f"{m:.{digits}f} ± {h:.{digits}f}"


def write_summary(out: str | Path, kind: str, runs: list[tuple[int, Path, dict]]) -> dict:
    """Multi-seed summary (mean ± 95 % CI over seeds) for `steal` or `invert`: summary.json + report.html/md."""
    out = Path(out)
    if kind == "steal":
        cols = [c for c in STEAL_COLS if c in runs[0][2]["target"]]
        head = ["model"] + cols + ["agreement", "queries", "wall s"]
        rows = [["target"] + [pm([r["target"][c] for _, _, r in runs]) for c in cols] + ["", "", ""],
                [f"clone ({runs[0][2]['mode']})"] + [pm([r["clone"][c] for _, _, r in runs]) for c in cols]
                + [pm([r["agreement"] for _, _, r in runs]), pm([r["queries"] for _, _, r in runs], 0),
                   pm([r["wall_time_s"]["total"] for _, _, r in runs], 1)]]
    else:
        methods = list(runs[0][2]["methods"])
        head = ["method"] + list(INVERT_COLS) + ["wall s"]
        rows = [[m] + [pm([r["methods"][m][c] for _, _, r in runs]) for c in INVERT_COLS]
                + [pm([r["wall_time_s"][m] for _, _, r in runs], 1)] for m in methods]
    summary = {"kind": kind, "seeds": [s for s, _, _ in runs], "headers": head, "rows": rows,
               "runs": [str(p) for _, p, _ in runs]}
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    title = f"obliviate {kind}: mean ± 95 % CI (t-interval) over seeds {summary['seeds']}"
    parts = [section("Summary", table_html(head, rows))] + [report_section(p) for _, p, _ in runs]
    write_text(out / "report.html", render_page(title, parts, subtitle=str(out)))
    write_text(out / "report.md", f"# {title}\n\n{table_md(head, rows)}\n\nPer-seed reports: "
                                   + ", ".join(f"[{p.name}]({p.name}/report.md)" for _, p, _ in runs) + "\n")
    return summary
