"""The report card of a demo run directory: `report.html` (self-contained) + `report.md` + `results.json`.

    write_report("runs/demo")      # what `obliviate report runs/demo` does: reads saved results only

What it reads: `report.runs.collect` (nothing is recomputed). Layers below it: `runs` (reading run directories),
`attacks` (the Attacks section from `attack.registry.ATTACKS`), `claims`, `scenarios` (continual / realworld
sections), `glossary` (the ↑ / ↓ of every metric column and the glossary, from `evaluate.metrics.METRICS`) and
`explain` (all-"—" columns hidden with a footnote, the one-seed claims note, the smoke-test note of a tiny model).
`results.json` keeps every column, without arrows.
Numbers over seeds are mean ± the 95 % confidence half-width of the t distribution.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from obliviate import ObliviateError
from obliviate import html as H
from obliviate.attack.registry import ATTACKS
from obliviate.report.attacks import attack_sections
from obliviate.report.claims import CLAIMS_NOTE, write_claims
from obliviate.report.explain import hidden_note, hide_empty, labelled, one_seed_note, smoke_note, smoke_short
from obliviate.report.glossary import ARROW_NOTE, arrowed, glossary_rows
from obliviate.report.harness import HARNESS_NOTE, harness_table
from obliviate.report.results import headline_json, table_json
from obliviate.report.runs import across_seeds, collect, fmt_ci, get
from obliviate.report.scenarios import continual_section
from obliviate.report.trajectory import TRAJECTORY_NOTE, kept_by, trajectory_section
from obliviate.report.tune import tune_section
from obliviate.rundir import write_bytes, write_text

ROLE_LABELS = {"forget": "forget", "retain": "retain", "world_facts": "world"}


def columns() -> list[tuple[str, tuple, bool | None]]:
    """(column label, where in eval.json, higher is better?) from the `card` entries of `METRICS`:
    where = ("agg", key[, subkey]) or (role, mean key); aggregates first, then per-split means by role."""
    from obliviate.evaluate.metrics import METRICS

    agg = [(m.label, ("agg", m.aggregate, *c[2:]), c[1]) for m in METRICS.values() for c in m.card if c[0] == "agg"]
    per = [(f"{ROLE_LABELS[role]} {m.label}", (role, key), hib) for role in ROLE_LABELS
           for key, m in METRICS.items() for r, hib, *_ in m.card if r == role]
    return agg + per


P_VALUE_NOTE = "Forget Quality (a p-value) across seeds: median [min–max], not mean ± CI."


def _model_label(cfg: dict) -> str:
    """The model a run's target/retain were trained from, as the intro names it."""
    if cfg.get("base_model"):
        return f"{cfg['base_model']} fine-tuned"
    return f"{cfg['model_size']} model"


def split_table(headers: list[str], rows: list[list]) -> list[tuple[list[str], list[list]]]:
    """The headline as two readable tables: aggregates (+ MIA, PrivLeak) and per-split means."""
    spec = columns()
    agg = [0, 1] + [2 + i for i, c in enumerate(spec) if c[1][0] == "agg"]
    per = [0, 1] + [2 + i for i, c in enumerate(spec) if c[1][0] != "agg"]
    return [([headers[i] for i in cols], [[r[i] for i in cols] for r in rows]) for cols in (agg, per)]


