"""Tables and plots of the quantization, reformatted-question and in-context attacks (`ATTACKS` points here).

    headers, rows = quantize_table({"npo+gd": [result_seed0, result_seed1]})
    fig = reformat_plot({"npo+gd": [...]}, target_results)

As `attack/tables.py`: a group is a label and its results over seeds, numbers are mean ± 95 % CI half-width
over seeds. Each result also holds control rows for the target and the retain model (the same models in every
group of a run): they are shown once, from the first group that has them.
"""

from __future__ import annotations

from obliviate.attack.tables import _ci

CONTROLS = {"target": "target (control)", "retain": "retain (control)"}
QUANT_COLUMNS = {"forget_prob": "forget Prob", "recovery_prob": "recovery (Prob)", "forget_rouge": "forget ROUGE",
                 "recovery_rouge": "recovery (ROUGE)", "forget_truth_ratio": "forget TR", "retain_prob": "retain Prob"}
IC_METRICS = (("prob", "Prob"), ("rouge_l_recall", "ROUGE"), ("truth_ratio", "TR"))


def _bits(b) -> str:
    return "full precision" if b is None else f"{b}-bit"


def _first_with(groups: dict[str, list[dict]], has) -> list[dict]:
    """The results of the first group whose results have the control (`has(result)`)."""
    return next(([r for r in rs if has(r)] for rs in groups.values() if any(has(r) for r in rs)), [])


# ------------------------------------------------------------------------------------------- quantization


def _quant_rows(label: str, results: list[dict], who: str, keys: list[str]) -> list[list]:
    rows = []
    bits = [r["bits"] for r in results[0]["rows"] if r["model"] == who]
    for b in bits:
        per_seed = [next(x for x in r["rows"] if x["model"] == who and x["bits"] == b) for r in results]
        rows.append([label, _bits(b)] + [_ci(x.get(k) for x in per_seed) for k in keys])
    return rows


def _mcq_column(key: str) -> str:
    """mcq_<role> -> "<role> MCQ accuracy"; recovery_mcq_<role> -> "recovery (<role> MCQ accuracy)"."""
    if key.startswith("recovery_"):
        return f"recovery ({_mcq_column(key.removeprefix('recovery_'))})"
    return f"{key.removeprefix('mcq_')} MCQ accuracy"


def quantize_table(groups: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    first = next(iter(groups.values()))[0]["rows"][0]
    keys = [k for k in QUANT_COLUMNS if k in first] + [k for k in first if k not in QUANT_COLUMNS
                                                         and k not in ("model", "bits")]
    headers = ["model", "weights"] + [QUANT_COLUMNS.get(k) or _mcq_column(k) for k in keys]
    rows = []
    for label, results in groups.items():
        rows += _quant_rows(label, results, "model", keys)
    for who, name in CONTROLS.items():
        found = _first_with(groups, lambda r, who=who: any(x["model"] == who for x in r["rows"]))
        if found:
            rows += _quant_rows(name, found, who, keys)
    return headers, rows


def quantize_plot(groups: dict[str, list[dict]], target: dict | None = None):
    import matplotlib.pyplot as plt
    import numpy as np

    from obliviate.attack.tables import _mean_band

    first = next(iter(groups.values()))[0]["rows"]
    keys = [k for k in ("forget_prob", "retain_prob") if k in first[0]] or \
        [k for k in first[0] if k.startswith("mcq_")][:2]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False)
    series = [(label, rs, "model", dict(color=f"C{i}", marker="o")) for i, (label, rs) in enumerate(groups.items())]
    for who, name in CONTROLS.items():
        found = _first_with(groups, lambda r, who=who: any(x["model"] == who for x in r["rows"]))
        if found:
            series.append((name, found, who, dict(color="black", ls="--" if who == "target" else ":", marker="s")))
    for ax, key in zip(axes[0], keys):
        for label, results, who, style in series:
            bits = [x["bits"] for x in results[0]["rows"] if x["model"] == who]
            per_seed = [[x.get(key) for x in r["rows"] if x["model"] == who] for r in results]
            m, h = _mean_band(per_seed)
            ax.errorbar(np.arange(len(bits)), m, yerr=h, capsize=3, label=label, **style)
            ax.set_xticks(np.arange(len(bits)), [_bits(b) for b in bits])
        ax.set_ylabel(QUANT_COLUMNS.get(key, key))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Quantization attack: forget and retain metrics as the weights are rounded (mean ± 95 % CI)")
    fig.tight_layout()
    return fig


def quantize_summary(result: dict) -> str:
    q = result["quantized"]
    groups = {b: v["group_sizes"] for b, v in q.items()}
    return (f"{result['library']}, method {result['config']['method']}, bits {result['config']['bits']}, "
            f"{next(iter(q.values()))['layers'] if q else 0} linear layers per model, group sizes {groups}; "
            f"recovery = forget metric ÷ the target's at full precision")


# ------------------------------------------------------------------------------------------- reformat


def _acc(results: list[dict], who: str, split: str, fmt: str) -> str:
    cells = [((r["accuracy"].get(who) or {}).get(split) or {}).get(fmt) for r in results]
    cells = [c for c in cells if c is not None]
    if not cells:
        return "—"
    if "accuracy" not in cells[0]:
        return f"not computed ({cells[0]['not_computed']})"
    return _ci(c["accuracy"] for c in cells)


