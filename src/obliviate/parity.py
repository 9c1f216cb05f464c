"""Conventions: the choices two faithful implementations of the same paper still make differently, one record each.

    from obliviate.parity import convention
    convention("extraction_strength", "open-unlearning")   # -> "first-suffix"
    convention("extraction_strength", "paper")             # -> "longest-suffix"

One switch, ``parity=paper|open-unlearning|closer-look`` (the same field on `EvalConfig` and `UnlearnConfig`),
selects a column of `CONVENTIONS`; the code of each metric / loss asks `convention(name, cfg.parity)` for its
value and nothing else. ``paper`` (the default) is obliviate's own reading of each paper; ``open-unlearning`` is
locuslab/open-unlearning at commit d3d7cf9 ("OU" below; file:line citations are to that commit);
``closer-look`` is the code of "A Closer Look at Machine Unlearning for LLMs" (Yuan et al. 2024), which is
built on TOFU's evaluation and open-unlearning-style trainers: the issue's loss conventions follow it (token-mean
NLL, all-position KL); its evaluation conventions were not checked against its code, so they stay ours (and its
"ES" is the Entailment Score, not Extraction Strength); so do SimNPO's length and RMU's mean (not checked either).
The Unlearn-Smooth column documents that repository's smoothing code (not a mode: its two differences are bugs we
name, not copy).

`docs/unlearning.md` and `docs/evaluation.md` carry `convention_table(stage)` verbatim; a test checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from obliviate import ObliviateError

PARITY_MODES = ("paper", "open-unlearning", "closer-look")
NOT_A_MODE = "n/a"  # a column that documents code with no matching parity mode


@dataclass(frozen=True)
class Convention:
    """One convention: its value under each parity mode (short codes the code switches on), the Unlearn-Smooth
    code's choice (documentation only), why our default is what it is, and where the references make theirs."""

    stage: str  # "eval" | "unlearn"
    paper: str
    open_unlearning: str
    closer_look: str
    unlearn_smooth: str
    why: str
    where: str  # reference file:line (open-unlearning at d3d7cf9 unless named)

    def value(self, mode: str) -> str:
        return {"paper": self.paper, "open-unlearning": self.open_unlearning, "closer-look": self.closer_look}[mode]


