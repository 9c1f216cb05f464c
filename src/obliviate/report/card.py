"""The report card of a demo run directory: `report.html` (self-contained) + `report.md` + `results.json`.

    write_report("runs/demo")      # what `obliviate report runs/demo` does: reads saved results only

Reads `demo.json`, `eval/{target,retain}/eval.json` and, per recipe and seed,
`runs/<recipe>/seed<k>/eval/eval.json` plus every attack result there (`report.attacks.ATTACKS`:
`relearn/relearn.json`, `jailbreak/jailbreak.json`, `mia/mia.json`). Nothing is recomputed.
Numbers over seeds are mean ± the 95 % confidence half-width of the t distribution.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from obliviate import ObliviateError
from obliviate import html as H
from obliviate.report.attacks import ATTACKS, attack_sections
from obliviate.stats import mean_ci, median_range

ROLE_LABELS = {"forget": "forget", "retain": "retain", "world_facts": "world"}


def _columns() -> list[tuple[str, tuple, bool | None]]:
    """(column label, where in eval.json, higher is better?) from the `card` entries of `METRICS`:
    where = ("agg", key[, subkey]) or (role, mean key); aggregates first, then per-split means by role."""
    from obliviate.evaluate.metrics import METRICS

    agg = [(m.label, ("agg", m.aggregate, *c[2:]), c[1]) for m in METRICS.values() for c in m.card if c[0] == "agg"]
    per = [(f"{ROLE_LABELS[role]} {m.label}", (role, key), hib) for role in ROLE_LABELS
           for key, m in METRICS.items() for r, hib, *_ in m.card if r == role]
    return agg + per


COLUMNS = _columns()


def _get(res: dict, where: tuple) -> float | None:
    if where[0] == "agg":
        v = res.get("aggregates", {}).get(where[1])
        if len(where) > 2:
            v = (v or {}).get(where[2])
    else:
        v = res.get("splits", {}).get(where[0], {}).get("means", {}).get(where[1])
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


# p-value columns: summarised across seeds by median [min–max] (a mean ± t-interval can leave [0, 1])
P_VALUE_COLUMNS = ("Forget Quality",)
P_VALUE_NOTE = "Forget Quality (a p-value) across seeds: median [min–max], not mean ± CI."


def fmt_ci(m: float | None, h: float | None) -> str:
    if m is None:
        return "—"
    return H.fmt(m) if h is None else f"{H.fmt(m)} ± {H.fmt(h)}"


def fmt_median_range(values: list[float | None]) -> str:
    med, lo, hi = median_range(values)
    if med is None:
        return "—"
    return H.fmt(med) if lo == hi else f"{H.fmt(med)} [{H.fmt(lo)}–{H.fmt(hi)}]"


def across_seeds(label: str, values: list[float | None]) -> str:
    """One cell: median [min–max] for p-value columns, else mean ± 95 % t-interval."""
    return fmt_median_range(values) if label in P_VALUE_COLUMNS else fmt_ci(*mean_ci(values))


def _model_label(cfg: dict) -> str:
    """The model a run's target/retain were trained from, as the intro names it."""
    if cfg.get("base_model"):
        return f"{cfg['base_model']} fine-tuned"
    return f"{cfg['model_size']} model"


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def collect(run: Path) -> dict:
    """Everything the report shows, from the saved files: {demo, target, retain, recipes: {name: [seed runs]}}."""
    demo = _load(run / "demo.json")
    target, retain = _load(run / "eval/target/eval.json"), _load(run / "eval/retain/eval.json")
    if demo is None or target is None or retain is None:
        raise ObliviateError(f"{run}: not a finished demo run (needs demo.json and eval/{{target,retain}}/eval.json)")
    recipes: dict[str, list[dict]] = {}
    for recipe in demo["config"]["recipes"]:
        d = run / "runs" / recipe.replace("+", "_")
        for seed_dir in sorted(d.glob("seed*"), key=lambda p: int(p.name[4:])):
            ev = _load(seed_dir / "eval/eval.json")
            if ev is None:
                continue
            recipes.setdefault(recipe, []).append({
                "seed": int(seed_dir.name[4:]), "eval": ev,
                **{name: _load(seed_dir / name / a.result) for name, a in ATTACKS.items()}})
    return {"demo": demo, "target": target, "retain": retain, "recipes": recipes}