def reformat_table(groups: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    first = next(iter(groups.values()))[0]
    fmts = list(first["formats"])
    headers = ["model", "split"] + [f"format accuracy: {first['formats'][f]}" for f in fmts]
    rows = []
    for split in first["config"]["splits"]:
        for label, results in groups.items():
            rows.append([label, split] + [_acc(results, "model", split, f) for f in fmts])
        for who, name in CONTROLS.items():
            found = _first_with(groups, lambda r, who=who: who in r["accuracy"])
            if found:
                rows.append([name, split] + [_acc(found, who, split, f) for f in fmts])
        chance = [((first["accuracy"]["model"].get(split) or {}).get(f) or {}).get("chance") for f in fmts]
        rows.append(["chance", split] + [f"{c:.3f}" if c is not None else "—" for c in chance])
    return headers, rows


def reformat_plot(groups: dict[str, list[dict]], target: dict | None = None):
    import matplotlib.pyplot as plt
    import numpy as np

    first = next(iter(groups.values()))[0]
    fmts = list(first["formats"])
    series = [(label, rs, "model") for label, rs in groups.items()]
    series += [(name, found, who) for who, name in CONTROLS.items()
               if (found := _first_with(groups, lambda r, who=who: who in r["accuracy"]))]
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(fmts) * max(1, len(series)) / 2), 4.2))
    x, width = np.arange(len(fmts)), 0.8 / len(series)
    for i, (label, results, who) in enumerate(series):
        vals = [np.mean([c["accuracy"] for r in results
                         if "accuracy" in (c := r["accuracy"][who]["forget"].get(f, {}))] or [np.nan]) for f in fmts]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=label,
               color=f"C{i}" if who == "model" else ("0.2" if who == "target" else "0.6"))
    chance = [(first["accuracy"]["model"]["forget"].get(f) or {}).get("chance", np.nan) for f in fmts]
    ax.scatter(x, chance, marker="_", s=600, color="red", zorder=3, label="chance")
    ax.set_xticks(x, [first["formats"][f] for f in fmts], fontsize=8)
    ax.set_ylabel("forget-split accuracy (mean over seeds)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Reformatted questions: forget facts asked as multiple choice, true/false, cloze, paraphrase")
    fig.tight_layout()
    return fig


def reformat_summary(result: dict) -> str:
    acc = result["accuracy"]["model"].get("forget", {})
    parts = [f"{f} {v['accuracy']:.2f} (chance {v['chance']:.2f})" if "accuracy" in v else f"{f} not computed"
             for f, v in acc.items()]
    return f"forget accuracy: {'; '.join(parts)}\nright-letter counts per split (A, B, …): {result['letter_counts']}"


# ------------------------------------------------------------------------------------------- in-context


def _ic_row(label: str, results: list[dict], who: str) -> list:
    ms = [r["metrics"][who] for r in results]
    return [label, results[0]["n_evaluated"]] + [_ci(m[cond][k] for m in ms) for k, _ in IC_METRICS
                                                 for cond in ("without", "with")]


def incontext_table(groups: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    headers = ["model", "items"] + [f"{name}{s}" for _, name in IC_METRICS for s in ("", " + shots")]
    rows = [_ic_row(label, results, "model") for label, results in groups.items()]
    for who, name in CONTROLS.items():
        found = _first_with(groups, lambda r, who=who: who in r["metrics"])
        if found:
            rows.append(_ic_row(name, found, who))
    return headers, rows


def incontext_plot(groups: dict[str, list[dict]], target: dict | None = None):
    import matplotlib.pyplot as plt
    import numpy as np

    series = [(label, rs, "model") for label, rs in groups.items()]
    series += [(name, found, who) for who, name in CONTROLS.items()
               if (found := _first_with(groups, lambda r, who=who: who in r["metrics"]))]
    fig, axes = plt.subplots(1, len(IC_METRICS), figsize=(4.5 * len(IC_METRICS), 4))
    x = np.arange(len(series))
    for ax, (key, name) in zip(axes, IC_METRICS):
        for k, cond in enumerate(("without", "with")):
            vals = [np.mean([r["metrics"][who][cond][key] for r in rs if r["metrics"][who][cond][key] is not None]
                            or [np.nan]) for _, rs, who in series]
            ax.bar(x + (k - 0.5) * 0.4, vals, 0.4, hatch="//" if cond == "with" else "", edgecolor="black",
                   color="C0" if cond == "without" else "C1", label=f"{cond} shots")
        ax.set_xticks(x, [s[0] for s in series], fontsize=7, rotation=20)
        ax.set_title(f"forget {name}", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.suptitle("In-context attack: forget metrics with k forget pairs in the prompt (items not shown)")
    fig.tight_layout()
    return fig


def incontext_summary(result: dict) -> str:
    m = result["metrics"]["model"]
    return (f"{result['config']['shots']} shots (forget items {result['shown_items']}), {result['n_evaluated']} "
            f"items asked; forget Prob {m['without']['prob']:.3f} -> {m['with']['prob']:.3f} with the shots")