_SAME = "= paper"
CONVENTIONS = {
    # ------------------------------------------------------------------------------------------- evaluation
    "answer_tokens": Convention(
        "eval", "answer+eos", "template-tail", "answer+eos", NOT_A_MODE,
        "the scored answer is the answer the user wrote plus the EOS that ends it; a chat template's end-of-turn "
        "tokens after it (OU: `<|im_end|>\\n` + EOS on SmolLM2) are the template's, not the answer's",
        "src/data/utils.py:61-63,113-114,124 (whole chat tokenized, EOS appended unless last)"),
    "attention_mask": Convention(
        "eval", "real-tokens", "not-pad-id", "real-tokens", NOT_A_MODE,
        "attention covers every real token; OU's collator masks every token equal to the pad id, so on a tokenizer "
        "whose pad is its EOS (SmolLM2: `<|im_end|>`) the template's end-of-turn tokens are hidden from attention "
        "(and, in generation, from the position count)",
        "src/data/collators.py:48-49; src/model/__init__.py:98-100 (pad = EOS when unset)"),
    "scored_positions": Convention(
        "eval", "all", "drop-last", "all", NOT_A_MODE,
        "Min-K%, Extraction Strength and Exact Memorization score every answer token, EOS included, like Prob",
        "src/evals/metrics/utils.py:129-131,173-175 (`[:-1]`: the last label is not scored)"),
    "extraction_strength": Convention(
        "eval", "longest-suffix", "first-suffix", "longest-suffix", NOT_A_MODE,
        "ES = 1 − k/n with k the shortest prefix after which the argmax completes the answer; no such k gives 0 "
        "(OU's loop stops at k = n−1 and gives 1/n)",
        "src/evals/metrics/memorization.py:237-253"),
    "truth_ratio_eps": Convention(
        "eval", "0", "1e-10", "0", NOT_A_MODE,
        "TR = P(perturbed)/P(true) exactly; OU adds 1e-10 to each denominator (forget min(TR, 1/(TR+ε)), "
        "TR = p_wrong/(p_true+ε)); same split forms (forget: mean min(TR,1/TR); others: mean max(0,1−TR))",
        "src/evals/metrics/memorization.py:114-120,162-167; configs/eval/tofu_metrics/*_Truth_Ratio.yaml"),
    "normalised_prob_eps": Convention(
        "eval", "0", "1e-10", "0", NOT_A_MODE,
        "p/(p+Σp_pert) exactly (raw Prob on forget / retain, normalised on real authors / world facts in every mode)",
        "src/evals/metrics/memorization.py:69; configs/eval/tofu_metrics/model_utility.yaml"),
    "rouge_reference": Convention(
        "eval", "record", "decoded-labels", "record", NOT_A_MODE,
        "ROUGE-L recall against the answer as written; OU decodes the label tokens and strips the decoded prompt "
        "(`clean_up_tokenization_spaces`), greedy, 200 new tokens, cut at EOS, stripped (all modes)",
        "src/evals/metrics/utils.py:271-281,294-316; configs/generation/default.yaml"),
    "min_k": Convention(
        "eval", "0.4", "0.4", "0.4", NOT_A_MODE,
        "TOFU's k; OU's Min-K class defaults to 0.2 but its TOFU config sets 0.4 (`min_k=` overrides)",
        "configs/eval/tofu_metrics/mia_min_k.yaml:6; src/evals/metrics/mia/min_k.py:11"),
    # MUSE (VerbMem, KnowMem, PrivLeak). MUSE's code: swj0419/muse_bench `eval.py` (aggregation) and its
    # `metrics/{verbmem,knowmem,privleak}.py`, read in forks that keep them (verbmem: zzwjames/FailureLLMUnlearning
    # at 1882021, which changed only the sampling; knowmem, privleak, logger: Wenwen555/contrastive-npo at fbfeab7 /
    # eebd9ac); OU: configs/eval/muse_metrics/*.yaml at d3d7cf9
    "muse_bos": Convention(
        "eval", "always", "tokenizer-default", "always", NOT_A_MODE,
        "VerbMem / KnowMem prompts start with one BOS (`with_bos`); MUSE and OU tokenize with the tokenizer's "
        "default special tokens (a BOS on Llama, none on SmolLM2)",
        "MUSE metrics/verbmem.py:15-19, knowmem.py:31-34; OU src/data/utils.py:166-169"),
    "verbmem_reference": Convention(
        "eval", "first-tokens", "full-text", "first-tokens", NOT_A_MODE,
        "ROUGE-L F1 against the first 128 tokens of `gt` (MUSE; its slice counts the BOS on Llama); OU compares "
        "with the whole decoded `gt` (its labels, up to 2048 tokens), stripped: a 128-token continuation scored "
        "against a longer text has a lower F1",
        "MUSE metrics/verbmem.py:22, eval.py:65 (mean_rougeL ×100); OU src/evals/metrics/utils.py:271-281, "
        "configs/data/datasets/MUSE_forget_verbmem.yaml:10"),
    "knowmem_stop": Convention(
        "eval", "blank-line", "muse-stops", "blank-line", NOT_A_MODE,
        "the answer ends at the first blank line (SPEC §3); MUSE and OU also cut at `\\nQuestion` and `Question:` "
        "(a model that starts the next few-shot question without a blank line)",
        "MUSE metrics/knowmem.py:49; OU configs/eval/muse_metrics/forget_knowmem_ROUGE.yaml:23"),
    "knowmem_prompt": Convention(
        "eval", "raw-qa", "chat-few-shot", "raw-qa", NOT_A_MODE,
        "not switched by parity (documented): MUSE's raw `Question: q\\nAnswer: a\\n\\n` shots, as ours, but its "
        "query ends `Answer: ` with a space, ours `Answer:`; OU puts each shot in the chat template as a user / "
        "assistant turn",
        "MUSE metrics/knowmem.py:24-28; OU src/data/qa.py:38-50 (preprocess_chat_instance with the shots)"),
    "muse_rouge": Convention(
        "eval", "rougeL-f1-stemmed", "rougeL-f1-stemmed", "rougeL-f1-stemmed", NOT_A_MODE,
        "ROUGE-L F-measure ×100 in all three (MUSE's `mean_rougeL` is the F-measure), with rouge_score's Porter "
        "stemmer as OU and TOFU; MUSE's scorer has `use_stemmer=False` (stemming can only raise the score)",
        "MUSE metrics/logger.py:9-12, eval.py:19,21; OU src/evals/metrics/utils.py:255"),
    "privleak_auc": Convention(
        "eval", "member-high", "muse", "member-high", NOT_A_MODE,
        "PrivLeak = (AUC − AUC_retrain)/AUC_retrain ×100 on `mia_auc` (Min-K 40 %, 1 = forget memorised, so "
        "under-unlearning is positive); MUSE ranks −Min-K with forget as label 0 (AUC = 1 − ours: a memorised forget "
        "set gives −100, as its tables), and OU converts to it (1 − AUC both sides, +1e-10). A given constant "
        "(`privleak_reference_auc`, MUSE's 0.4772 / 0.5393) is read in MUSE's orientation in every mode. Min-K count: "
        "MUSE ⌊0.4·n⌋, OU and ours max(1, ⌊0.4·n⌋)",
        "MUSE metrics/privleak.py:43-46,58-61, eval.py:18,78; OU src/evals/metrics/privacy.py:50-52, "
        "configs/eval/muse_metrics/mia_min_k.yaml:18"),
    # WMDP / MMLU multiple choice: open-unlearning scores WMDP with lm-evaluation-harness's own tasks (HFLM(model),
    # simple_evaluate(tasks=[wmdp_<split>, mmlu]): src/evals/lm_eval.py:27,105; configs/experiment/eval/wmdp/
    # default.yaml:12-14); lm-eval paths below are in the lm_eval 0.4.13 package
    "mcq_description": Convention(
        "eval", "none", "lm-eval", "none", NOT_A_MODE,
        "the bare prompt `{question}\\nA. …\\nAnswer:` (SPEC §3); lm-eval puts its task description first, "
        "`The following are multiple choice questions (with answers) about biology.\\n\\n` (WMDP: biology / "
        "chemistry / cybersecurity; MMLU: the subject)",
        "lm_eval/tasks/wmdp/wmdp_bio.yaml:4 (and _chem, _cyber); lm_eval/tasks/mmlu/default/mmlu_*.yaml:2"),
    "mcq_bos": Convention(
        "eval", "always", "tokenizer-default", "always", NOT_A_MODE,
        "one BOS before every prompt (`with_bos`, the one BOS rule); lm-eval's HFLM encodes with the tokenizer's "
        "default special tokens, so GPT-2-style tokenizers (SmolLM2) get none and Llama's get one",
        "lm_eval/models/huggingface.py:1040-1058 (tok_encode); lm_eval/models/utils.py:982-987"),
    "mcq_metric": Convention(
        "eval", "acc", "acc", "acc", NOT_A_MODE,
        "argmax of log p(\" A\"), … (letters after `Answer:`, target delimiter \" \"), unnormalised: lm-eval's WMDP / "
        "MMLU tasks report `acc` only; `acc_norm` divides by each choice's length, the same for every letter",
        "lm_eval/tasks/wmdp/_default_template_yaml:7-13; lm_eval/tasks/mmlu/default/_default_template_yaml:7-13"),
    # ------------------------------------------------------------------------------------------- unlearning
    "nll_reduction": Convention(
        "unlearn", "sequence-mean", "token-mean", "token-mean", NOT_A_MODE,
        "GA / GD / IdK: (1/B)·Σ_i NLL_mean(y_i): every item weighs the same, whatever its length; the references "
        "use the HF loss, one token mean over the batch",
        "src/trainer/unlearn/grad_ascent.py:12-13, grad_diff.py:26-29,49-50 (`outputs.loss`)"),
    "kl_positions": Convention(
        "unlearn", "answer", "all-unshifted", "all-unshifted", NOT_A_MODE,
        "KL(ref‖θ) on the answer positions; the references average over all B·T unshifted positions, prompt, "
        "padding and the last position included (`kl_div(..., reduction='batchmean')` over B·T rows)",
        "src/trainer/utils.py:17-31"),
    "rmu_reduction": Convention(
        "unlearn", "token-mean", "sequence-mean", "token-mean", NOT_A_MODE,
        "WMDP's RMU: one MSE mean over all non-padding tokens; OU: per-sequence mean over answer tokens, then a "
        "batch mean",
        "src/trainer/unlearn/rmu.py:108-117,129 (mask = labels != -100; per-row masked mean, then .mean())"),
    "simnpo_length": Convention(
        "unlearn", "shifted", "unshifted", "shifted", NOT_A_MODE,
        "SimNPO's |y| is the number of predicted tokens; OU divides by the unshifted label count, |y|+1 on raw "
        "text whose first token carries a label (equal on QA, where position 0 is prompt)",
        "src/trainer/unlearn/simnpo.py:17-19"),
    "simnpo_defaults": Convention(
        "unlearn", "beta=2.5,gamma=0,alpha=1", "beta=4.5,gamma=0,alpha=0.125", "beta=2.5,gamma=0,alpha=1",
        NOT_A_MODE,
        "hyper-parameters, not switched by parity (set simnpo_beta=4.5 alpha=0.125 for OU's): the paper's TOFU "
        "values; OU's δ = 0 sits inside the β product (γ = β·δ) and its 0.125 is the forget-loss weight, not a margin",
        "configs/trainer/SimNPO.yaml:5-8; src/trainer/unlearn/simnpo.py:19-20,30"),
    "smooth_penalty_grad": Convention(
        "unlearn", "flows", "flows", "flows", "detached; CR adds ∇L_f twice",
        "GP / CR (seed B) differentiate the penalty, as the paper's equations; Unlearn-Smooth's code takes it "
        "with `.item()` (no gradient flows) and its CR accumulates ∇L_f twice: bugs, documented, not copied",
        "OPTML-Group/Unlearn-Smooth (GP / CR trainers)"),
}


