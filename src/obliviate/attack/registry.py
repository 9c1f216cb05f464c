"""`ATTACKS`: one record per attack on an unlearned language model; the CLI, the pipeline and the report read it.

    attack = ATTACKS["relearn"]
    cfg = attack.config(k=8, steps=[10, 20])                 # its config dataclass (YAML keys = fields)
    result = attack.run("runs/npo_gd/model", "data/demo", cfg, "runs/npo_gd/relearn",
                        start_results=eval_results, retain_results="runs/retain/eval/eval.json")
    headers, rows = attack.table({"npo+gd": [result]});  fig = attack.plot({"npo+gd": [result]}, target_results)

Every `run` has the same signature (`run_relearn` documents it), writes `<out>/<result>` and `<out>/run.json`
(`config.write_run_info`) and returns the result dict. Adding an attack is one record here (+ its test):
`obliviate attack <name>`, `obliviate ls attacks` and the report card's Attacks section then pick it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from obliviate import ObliviateError
from obliviate.attack import tables
from obliviate.attack.jailbreak import JailbreakConfig
from obliviate.attack.mia import MIAConfig
from obliviate.attack.relearn import RelearnConfig
from obliviate.config import write_run_info
from obliviate.rundir import write_json


def _load(model, allow_pickle: bool):
    """(model, tokenizer) from a directory / hub id, or an already-loaded pair as given."""
    if isinstance(model, tuple):
        return model
    from obliviate.models.loading import load_model

    return load_model(model, allow_pickle=allow_pickle)


def run_relearn(model, data: str | Path, cfg: RelearnConfig, out: str | Path, *, start_results: dict | None = None,
                retain_results: dict | str | Path | None = None, original=None, retain_model=None,
                allow_pickle: bool = False, progress: bool = True) -> dict:
    """Run one attack on one model; write `<out>/<result file>` and `<out>/run.json`; return the result.

    The signature every `Attack.run` shares, so a chain can call each attack alike:
        model: the attacked (unlearned) model, a directory / hub id or a loaded (model, tokenizer) pair.
        data: the data directory / hub id holding its forget split (`cfg.forget`).
        cfg: the attack's config (`Attack.config`).  out: the attack's directory (created).
        start_results: the attacked model's own eval results on the same forget split, reused where the
            attack needs them (relearning's step 0, the jailbreak's "without", MIA's scores: no new pass).
        retain_results: the retain model's eval results (dict or eval.json path): Forget Quality, MIA's gap.
        original: the model before unlearning (directory or pair), for attacks that compare with it.
        retain_model: the retain model (directory or pair), for attacks that score it beside the model.
    An attack ignores the references it does not use (`Attack.references` lists those it does).
    """
    from obliviate.attack.relearn import relearn

    m, tok = _load(model, allow_pickle)
    result = relearn(m, tok, data, cfg, retain_results=retain_results, start_results=start_results, out=out,
                     progress=progress)
    write_run_info(out, cfg, seed=cfg.seed)
    return result


def run_jailbreak(model, data: str | Path, cfg: JailbreakConfig, out: str | Path, *,
                  start_results: dict | None = None, retain_results=None, original=None, retain_model=None,
                  allow_pickle: bool = False, progress: bool = True) -> dict:
    """GCG (`attack.jailbreak`); with `original`, the enhanced form matching its hidden states (signature:
    `run_relearn`). `cfg.match_layer` None with `original`: the middle layer."""
    import dataclasses

    from obliviate.attack.jailbreak import jailbreak

    m, tok = _load(model, allow_pickle)
    orig = None
    if original is not None:
        orig, orig_tok = _load(original, allow_pickle)
        if orig_tok.get_vocab() != tok.get_vocab():
            raise ObliviateError(f"original model {original}: its tokenizer differs from the attacked model's")
        if cfg.match_layer is None:
            cfg = dataclasses.replace(cfg, match_layer=max(1, m.config.num_hidden_layers // 2))
    result = jailbreak(m, tok, data, cfg, original=orig, start_results=start_results, out=out, progress=progress)
    write_run_info(out, cfg, seed=cfg.seed)
    return result


def run_mia(model, data: str | Path, cfg: MIAConfig, out: str | Path, *, start_results: dict | None = None,
            retain_results: dict | str | Path | None = None, original=None, retain_model=None,
            allow_pickle: bool = False, progress: bool = True) -> dict:
    """Membership inference (`attack.mia`; signature: `run_relearn`). With `start_results` holding forget and
    holdout items (and no `retain_model`), the report is built from the saved scores (`retain_results`' beside
    them): no new pass. Else forget and holdout are scored with the model (and `retain_model`)."""
    from obliviate.attack.mia import membership_inference, mia_from_results

    splits = (start_results or {}).get("splits", {})
    if "forget" in splits and "holdout" in splits and retain_model is None:
        from obliviate.evaluate import load_results

        if isinstance(retain_results, (str, Path)):
            retain_results = load_results(retain_results)
        result = mia_from_results(start_results, retain_results)
        write_json(Path(out) / "mia.json", result, indent=1)
    else:
        m, tok = _load(model, allow_pickle)
        retain = _load(retain_model, allow_pickle) if retain_model is not None else None
        result = membership_inference(m, tok, data, cfg, retain=retain, out=out, progress=progress)
    write_run_info(out, cfg)
    return result


@dataclass(frozen=True)
class Attack:
    """One attack: how to run it, where its result goes, how the report shows it.

    `flags`: {config field: help} offered as `--field` by `obliviate attack <name>` (any field is also a
    `key=value` override); `references`: the `run` keywords it reads (original, retain_model, retain_results),
    offered as `--original` / `--retain-model` / `--retain-results`."""

    title: str
    config: type
    run: Callable[..., dict]
    result: str  # file name inside the attack's directory `<seed dir>/<name>/`
    table: Callable[[dict[str, list[dict]]], tuple[list[str], list[list]]]
    plot: Callable  # (groups, target eval results | None) -> matplotlib Figure
    caption: str
    summary: Callable[[dict], str] | None = None  # a few lines for the terminal
    help: str = ""
    flags: dict[str, str] = field(default_factory=dict)
    references: tuple[str, ...] = ()
    reuses_eval: bool = False  # runs from the attacked model's saved evaluation (no model pass): cheap, so a
    # pipeline runs it on every unlearned model, not only on its attacked recipes
    code: tuple[str, ...] = ()  # obliviate modules its result depends on (a pipeline stage's key hashes them);
    # empty: the module `run` is defined in


ATTACKS = {
    "relearn": Attack(
        "Relearning attack", RelearnConfig, run_relearn, "relearn.json", tables.relearn_table, tables.relearn_plot,
        "fine-tune on k forget items; forget metrics after N steps (mean ± 95 % CI over seeds)",
        summary=tables.relearn_summary, help="fine-tune on k forget items for N steps; re-evaluate forget metrics",
        flags={"k": "forget items the attacker trains on (default 8)",
               "steps": "comma-separated step counts to evaluate at (default 10,20,40)",
               "lr": "default: the unlearning lr preset of the model size", "seed": "default 0"},
        references=("retain_results",), code=("attack/relearn", "evaluate")),
    "jailbreak": Attack(
        "Jailbreak (GCG adversarial string)", JailbreakConfig, run_jailbreak, "jailbreak.json",
        tables.jailbreak_table, tables.jailbreak_plot,
        "forget metrics with and without the string, on the items the search optimised over and on forget items "
        "it never saw",
        summary=tables.jailbreak_summary, help="GCG: one adversarial string that brings forgotten answers back",
        flags={"position": "prefix | suffix (default prefix)", "tokens": "string length in tokens (default 20)",
               "k": "forget items the search optimises over (default 8)", "steps": "search steps (default 250)",
               "search_width": "candidate swaps scored per step (default 128)",
               "topk": "tokens per position from the gradient (default 64)",
               "time_limit": "stop the search after S seconds",
               "match_layer": "layer whose hidden states are matched to --original's (default with --original: "
                              "the middle)", "seed": "default 0"},
        references=("original",), code=("attack/jailbreak", "evaluate")),
    "mia": Attack(
        "Membership inference", MIAConfig, run_mia, "mia.json", tables.mia_table, tables.mia_plot,
        "ROC-AUC of telling forget items (members) from holdout items (non-members); 0.5 = cannot tell, the retain "
        "model shows what unlearning should reach",
        summary=tables.mia_summary, help="membership inference: LOSS, zlib, Min-K%, Min-K%++ AUCs, forget vs holdout",
        flags={"holdout": "non-member split (default holdoutXX of the forget level)"},
        references=("retain_model",), reuses_eval=True, code=("attack/mia", "evaluate")),
}


def get_attack(name: str) -> Attack:
    if name not in ATTACKS:
        raise ObliviateError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[name]
