"""Each language-model attack's table and plot over groups of results (`ATTACKS` in `attack/registry.py` points here).

    headers, rows = jailbreak_table({"npo+gd": [result_seed0, result_seed1]})
    fig = jailbreak_plot({"npo+gd": [...]}, target_results)

A group is a label (a recipe, or a model for a single run) and its results over seeds; numbers over seeds are
mean ± 95 % CI half-width (`stats.mean_ci`; p-values: median [min–max], `stats.across_seeds`).
"""

from __future__ import annotations

import math

from obliviate.stats import across_seeds, mean_ci


def _ci(values, label: str = "") -> str:
    return across_seeds(label, list(values))


def _mean_band(values_per_seed: list[list[float | None]]):
    """Mean and CI half-width per position over seeds; a value not computed is a gap (NaN), not a crash."""
    pts = [mean_ci(list(vals)) for vals in zip(*values_per_seed)]
    return [math.nan if p[0] is None else p[0] for p in pts], [p[1] or 0.0 for p in pts]


# ------------------------------------------------------------------------------------------- relearning


def relearn_table(groups: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    headers = ["recipe", "step", "forget Prob", "Prob (unseen items)", "forget ROUGE", "forget TR", "FQ"]
    rows = []
    for label, results in groups.items():
        curves = [r["curve"] for r in results]
        keys = ("prob", "prob_unseen", "rouge_l_recall", "truth_ratio", "forget_quality")
        for j, p in enumerate(curves[0]):
            rows.append([label, p["step"]] + [_ci((c[j].get(k) for c in curves),
                                                  "Forget Quality" if k == "forget_quality" else k) for k in keys])
    return headers, rows


def relearn_plot(groups: dict[str, list[dict]], target: dict | None = None):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for i, (label, results) in enumerate(groups.items()):
        curves = [r["curve"] for r in results]
        steps = [p["step"] for p in curves[0]]
        for ax, key in zip(axes, ("prob", "prob_unseen")):
            m, h = _mean_band([[p.get(key) for p in c] for c in curves])
            ax.errorbar(steps, m, yerr=h, marker="o", capsize=3, color=f"C{i}", label=label)
    t = ((target or {}).get("splits", {}).get("forget", {}).get("means", {})).get("prob")
    for ax, title in zip(axes, ("all forget items", "forget items the attacker did not train on")):
        if t is not None:
            ax.axhline(t, color="black", ls="--", lw=1, label="target (before unlearning)")
        ax.set_xlabel("relearning steps")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("forget-set answer probability")
    axes[0].legend(fontsize=8)
    fig.suptitle("Relearning attack: how fast forgotten answers come back (mean ± 95 % CI over seeds)")
    return fig


# --------------------------------------------------------------------------------------------- jailbreak


def jailbreak_table(groups: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    headers = ["model", "items", "Prob", "Prob + string", "ROUGE", "ROUGE + string", "TR", "TR + string",
               "search s"]
    rows = []
    for label, results in groups.items():
        for group, name in (("seen", "attacked"), ("unseen", "never seen by the search")):
            rs = [r for r in results if group in r["metrics"]]
            if not rs:
                rows.append([label, f"{name}: not computed ({results[0]['not_computed'].get(group)})"] + ["—"] * 7)
                continue
            vals = [_ci(r["metrics"][group][cond][m] for r in rs) for m in ("prob", "rouge_l_recall", "truth_ratio")
                    for cond in ("without", "with")]
            rows.append([label, f"{name} (n={rs[0]['metrics'][group]['n']})"] + vals +
                        [_ci(r["search"]["seconds"] for r in rs)])
    return headers, rows


def jailbreak_plot(groups: dict[str, list[dict]], target: dict | None = None):
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (label, results) in enumerate(groups.items()):
        for j, r in enumerate(results):
            curve = r["search"]["curve"]
            axes[0].plot([p["step"] for p in curve], [p["best_loss"] for p in curve], color=f"C{i}", alpha=0.8,
                         label=label if j == 0 else None)
    axes[0].set_xlabel("search step")
    axes[0].set_ylabel("best loss (mean answer NLL on attacked items)")
    axes[0].set_title("search", fontsize=10)
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    labels = list(groups)
    x = np.arange(len(labels))
    for k, (group, cond, hatch) in enumerate((("seen", "without", ""), ("seen", "with", "//"),
                                              ("unseen", "without", ""), ("unseen", "with", "//"))):
        m = [np.mean([r["metrics"][group][cond]["prob"] for r in groups[lab] if group in r["metrics"]] or [np.nan])
             for lab in labels]
        axes[1].bar(x + (k - 1.5) * 0.2, m, 0.2, hatch=hatch, color="C0" if group == "seen" else "C1",
                    edgecolor="black", label=f"{'attacked' if group == 'seen' else 'unseen'} items, "
                                               f"{'with' if cond == 'with' else 'without'} string")
    t = ((target or {}).get("splits", {}).get("forget", {}).get("means", {})).get("prob")
    if t is not None:
        axes[1].axhline(t, color="black", ls="--", lw=1, label="target (before unlearning)")
    axes[1].set_xticks(x, labels, fontsize=8)
    axes[1].set_ylabel("forget-set answer probability (mean over seeds)")
    axes[1].set_title("forget probability with and without the string", fontsize=10)
    axes[1].legend(fontsize=7)
    fig.suptitle("Jailbreak (GCG): one adversarial string optimised on a few forget items")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- membership


MIA_LABELS = {"loss": "LOSS", "zlib": "zlib", "min_k": "Min-K%", "min_k_pp": "Min-K%++"}


def mia_table(groups: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    headers = ["model", "seeds"] + [f"AUC {v}" for v in MIA_LABELS.values()] + ["Min-K% gap to retain"]
    rows = []
    for label, results in groups.items():
        gaps = [r["auc"]["gap"]["min_k"] for r in results if "gap" in r["auc"]]
        rows.append([label, len(results)] + [_ci(r["auc"]["model"][k] for r in results) for k in MIA_LABELS] +
                    [_ci(gaps) if gaps else "—"])
    retain = next((r["auc"]["retain"] for rs in groups.values() for r in rs if "retain" in r["auc"]), None)
    if retain is not None:
        rows.append(["retain (never saw the forget items)", 1] + [_ci([retain[k]]) for k in MIA_LABELS] + ["0"])
    return headers, rows


def mia_plot(groups: dict[str, list[dict]], target: dict | None = None):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MIA_LABELS), figsize=(4 * len(MIA_LABELS), 3.8), sharey=True)
    retain_drawn = False
    for i, (label, results) in enumerate(groups.items()):
        r = results[0]
        for ax, key in zip(axes, MIA_LABELS):
            roc = r["roc"]["model"][key]
            ax.plot(roc["fpr"], roc["tpr"], color=f"C{i}", label=f"{label} (AUC {r['auc']['model'][key]:.2f})")
            if "retain" in r["roc"] and not retain_drawn:
                rr = r["roc"]["retain"][key]
                ax.plot(rr["fpr"], rr["tpr"], color="black", ls="--",
                        label=f"retain (AUC {r['auc']['retain'][key]:.2f})")
        retain_drawn = retain_drawn or "retain" in r["roc"]
    for ax, name in zip(axes, MIA_LABELS.values()):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("false positive rate")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("true positive rate")
    fig.suptitle("Membership inference, forget (members) vs holdout (non-members): ROC of the first seed, positive "
                 "class = non-member (metrics.mia_auc); the diagonal = cannot tell")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------- terminal summaries


def relearn_summary(result: dict) -> str:
    return (f"{result['config']['k']} of {result['n_forget']} forget items, lr {result['lr']:.2g}, evaluated at steps "
            f"{', '.join(str(p['step']) for p in result['curve'])}")


def jailbreak_summary(result: dict) -> str:
    s, cfg = result["search"], result["config"]
    enhanced = f" (enhanced: layer {cfg['match_layer']} matched to the original)" if result["enhanced"] else ""
    return (f"GCG{enhanced}: {s['steps_run']} steps in {s['seconds']:.1f} s ({s['seconds_per_step']:.2f} s/step, "
            f"stopped by {s['stopped']}); loss {s['curve'][0]['loss']:.3f} -> best {s['curve'][-1]['best_loss']:.3f}\n"
            f"string ({cfg['position']}, {len(result['string']['token_ids'])} tokens): {result['string']['text']!r}\n"
            f"token ids: {result['string']['token_ids']}")


def mia_summary(result: dict) -> str:
    return (f"{result['n'][0]} members ({result['members']}) vs {result['n'][1]} non-members "
            f"({result['nonmembers']}); AUC 0.5 = cannot tell them apart")
