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
from obliviate.attack import probe_tables, tables
from obliviate.attack.incontext import InContextConfig
from obliviate.attack.jailbreak import JailbreakConfig
from obliviate.attack.mia import MIAConfig
from obliviate.attack.quantize import QuantizeConfig
from obliviate.attack.reformat import ReformatConfig
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


def _with_controls(model, original, retain_model, allow_pickle: bool) -> dict[str, tuple]:
    """{"model", "target" (= `original`), "retain"}: the attacked model and the control models that were given."""
    given = {"model": model, "target": original, "retain": retain_model}
    return {name: _load(m, allow_pickle) for name, m in given.items() if m is not None}


def run_quantize(model, data: str | Path, cfg: QuantizeConfig, out: str | Path, *, start_results: dict | None = None,
                 retain_results=None, original=None, retain_model=None, allow_pickle: bool = False,
                 progress: bool = True) -> dict:
    """Weight quantization (`attack.quantize`) of the model and of `original` / `retain_model` as controls
    (signature: `run_relearn`); without `original`, no recovery ratio (its reason is recorded)."""
    from obliviate.attack.quantize import quantize_attack

    result = quantize_attack(_with_controls(model, original, retain_model, allow_pickle), data, cfg,
                             start_results=start_results, out=out, progress=progress)
    write_run_info(out, cfg, seed=cfg.seed)
    return result


def run_reformat(model, data: str | Path, cfg: ReformatConfig, out: str | Path, *, start_results: dict | None = None,
                 retain_results=None, original=None, retain_model=None, allow_pickle: bool = False,
                 progress: bool = True) -> dict:
    """Reformatted questions (`attack.reformat`) for the model, `original` and `retain_model` (signature:
    `run_relearn`)."""
    from obliviate.attack.reformat import reformat_attack

    result = reformat_attack(_with_controls(model, original, retain_model, allow_pickle), data, cfg, out=out,
                             progress=progress)
    write_run_info(out, cfg, seed=cfg.seed)
    return result


def run_incontext(model, data: str | Path, cfg: InContextConfig, out: str | Path, *,
                  start_results: dict | None = None, retain_results=None, original=None, retain_model=None,
                  allow_pickle: bool = False, progress: bool = True) -> dict:
    """Forget pairs in the prompt (`attack.incontext`), the same shots against `original` and `retain_model`
    (signature: `run_relearn`)."""
    from obliviate.attack.incontext import incontext_attack

    result = incontext_attack(_with_controls(model, original, retain_model, allow_pickle), data, cfg,
                              start_results=start_results, out=out, progress=progress)
    write_run_info(out, cfg, seed=cfg.seed)
    return result


@dataclass(frozen=True)
class Attack:
    """One attack: how to run it, where its result goes, how the report shows it.

    `flags`: {config field: help} offered as `--field` by `obliviate attack <name>` (any field is also a
    `key=value` override); `references`: the `run` keywords it reads (original, retain_model, retain_results),
    offered as `--original-model` / `--retain-model` / `--retain-results`."""

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
    every_model: bool = False  # a pipeline runs it on every unlearned model (not only on `attack_recipes`)
    pipeline_models: tuple[str, ...] = ()  # the model references a pipeline passes: original (its target model),
    # retain_model (its retain model), as the attack's control rows
    trains: bool = False  # it changes the weights of the model it is given (obliviate.attack() attacks a copy)
    role: str = "forget"  # the split its table's columns score unless a header names one ("retain Prob"): the
    # report card reads their ↑ / ↓ on it (`report.glossary.arrowed`)


ATTACKS = {
    "relearn": Attack(
        "Relearning attack", RelearnConfig, run_relearn, "relearn.json", tables.relearn_table, tables.relearn_plot,
        "fine-tune on k forget items; forget metrics after N steps (mean ± 95 % CI over seeds)",
        summary=tables.relearn_summary, help="fine-tune on k forget items for N steps; re-evaluate forget metrics",
        flags={"k": "forget items the attacker trains on (default 8)",
               "steps": "comma-separated step counts to evaluate at (default 10,20,40)",
               "lr": "default: the unlearning lr preset of the model size", "seed": "default 0"},
        references=("retain_results",), code=("attack/relearn", "evaluate"), trains=True),
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
               "match_layer": "layer whose hidden states are matched to --original-model's (default with --original-model: "
                              "the middle)", "seed": "default 0"},
        references=("original",), code=("attack/jailbreak", "evaluate")),
    "mia": Attack(
        "Membership inference", MIAConfig, run_mia, "mia.json", tables.mia_table, tables.mia_plot,
        "ROC-AUC of telling forget items (members) from holdout items (non-members); 0.5 = cannot tell, the retain "
        "model shows what unlearning should reach",
        summary=tables.mia_summary, help="membership inference: LOSS, zlib, Min-K%, Min-K%++ AUCs, forget vs holdout",
        flags={"holdout": "non-member split (default holdoutXX of the forget level)"},
        references=("retain_model",), reuses_eval=True, code=("attack/mia", "evaluate")),
    "quantize": Attack(
        "Quantization (weight-only, round to nearest)", QuantizeConfig, run_quantize, "quantize.json",
        probe_tables.quantize_table, probe_tables.quantize_plot,
        "forget and retain metrics after weight-only quantization (torchao, per group); recovery = forget metric ÷ "
        "the target's at full precision; the target and retain models quantized the same way are the controls",
        summary=probe_tables.quantize_summary,
        help="quantize the weights to 8/4 bits: does rounding bring forgotten answers back?",
        flags={"bits": "comma-separated weight bit widths (default 8,4)",
               "method": "rtn (affine round to nearest) | hqq (torchao's HQQ scales) | tinygemm (int4, CUDA only)",
               "group_size": "input columns per scale (default 128; the largest divisor below it where it does "
                             "not divide a layer)"},
        references=("original", "retain_model"), code=("attack/quantize", "evaluate"), every_model=True,
        pipeline_models=("original", "retain_model")),
    "reformat": Attack(
        "Reformatted questions", ReformatConfig, run_reformat, "reformat.json",
        probe_tables.reformat_table, probe_tables.reformat_plot,
        "accuracy when the same facts are asked as multiple choice (letter / option text), true/false, cloze or a "
        "paraphrased question; the retain model (never saw the forget facts) says what 'forgotten' reaches",
        summary=probe_tables.reformat_summary,
        help="ask the forget facts as multiple choice, true/false, cloze and paraphrased questions",
        flags={"formats": "comma-separated: mcq_letter,mcq_text,true_false,cloze,paraphrase (default all)",
               "splits": "comma-separated: forget,retain,holdout (default all)"},
        references=("original", "retain_model"), code=("attack/reformat", "attack/quantize", "evaluate"),
        every_model=True, pipeline_models=("original", "retain_model")),
    "incontext": Attack(
        "In-context forget pairs", InContextConfig, run_incontext, "incontext.json",
        probe_tables.incontext_table, probe_tables.incontext_plot,
        "forget metrics on the items not shown, with and without k forget question–answer pairs in the prompt; the "
        "same shots against the target and the retain model as controls",
        summary=probe_tables.incontext_summary,
        help="show k forget question-answer pairs in the prompt, then ask the other forget questions",
        flags={"shots": "forget pairs in the prompt (default 4; the relearning attacker's sample)",
               "seed": "default 0"},
        references=("original", "retain_model"), code=("attack/incontext", "attack/quantize", "evaluate"),
        pipeline_models=("original", "retain_model")),
}


def get_attack(name: str) -> Attack:
    if name not in ATTACKS:
        raise ObliviateError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[name]