def split_table(headers: list[str], rows: list[list]) -> list[tuple[list[str], list[list]]]:
    """The headline as two readable tables: aggregates (+ MIA, PrivLeak) and per-split means."""
    agg = [0, 1] + [2 + i for i, c in enumerate(COLUMNS) if c[1][0] == "agg"]
    per = [0, 1] + [2 + i for i, c in enumerate(COLUMNS) if c[1][0] != "agg"]
    return [([headers[i] for i in cols], [[r[i] for i in cols] for r in rows]) for cols in (agg, per)]


def headline(data: dict) -> tuple[list[str], list[list]]:
    headers = ["model", "seeds"] + [c[0] for c in COLUMNS]
    retain = [fmt_ci(_get(data["retain"], w), None) for _, w, _ in COLUMNS]
    self_fq = data["demo"].get("retain_vs_itself", {}).get("forget_quality")
    if retain[0] == "—" and self_fq is not None:  # the retain model against itself: p = 1 by construction
        retain[0] = f"{fmt_ci(self_fq, None)} (vs itself: sanity check)"
    rows = [["target (before)", 1] + [fmt_ci(_get(data["target"], w), None) for _, w, _ in COLUMNS],
            ["retain (ideal)", 1] + retain]
    for recipe, runs in data["recipes"].items():
        rows.append([recipe, len(runs)] + [across_seeds(label, [_get(r["eval"], w) for r in runs])
                                           for label, w, _ in COLUMNS])
    return headers, rows


def not_computed(data: dict) -> dict[str, dict[str, list[str]]]:
    """{metric: {reason: [models]}}: what was not computed, why, and for which models."""
    out: dict[str, dict[str, list[str]]] = {}
    models = [("target", data["target"]), ("retain", data["retain"])] + [
        (recipe, runs[0]["eval"]) for recipe, runs in data["recipes"].items()]
    for name, res in models:
        for metric, reason in res.get("not_computed", {}).items():
            if name == "retain" and metric == "forget_quality":
                continue  # shown from the retain-vs-itself sanity check
            out.setdefault(metric, {}).setdefault(reason, []).append(name)
    return out


