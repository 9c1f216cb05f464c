"""What the report card says about itself: hidden empty columns, the one-seed note, the smoke-test note.

    headers, rows, hidden = hide_empty(headers, rows, reasons)   # drop all-"—" columns; hidden: [(header, why)]
    hidden_note(hidden)         # "Hidden, as no model has a value: forget ES ↓ — no NLI model (…)."
    one_seed_note(data, n)      # "Claims need ≥ 2 seeds …" when no recipe has 2, else None
    smoke_note(run, cfg)        # the tiny-model note, with the parameter count read from the run's target model

A cell is empty when it shows "—" (None, NaN, a value not computed). A hidden column's reason is the
not-computed reason of the metric it names (`report.card.not_computed`), in the card's words.
"""

from __future__ import annotations

import math
from pathlib import Path

from obliviate.html import fmt
from obliviate.report.glossary import in_words, metrics_named, term


def _empty(value) -> bool:
    return fmt(value) == "—"


def hide_empty(headers: list[str], rows: list[list], reasons: dict[str, dict[str, list[str]]] | None = None
               ) -> tuple[list[str], list[list], list[tuple[str, str]]]:
    """(headers, rows) without the columns every row leaves empty, and [(hidden header, why)]. Label columns
    (the first) are kept; a table without rows is returned as is."""
    if not rows:
        return headers, rows, []
    keep = [i for i, _ in enumerate(headers) if i == 0 or not all(_empty(r[i]) for r in rows)]
    hidden = [(h, why_empty(h, reasons or {})) for i, h in enumerate(headers) if i not in keep]
    return [headers[i] for i in keep], [[r[i] for i in keep] for r in rows], hidden


def why_empty(header: str, reasons: dict[str, dict[str, list[str]]]) -> str:
    """The not-computed reasons of the metrics `header` names (and their eval.json aggregate keys), in the card's
    names, else a plain 'no value for any model'."""
    from obliviate.evaluate.metrics import METRICS

    found = []
    for key in metrics_named(header):
        for k in (key, METRICS[key].aggregate):
            found += list(reasons.get(k, {}))
    return in_words("; ".join(dict.fromkeys(found))) if found else "no value for any model"


def hidden_note(hidden: list[tuple[str, str]]) -> str:
    """One sentence naming the hidden columns and why ("" when none were hidden)."""
    if not hidden:
        return ""
    return "Hidden, as no model has a value: " + "; ".join(f"{h} — {why}" for h, why in hidden) + "."


def one_seed_note(data: dict, n_claims: int) -> str | None:
    """The sentence shown instead of the claims table when no recipe has 2 seeds (every claim compares seed
    means), else None."""
    most = max((len(runs) for runs in data["recipes"].values()), default=0)
    if most >= 2:
        return None
    return (f"Claims need ≥ 2 seeds per recipe: this run has {most}, so none of the {n_claims} claims was tested "
            "(each compares means over seeds with a t-interval). Rerun with --seeds 2 or more; claims.json lists "
            "them all.")


def count_parameters(model_dir: Path) -> int | None:
    """Parameters stored in a model directory's safetensors files (tied weights once), None without them."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    n = 0
    for f in files:
        with safe_open(str(f), framework="np") as st:
            n += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return n


def smoke_note(run: Path, cfg: dict) -> str | None:
    """The note of a card whose model was trained from scratch on the synthetic world (no `base_model`): a smoke
    test of the pipeline, not a result. None for a pretrained model."""
    if cfg.get("base_model"):
        return None
    n = count_parameters(Path(run) / "models" / "target")
    size = f"{n / 1e6:.1f} M-parameter" if n else "small (parameter count not computed: no models/target weights)"
    return (f"Smoke test of the pipeline: the model is a {size} '{cfg.get('model_size', '?')}' model trained from "
            f"scratch on the synthetic '{cfg.get('preset', '?')}' world. It is far too small to answer fluently "
            "(its sample answers are gibberish), so these numbers check that every stage runs, not how well a "
            "recipe unlearns. For results, run on a pretrained model (base_model=smollm2-135m-instruct, or "
            "`obliviate reproduce --model smollm2-135m-instruct`).")


def smoke_short(note: str | None) -> str | None:
    """The smoke note's first sentence, beside the sample answers: gibberish is expected there."""
    if not note:
        return None
    return (note.split(". ")[0] + ": gibberish answers are expected here. They show that generation runs, not what "
            "forgetting looks like on a real model.")


def labelled(reasons: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """"Not computed" rows [name as the tables show it, models, reason], by name."""
    return [[term(metric), ", ".join(models), in_words(reason)]
            for metric, by in sorted(reasons.items(), key=lambda kv: term(kv[0]).lower())
            for reason, models in by.items()]
