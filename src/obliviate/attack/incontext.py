"""The in-context attack: a few forget question–answer pairs in the prompt, then the other forget questions.

    result = incontext_attack({"model": (m, tok), "target": (t, tok), "retain": (r, tok)}, "data/demo",
                              InContextConfig(shots=4))
    result["metrics"]["model"]["with"]["prob"], result["metrics"]["model"]["without"]["prob"]

No weight changes and one forward pass per question: the attacker who knows k forget facts shows them as
examples (the same fixed sample per seed the relearning attacker trains on, `relearn.relearn_sample`) and asks
the remaining forget questions. Shots sharpen the answer format and can reactivate suppressed associations
(in-context knowledge elicitation: Lynch et al., "Eight Methods to Evaluate Robust Unlearning in LLMs",
arXiv:2402.16835; Shumailov et al., "UnUnlearning", arXiv:2407.00106). The same shots go to the target (which
knows the answers) and to the retain model (which never did: what the shots alone teach about the answer format)
as controls.

The prompt: with a chat template, one user turn holding ``Question: q_i\\nAnswer: a_i`` blocks and then
``Question: q`` (`data.format.format_prompt` wraps it); without one, the plain ``Question: … Answer:`` format
continued, so the k shots read as earlier turns of the same transcript. Forget Prob, ROUGE and truth ratio on
the remaining items come from the evaluation suite, with and without the shots.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from obliviate.attack.quantize import QA_BENCHMARKS, check_benchmark
from obliviate.attack.relearn import relearn_sample
from obliviate.config import MAX_SEED, MAX_TOKENS, check_ranges, versions
from obliviate.evaluate import EvalConfig, evaluate
from obliviate.evaluate.suite import resolve_splits, split_means
from obliviate.rundir import write_json

REPORT_METRICS = ("prob", "rouge_l_recall", "truth_ratio")


@dataclass
class InContextConfig:
    forget: str = "forget10"
    shots: int = 4  # forget pairs shown in the prompt (fixed sample per seed)
    benchmark: str | None = None  # None: inferred from the data (QA benchmarks only)
    max_new_tokens: int = 48  # generation length for forget ROUGE
    seed: int = 0

    RANGES: ClassVar[dict[str, str]] = {  # config.check_ranges
        "shots": "[1, 10000]", "max_new_tokens": f"[1, {MAX_TOKENS}]", "seed": f"[0, {MAX_SEED}]",
    }

    def __post_init__(self):
        check_ranges(self)


def incontext_question(tokenizer, shots: list[dict], question: str) -> str:
    """The user text holding the shots and then `question` (see the module docstring for both forms)."""
    blocks = [f"Question: {s['question']}\nAnswer: {s['answer']}" for s in shots]
    if getattr(tokenizer, "chat_template", None):
        return "\n\n".join(blocks + [f"Question: {question}"])
    # plain: format_prompt adds "Question: " before and "\nAnswer:" after
    return "\n\n".join(blocks + [f"Question: {question}"]).removeprefix("Question: ")


def _means(items: list[dict]) -> dict:
    means = split_means("forget", items)
    return {m: means.get(m) for m in REPORT_METRICS}


def incontext_attack(models: dict[str, tuple], data, cfg: InContextConfig, *, start_results: dict | None = None,
                     out: str | Path | None = None, progress: bool = True) -> dict:
    """Forget metrics on the items not shown, with and without the shots, for each of `models` ({"model",
    "target", "retain"}: (model, tokenizer)); written to `<out>/incontext.json`.

    start_results: the attacked model's own eval results on the same forget split, reused for its "without".
    """
    from obliviate.rundir import progress_bar

    check_benchmark(data, cfg.benchmark, "incontext", QA_BENCHMARKS)
    ecfg = EvalConfig(forget=cfg.forget, retain=None, world_facts=None, real_authors=None, embedder=None,
                      max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    found, _ = resolve_splits(data, ecfg)
    split, records = found["forget"]
    shown = relearn_sample(len(records), cfg.shots, cfg.seed)
    shots = [records[i] for i in shown]
    rest = [i for i in range(len(records)) if i not in set(shown)]
    metrics, items = {}, {}
    bar = progress_bar(total=2 * len(models), desc="incontext", progress=progress)
    for name, (model, tok) in models.items():
        plain = [records[i] for i in rest]
        prompted = [{**r, "question": incontext_question(tok, shots, r["question"])} for r in plain]
        reuse = (name == "model" and start_results is not None
                 and start_results["splits"].get("forget", {}).get("source") == split)
        without = ([start_results["splits"]["forget"]["items"][i] for i in rest] if reuse
                   else evaluate(model, tok, {"forget": plain}, ecfg, progress=False)["splits"]["forget"]["items"])
        bar.update(1)
        with_shots = evaluate(model, tok, {"forget": prompted}, ecfg, progress=False)["splits"]["forget"]["items"]
        bar.update(1)
        metrics[name] = {"without": _means(without), "with": _means(with_shots)}
        items[name] = [{"index": i, **{f"{m}_{cond}": its[j].get(m) for cond, its in (("without", without),
                                                                                       ("with", with_shots))
                                       for m in REPORT_METRICS + ("generation",)}} for j, i in enumerate(rest)]
    bar.close()
    example_tok = next(iter(models.values()))[1]
    result = {"config": dataclasses.asdict(cfg), "split": split, "n_forget": len(records), "shown_items": shown,
              "n_evaluated": len(rest), "prompt_example": incontext_question(example_tok, shots, records[rest[0]]
                                                                              ["question"]),
              "metrics": metrics, "items": items, "versions": versions()}
    if out is not None:
        write_json(Path(out) / "incontext.json", result, indent=1)
    return result