def check_mode(mode: str) -> str:
    if mode not in PARITY_MODES:
        raise ObliviateError(f"parity: {mode!r} is not one of {', '.join(PARITY_MODES)}")
    return mode


def convention(name: str, mode: str) -> str:
    """The value of convention `name` under parity mode `mode` (see `CONVENTIONS`)."""
    if name not in CONVENTIONS:
        raise ObliviateError(f"unknown convention {name!r}; known: {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name].value(check_mode(mode))


def resolved(stage: str, mode: str) -> dict[str, str | int | float]:
    """{convention: value} of every `stage` convention under `mode` (eval.json / run info record it); numeric
    values (`min_k` 0.4, an ε of 1e-10) as JSON numbers, mode names as strings."""
    return {n: _number_or_name(c.value(check_mode(mode))) for n, c in CONVENTIONS.items() if c.stage == stage}


def _number_or_name(value: str) -> str | int | float:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def convention_table(stage: str) -> str:
    """The Markdown table of `stage`'s conventions, as the docs carry it."""
    rows = ["| convention | ours (`paper`, default) | open-unlearning | Closer-Look | Unlearn-Smooth | why our default"
            " | reference |", "|---|---|---|---|---|---|---|"]
    for name, c in CONVENTIONS.items():
        if c.stage == stage:
            ol = _SAME if c.open_unlearning == c.paper else c.open_unlearning
            cl = _SAME if c.closer_look == c.paper else c.closer_look
            rows.append(f"| `{name}` | `{c.paper}` | {ol} | {cl} | {c.unlearn_smooth} | {c.why} | {c.where} |")
    return "\n".join(rows)