def headline(data: dict) -> tuple[list[str], list[list]]:
    """The headline table: target, retain and every recipe (over seeds), one column per `columns()` entry."""
    COLUMNS = columns()  # noqa: N806  (read at call time: a metric added to METRICS shows up)
    headers = ["model", "seeds"] + [c[0] for c in COLUMNS]
    retain = [fmt_ci(get(data["retain"], w), None) for _, w, _ in COLUMNS]
    self_fq = data["demo"].get("retain_vs_itself", {}).get("forget_quality")
    if retain[0] == "—" and self_fq is not None:  # the retain model against itself: p = 1 by construction
        retain[0] = f"{fmt_ci(self_fq, None)} (vs itself: sanity check)"
    rows = [["target (before)", 1] + [fmt_ci(get(data["target"], w), None) for _, w, _ in COLUMNS],
            ["retain (ideal)", 1] + retain]
    for recipe, runs in data["recipes"].items():
        by = kept_by(runs)  # evaluation during training: the rule that chose these models
        rows.append([f"{recipe} (kept by {by})" if by else recipe, len(runs)] +
                    [across_seeds(label, [get(r["eval"], w) for r in runs]) for label, w, _ in COLUMNS])
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
            x, y = get(res, xw), get(res, ("agg", "model_utility"))
            if x is None and name == "retain" and xw[1] == "forget_quality":
                x = data["demo"].get("retain_vs_itself", {}).get("forget_quality")
            if x is not None and y is not None:
                ax.scatter([x], [y], marker=marker, s=160, color="black" if name == "target" else "green",
                           label=name, zorder=3)
        for i, (recipe, runs) in enumerate(data["recipes"].items()):
            pts = [(get(r["eval"], xw), get(r["eval"], ("agg", "model_utility"))) for r in runs]
            pts = [(x, y) for x, y in pts if x is not None and y is not None]
            if pts:
                ax.scatter(*zip(*pts), color=f"C{i}", label=recipe, alpha=0.85)
        if logx:  # tick labels as plain numbers: the card draws text literally (no mathtext "$10^{-2}$")
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
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


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Build report.html, report.md and results.json (+ figures, claims.json) from `run`'s saved results, into
    `out` (default: `run` itself). An `out` that cannot be written is a one-line error before any work."""
    run = Path(run)
    out = Path(out) if out is not None else run
    check_writable(out, run)
    notes: list[str] = []
    scenarios = _scenario_sections(run, out, notes)
    if scenarios and not (run / "demo.json").is_file():  # a directory of scenario runs only
        return _write_sections(run, out, scenarios, notes)
    card = _contents(run, out, notes)
    html_sections = _html_sections(card) + _classifier_sections(run) + [h for h, _ in scenarios]
    write_text(out / "report.html", H.render_page("obliviate report card", html_sections,
                                                   subtitle=f"run directory: {run}"))
    write_text(out / "report.md", "\n".join(_markdown(card, [m for _, m in scenarios])))
    attacks = {a["name"]: table_json(a["headers"], a["rows"]) for a in card["attacks"]}
    results = {"headers": card["headers"], **card["numbers"], "not_computed": card["reasons"], "attacks": attacks,
               "ignored": card["notes"]}
    write_text(out / "results.json", json.dumps(results, indent=1, allow_nan=False) + "\n")
    return out / "report.html"


def check_writable(out: Path, run: Path) -> None:
    """`out` exists (or can be made) and takes a file; else one line saying where the report would go."""
    import errno
    import os
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".report-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        hint = " (pass --out DIR to write it elsewhere)" if out == run else ""
        why = "read-only" if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else e.strerror
        raise ObliviateError(f"{out}: cannot write the report there ({why}){hint}; it would write report.html, "
                             "report.md, results.json, claims.json and the figures") from None


def _contents(run: Path, out: Path, notes: list[str]) -> dict:
    """Every table, figure and text of the card (figures also written as PNGs into `out`)."""
    data = collect(run)
    notes[:0] = data["notes"]
    demo = data["demo"]
    headers, rows = headline(data)
    reasons = not_computed(data)
    pngs = {"scatter": H.figure_png(_scatter(data)), "hist": H.figure_png(_truth_ratio_hists(data))}
    attacks = attack_sections(data["recipes"], data["target"])
    pngs.update({a["name"]: a["png"] for a in attacks})
    traj = trajectory_section(data)
    if traj is not None:
        pngs["trajectory"] = traj["png"]
    for k, png in pngs.items():
        write_bytes(out / f"{k}.png", png)
    claim_results, claim_headers, claim_rows = write_claims(run, data, out)
    rvr = demo.get("retain_vs_itself", {}).get("forget_quality")
    shown = [(h, "") for h in headers] + [(h, ATTACKS[a["name"]].role) for a in attacks for h in a["headers"]]
    smoke = smoke_note(run, demo["config"])
    return {
        "headers": headers, "rows": rows, "reasons": reasons,
        "numbers": headline_json(data, columns(), [r[0] for r in rows], get),  # results.json
        "pngs": pngs, "attacks": shown_attacks(attacks),
        "tables": shown_tables(split_table(headers, rows), reasons), "smoke": smoke,
        "notes": notes, "claims": (claim_headers, claim_rows), "one_seed": one_seed_note(data, len(claim_results)),
        "traj": traj and {**traj, "headers": [arrowed(h) for h in traj["headers"]]},
        "harness": harness_table(data), "fe": _examples(data, "forget"), "fr": _examples(data, "retain"),
        "glossary": (["term", "eval.json key", "better", "meaning", "source"],
                     glossary_rows(shown + [(h, "") for h in (traj or {}).get("headers", [])])),
        "timing_rows": [[k, v["seconds"], "reused" if v["reused"] else "ran"] for k, v in demo["timings"].items()],
        "cfg_text": json.dumps(demo["config"], indent=1), "ver_text": json.dumps(demo["versions"], indent=1),
        "nc_rows": labelled(reasons),
        "intro": (f"World preset '{demo['config']['preset']}', {_model_label(demo['config'])}, forget split "
                  f"{demo['config']['forget']}, {demo['config']['seeds']} seed(s) per recipe. Wall time "
                  f"{demo['wall_seconds']:.0f} s. Sanity: the retain model against itself has Forget Quality "
                  f"{H.fmt(rvr)} (must be 1; shown in the retain row as a check, not a result). {P_VALUE_NOTE} "
                  f"{parity_note(data)}")}


def shown_tables(tables: list[tuple[list[str], list[list]]], reasons: dict) -> list[dict]:
    """{headers (with ↑ / ↓), rows, note} of each table as the card shows it: all-"—" columns hidden, named in
    `note`; `role` = the split un-prefixed columns score (`report.glossary.arrowed`)."""
    out = []
    for headers, rows, *role in tables:
        headers, rows, hidden = hide_empty(headers, rows, reasons)
        out.append({"headers": [arrowed(h, *role) for h in headers], "rows": rows,
                    "note": hidden_note([(arrowed(h, *role), why) for h, why in hidden])})
    return out


def shown_attacks(attacks: list[dict]) -> list[dict]:
    """The attack sections, each with its table as the card shows it under "shown" (`shown_tables`; an attack's
    empty column has no eval.json reason: the attack's own caption and result say why)."""
    return [{**a, "shown": shown_tables([(a["headers"], a["rows"], ATTACKS[a["name"]].role)], {})[0]}
            for a in attacks]


def parity_note(data: dict) -> str:
    """Which conventions the numbers follow (`obliviate.parity`; eval.json files written before it: paper)."""
    evals = [data["target"], data["retain"]] + [r["eval"] for runs in data["recipes"].values() for r in runs]
    modes = sorted({ev.get("parity", "paper") for ev in evals})
    return f"Conventions: parity={' / '.join(modes)} (docs/evaluation.md, 'Conventions and parity=')."


HEADLINE_NOTE = ("Forget Quality: higher = closer to the retain model (p-value; n items bound it from below). "
                 "Prob/ROUGE on the forget set should fall; on retain and world facts they should stay. MIA AUC near "
                 "0.5 = members look like non-members. Every abbreviation: the glossary at the end.")


def _table_html(t: dict, left_cols: int = 1) -> list[str]:
    """A shown table (`shown_tables`) and its hidden-columns footnote."""
    return [H.table_html(t["headers"], t["rows"], left_cols=left_cols)] + ([H.paragraph(t["note"], note=True)]
                                                                         if t["note"] else [])


def _table_md(t: dict) -> list[str]:
    return [H.table_md(t["headers"], t["rows"]), ""] + ([t["note"], ""] if t["note"] else [])


def _claims_html(c: dict) -> list[str]:
    if c["one_seed"]:
        return [H.paragraph(c["one_seed"])]
    return [H.paragraph(CLAIMS_NOTE, note=True), H.table_html(*c["claims"], left_cols=3)]


def _callout(text: str) -> str:
    """A paragraph the reader cannot miss (the smoke-test note)."""
    return f'<p style="background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .7rem">{H.esc(text)}</p>'


def _examples_html(c: dict, key: str) -> list[str]:
    short = smoke_short(c["smoke"])
    return ([_callout(short)] if short else []) + [H.table_html(*c[key], left_cols=99)]


def _html_sections(c: dict) -> list[str]:
    nc = c["nc_rows"]
    return [
        H.section("Headline: every recipe, mean ± 95 % CI over seeds (Forget Quality: median [min–max])",
                  *([_callout(c["smoke"])] if c["smoke"] else []), H.paragraph(c["intro"]),
                  *[x for t in c["tables"] for x in _table_html(t)],
                  H.paragraph(HEADLINE_NOTE, note=True)),
        H.section("Do the papers' findings hold here?", *_claims_html(c)),
        H.section("Not computed", H.table_html(["metric", "models", "reason"], nc, left_cols=3) if nc else
                  H.paragraph("every metric was computed")),
        H.section("Forgetting vs utility", H.image_html(c["pngs"]["scatter"], "one point per recipe and seed")),
        *([H.section("How far each recipe went (evaluation during training)", H.paragraph(TRAJECTORY_NOTE, note=True),
                     H.table_html(c["traj"]["headers"], c["traj"]["rows"], left_cols=3),
                     H.image_html(c["traj"]["png"], "forgetting and utility against step"))] if c["traj"] else []),
        *([H.section("lm-eval tasks", H.paragraph(HARNESS_NOTE, note=True),
                     H.table_html(*c["harness"], left_cols=2))] if c["harness"] else []),
        H.section("Attacks", *[H.section(a["title"], H.paragraph(a["caption"], note=True),
                                         *_table_html(a["shown"], left_cols=2),
                                         H.image_html(a["png"], a["title"]), level=3) for a in c["attacks"]]
                  or [H.paragraph("no attack results in this run directory")]),
        H.section("Per-item truth ratios", H.image_html(c["pngs"]["hist"], "forget-set truth ratio histograms")),
        H.section("What forgetting looks like: forget questions", *_examples_html(c, "fe")),
        H.section("... and retain questions (should stay answered)", *_examples_html(c, "fr")),
        H.section("Run", H.table_html(["stage", "seconds", ""], c["timing_rows"]), *_notes_html(c["notes"]),
                  H.pre(c["cfg_text"]),
                  H.pre(c["ver_text"])),
        H.section("Glossary: every metric the card shows", H.paragraph(ARROW_NOTE, note=True),
                  H.table_html(*c["glossary"], left_cols=5)),
    ]


def _markdown(c: dict, scenarios: list[str]) -> list[str]:
    nc_md = H.table_md(["metric", "models", "reason"], c["nc_rows"]) if c["nc_rows"] else "every metric computed"
    attacks = [line for a in c["attacks"] for line in (
        f"### {a['title']}", "", *_table_md(a["shown"]), f"![{a['name']}]({a['name']}.png)", "")]
    claims = [c["one_seed"]] if c["one_seed"] else [CLAIMS_NOTE, "", H.table_md(*c["claims"])]
    short = [smoke_short(c["smoke"]), ""] if c["smoke"] else []
    return ["# obliviate report card", "", *([f"**{c['smoke']}**", ""] if c["smoke"] else []), c["intro"], ""] + [x for t in c["tables"] for x in _table_md(t)] + [
        "## Do the papers' findings hold here?", "", *claims, "",
        "## Not computed", "", nc_md, "",
        *(["## lm-eval tasks", "", HARNESS_NOTE, "", H.table_md(*c["harness"]), ""] if c["harness"] else []),
        "## Attacks", ""] + attacks + [
        "![forgetting vs utility](scatter.png)", "![truth ratios](hist.png)", "",
        *(["## How far each recipe went (evaluation during training)", "", TRAJECTORY_NOTE, "",
           H.table_md(c["traj"]["headers"], c["traj"]["rows"]), "", "![trajectories](trajectory.png)", ""]
          if c["traj"] else []),
        "## Forget questions", "", *short, H.table_md(*c["fe"]), "", "## Retain questions", "", *short,
        H.table_md(*c["fr"]), "", *scenarios,
        "## Run", "", H.table_md(["stage", "seconds", ""], c["timing_rows"]), "", *_notes_md(c["notes"]), "```json", c["cfg_text"], "```", "",
        "## Glossary", "", ARROW_NOTE, "", H.table_md(*c["glossary"]), ""]


def _classifier_sections(run: Path) -> list[str]:
    """Embed classifier-attack results saved under the run directory (steal/, invert/), if any."""
    out = []
    for sub in ("steal", "invert"):
        d = run / sub
        if d.is_dir():
            from obliviate.classifier.report import report_section

            out.append(report_section(d))
    return out


def _scenario_sections(run: Path, out: Path, notes: list[str]) -> list[tuple[str, str]]:
    """(html, markdown) sections of scenario results under the run directory (continual, tune), if any."""
    return [s for s in (continual_section(run, out, notes), tune_section(run)) if s is not None]


def _notes_html(notes: list[str]) -> list[str]:
    return [H.paragraph("Not shown (unfinished or stray entries): " + "; ".join(notes), note=True)] if notes else []


def _notes_md(notes: list[str]) -> list[str]:
    return ["Not shown (unfinished or stray entries):", "", *[f"- {n}" for n in notes], ""] if notes else []


def _write_sections(run: Path, out: Path, sections: list[tuple[str, str]], notes: list[str]) -> Path:
    write_text(out / "report.html", H.render_page("obliviate report card", [h for h, _ in sections]
                                                   + _notes_html(notes), subtitle=f"run directory: {run}"))
    write_text(out / "report.md", "\n".join(["# obliviate report card", ""] + [m for _, m in sections]
                                             + _notes_md(notes)))
    return out / "report.html"