def _scatter(data: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (xw, xlabel, logx) in zip(axes, [(("agg", "forget_quality"), "Forget Quality (KS p-value)", True),
                                             (("forget", "prob"), "forget-set answer probability", False)]):
        for name, res, marker in (("target", data["target"], "*"), ("retain", data["retain"], "P")):
            x, y = _get(res, xw), _get(res, ("agg", "model_utility"))
            if x is None and name == "retain" and xw[1] == "forget_quality":
                x = data["demo"].get("retain_vs_itself", {}).get("forget_quality")
            if x is not None and y is not None:
                ax.scatter([x], [y], marker=marker, s=160, color="black" if name == "target" else "green",
                           label=name, zorder=3)
        for i, (recipe, runs) in enumerate(data["recipes"].items()):
            pts = [(_get(r["eval"], xw), _get(r["eval"], ("agg", "model_utility"))) for r in runs]
            pts = [(x, y) for x, y in pts if x is not None and y is not None]
            if pts:
                ax.scatter(*zip(*pts), color=f"C{i}", label=recipe, alpha=0.85)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Model Utility")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("Forgetting vs utility (one point per recipe and seed)")
    return fig


def _truth_ratio_hists(data: dict):
    import matplotlib.pyplot as plt
    import numpy as np

    recipes = list(data["recipes"])
    n = max(1, len(recipes))
    cols = min(3, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(4.2 * cols, 3.2 * math.ceil(n / cols)),
                             squeeze=False)
    tr = lambda res: [it["truth_ratio"] for it in res["splits"]["forget"]["items"]  # noqa: E731
                      if it.get("truth_ratio") is not None]
    bins = np.linspace(0, 2.5, 26)
    for ax, recipe in zip(axes.flat, recipes):
        ax.hist(np.clip(tr(data["target"]), 0, 2.5), bins=bins, alpha=0.45, color="black", label="target")
        ax.hist(np.clip(tr(data["retain"]), 0, 2.5), bins=bins, alpha=0.45, color="green", label="retain")
        ax.hist(np.clip(tr(data["recipes"][recipe][0]["eval"]), 0, 2.5), bins=bins, alpha=0.55, color="C3",
                label=f"{recipe} (seed {data['recipes'][recipe][0]['seed']})")
        ax.set_title(recipe, fontsize=10)
        ax.legend(fontsize=7)
        ax.set_xlabel("forget-item truth ratio (clipped at 2.5)")
    for ax in list(axes.flat)[len(recipes):]:
        ax.axis("off")
    fig.suptitle("Per-item truth ratios on the forget set: unlearned should look like retain, not target")
    fig.tight_layout()
    return fig


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " …"


def _examples(data: dict, role: str, n: int = 3) -> tuple[list[str], list[list]]:
    target_items = data["target"]["splits"].get(role, {}).get("items", [])
    idx = list(range(min(n, len(target_items))))
    headers = ["question", "ground truth", "target (before)", "retain"] + list(data["recipes"])
    rows = []
    for i in idx:
        row = [target_items[i]["question"], target_items[i]["answer"], target_items[i].get("generation", "")]
        row.append(data["retain"]["splits"][role]["items"][i].get("generation", ""))
        for runs in data["recipes"].values():
            row.append(runs[0]["eval"]["splits"][role]["items"][i].get("generation", ""))
        rows.append([_clip(x) for x in row])
    return headers, rows


def write_report(run: str | Path) -> Path:
    """Build report.html, report.md and results.json in `run` from its saved results."""
    run = Path(run)
    scenarios = _scenario_sections(run)
    if scenarios and not (run / "demo.json").is_file():  # a directory of scenario runs only
        return _write_sections(run, scenarios)
    data = collect(run)
    demo = data["demo"]
    headers, rows = headline(data)
    reasons = not_computed(data)
    figs = {"scatter": _scatter(data), "hist": _truth_ratio_hists(data)}
    pngs = {k: H.figure_png(f) for k, f in figs.items()}
    attacks = attack_sections(data["recipes"], data["target"])
    pngs.update({a["name"]: a["png"] for a in attacks})
    for k, png in pngs.items():
        (run / f"{k}.png").write_bytes(png)
    fe, fr = _examples(data, "forget"), _examples(data, "retain")
    from obliviate.report.claims import CLAIMS_NOTE, write_claims

    _, claim_headers, claim_rows = write_claims(run, data)
    timing_rows = [[k, v["seconds"], "reused" if v["reused"] else "ran"] for k, v in demo["timings"].items()]
    cfg_text = json.dumps(demo["config"], indent=1)
    ver_text = json.dumps(demo["versions"], indent=1)
    nc_rows = [[metric, ", ".join(models), reason] for metric, by in sorted(reasons.items())
               for reason, models in by.items()]
    rvr = demo.get("retain_vs_itself", {}).get("forget_quality")
    intro = (f"World preset '{demo['config']['preset']}', {_model_label(demo['config'])}, forget split "
             f"{demo['config']['forget']}, {demo['config']['seeds']} seed(s) per recipe. Wall time "
             f"{demo['wall_seconds']:.0f} s. Sanity: the retain model against itself has Forget Quality {H.fmt(rvr)} "
             f"(must be 1; shown in the retain row as a check, not a result). {P_VALUE_NOTE}")
    html_sections = [
        H.section("Headline: every recipe, mean ± 95 % CI over seeds (Forget Quality: median [min–max])",
                  H.paragraph(intro),
                  *[H.table_html(h, r, left_cols=1) for h, r in split_table(headers, rows)],
                  H.paragraph("Forget Quality: higher = closer to the retain model (p-value; n items bound it "
                              "from below). Prob/ROUGE on the forget set should fall; on retain and world facts "
                              "they should stay. MIA AUC near 0.5 = members look like non-members.", note=True)),
        H.section("Do the papers' findings hold here?", H.paragraph(CLAIMS_NOTE, note=True),
                  H.table_html(claim_headers, claim_rows, left_cols=3)),
        H.section("Not computed", H.table_html(["metric", "models", "reason"], nc_rows, left_cols=3) if nc_rows else
                  H.paragraph("every metric was computed")),
        H.section("Forgetting vs utility", H.image_html(pngs["scatter"], "one point per recipe and seed")),
        H.section("Attacks", *[H.section(a["title"], H.paragraph(a["caption"], note=True),
                                         H.table_html(a["headers"], a["rows"], left_cols=2),
                                         H.image_html(a["png"], a["title"]), level=3) for a in attacks]
                  or [H.paragraph("no attack results in this run directory")]),
        H.section("Per-item truth ratios", H.image_html(pngs["hist"], "forget-set truth ratio histograms")),
        H.section("What forgetting looks like: forget questions", H.table_html(*fe, left_cols=99)),
        H.section("... and retain questions (should stay answered)", H.table_html(*fr, left_cols=99)),
        H.section("Run", H.table_html(["stage", "seconds", ""], timing_rows), H.pre(cfg_text), H.pre(ver_text)),
    ]
    html_sections += _classifier_sections(run) + [h for h, _ in scenarios]
    (run / "report.html").write_text(H.render_page("obliviate report card", html_sections,
                                                   subtitle=f"run directory: {run}"))
    nc_md = H.table_md(["metric", "models", "reason"], nc_rows) if nc_rows else "every metric computed"
    headline_md = [H.table_md(h, r) + "\n" for h, r in split_table(headers, rows)]
    md = ["# obliviate report card", "", intro, ""] + headline_md + [
          "## Do the papers' findings hold here?", "", CLAIMS_NOTE, "", H.table_md(claim_headers, claim_rows), "",
          "## Not computed", "", nc_md, "",
          "## Attacks", ""] + [line for a in attacks for line in (
          f"### {a['title']}", "", H.table_md(a["headers"], a["rows"]), "", f"![{a['name']}]({a['name']}.png)", "")] + [
          "![forgetting vs utility](scatter.png)", "![truth ratios](hist.png)", "",
          "## Forget questions", "", H.table_md(*fe), "", "## Retain questions", "", H.table_md(*fr), "",
          *[m for _, m in scenarios],
          "## Run", "", H.table_md(["stage", "seconds", ""], timing_rows), "", "```json", cfg_text, "```", ""]
    (run / "report.md").write_text("\n".join(md))
    (run / "results.json").write_text(json.dumps({"headers": headers, "rows": rows, "not_computed": reasons,
                                                  "attacks": {a["name"]: {"headers": a["headers"], "rows": a["rows"]}
                                                              for a in attacks}}, indent=1) + "\n")
    return run / "report.html"


def _classifier_sections(run: Path) -> list[str]:
    """Embed classifier-attack results saved under the run directory (steal/, invert/), if any."""
    out = []
    for sub in ("steal", "invert"):
        d = run / sub
        if d.is_dir():
            from obliviate.classifier.report import report_section

            out.append(report_section(d))
    return out


def _scenario_sections(run: Path) -> list[tuple[str, str]]:
    """(html, markdown) sections of scenario results under the run directory (continual), if any."""
    from obliviate.scenarios.continual import report_section

    return [s for s in (report_section(run),) if s is not None]


def _write_sections(run: Path, sections: list[tuple[str, str]]) -> Path:
    (run / "report.html").write_text(H.render_page("obliviate report card", [h for h, _ in sections],
                                                   subtitle=f"run directory: {run}"))
    (run / "report.md").write_text("\n".join(["# obliviate report card", ""] + [m for _, m in sections]))
    return run / "report.html"
