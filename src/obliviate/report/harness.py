"""The card's lm-eval section: eval.json `harness` (written by `obliviate eval --harness lm-eval`), one row per
model, task or group and seed, shown only when some evaluation of the run holds it."""

from __future__ import annotations

HARNESS_NOTE = ("lm-evaluation-harness's own task definitions (prompt, description, metric), run on each model from "
                "local copies of the hub datasets; our own MCQ accuracy follows them under parity=open-unlearning "
                "(docs/evaluation.md, 'The lm-eval bridge'). acc: lower is better on a task the unlearning targets "
                "(WMDP's hazardous-knowledge questions; chance is 0.25 on 4 options), higher on a utility task (MMLU).")
HEADERS = ["model", "task / group", "acc ↓ forget task · ↑ utility task", "± stderr", "n", "lm-eval"]


def _rows(label: str, ev: dict) -> list[list]:
    h = (ev or {}).get("harness")
    if not h:
        return []
    named = [(t, r, f"v{r.get('version')}") for t, r in h.get("tasks", {}).items()] + \
        [(f"{g} (group)", r, "") for g, r in h.get("groups", {}).items()]
    return [[label, name, r["metrics"].get("acc"), r["metrics"].get("acc_stderr"), r.get("n"),
             f"{h.get('version')} {ver}".strip()] for name, r, ver in named]


def harness_table(data: dict) -> tuple[list[str], list[list]] | None:
    """(headers, rows) of every evaluation's lm-eval results in the run (`report.runs.collect`), or None."""
    rows = _rows("target (before)", data.get("target")) + _rows("retain (ideal)", data.get("retain"))
    for recipe, runs in data.get("recipes", {}).items():
        for i, run in enumerate(runs):
            rows += _rows(f"{recipe} (seed run {i + 1})" if len(runs) > 1 else recipe, run.get("eval"))
    return (HEADERS, rows) if rows else None
