"""Scoring stages: each takes loaded records (never a path) and returns per-item rows.

    forward_stage   one scoring pass over each (question, answer) / perturbation (each question run once,
                    `passes.forward_scores`): NLL, Prob, TR, MIA, ES/EM
    generate_roles  greedy generations of several roles in one pass: ROUGE-L recall, token entropy
    text_stage      raw text (MUSE privleak, RWKU mia): NLL and MIA scores of the first `max_length` tokens
    cosine_stage / nli_stage   Cosine Similarity against "before" generations, Entailment Score
    extra_stages    MUSE VerbMem / KnowMem (ICL prompt) and MCQ accuracy on their roles
The stage functions call `passes.forward_scores` / `passes.score_batch` and `generate.generate`.
"""

from __future__ import annotations

from obliviate.data.format import IGNORE_INDEX, encode_prompts, pad_batch, pad_token_id, records_hash, with_bos
from obliviate.evaluate import metrics as M
from obliviate.evaluate.aggregate import split_means
from obliviate.evaluate.cache import EvalCache
from obliviate.evaluate.config import EvalConfig
from obliviate.evaluate.generate import generate
from obliviate.evaluate.passes import encode_scored, forward_scores, score_batch
from obliviate.evaluate.roles import Roles, has_perturbations, tr_answer_field
from obliviate.parity import convention


def forward_stage(model, tok, role: str, records: list[dict], cfg: EvalConfig, progress: bool) -> list[dict]:
    """One forward pass per sequence: the answer, ỹ (if it differs) and each perturbation."""
    perturbed = role != "holdout" and has_perturbations(records, role)  # holdout: MIA only, the answer suffices
    tr_field = tr_answer_field(role, records) if perturbed else "answer"
    pairs, slots = [], []
    for i, r in enumerate(records):
        pairs.append((r["question"], r["answer"]))
        slots.append((i, "answer", None))
        if perturbed:
            if tr_field != "answer":
                pairs.append((r["question"], r[tr_field]))
                slots.append((i, "tr", None))
            for k, p in enumerate(r["perturbed_answer"]):
                pairs.append((r["question"], p))
                slots.append((i, "pert", k))
    rows = forward_scores(model, tok, pairs, batch_size=cfg.batch_size, k=cfg.min_k, max_length=cfg.max_length,
                          progress=progress, desc=f"forward {role}", parity=cfg.parity)
    tr_eps, p_eps = (float(convention(c, cfg.parity)) for c in ("truth_ratio_eps", "normalised_prob_eps"))
    items = [{"index": i, "question": r["question"], "answer": r["answer"]} for i, r in enumerate(records)]
    for (i, kind, k), row in zip(slots, rows):
        it = items[i]
        if kind == "answer" and row["nll_mean"] is None:  # zero scored tokens: not computed, not "known"
            it.update(nll_mean=None, nll_sum=None, n_tokens=0, prob=None, extraction_strength=None,
                      exact_memorization=None, mia=None, not_computed="no answer token left to score (truncated)")
            if perturbed and tr_field == "answer":
                it["nll_tr_mean"] = None
        elif kind == "answer":
            it.update(nll_mean=row["nll_mean"], nll_sum=row["nll_sum"], n_tokens=row["n_tokens"],
                      prob=M.probability(row["nll_mean"]), extraction_strength=row["extraction_strength"],
                      exact_memorization=row["exact_memorization"],
                      mia=M.mia_item_scores(row, it["answer"]))
            if perturbed and tr_field == "answer":
                it["nll_tr_mean"] = row["nll_mean"]
        elif kind == "tr":
            it["nll_tr_mean"] = row["nll_mean"]
        else:
            it.setdefault("nll_perturbed_mean", []).append(row["nll_mean"])
    if perturbed:
        for it in items:
            scored = it["nll_mean"] is not None and None not in it["nll_perturbed_mean"]
            it["prob_norm"] = (M.normalised_probability(it["nll_mean"], it["nll_perturbed_mean"], eps=p_eps)
                               if scored else None)
            it["truth_ratio"] = (M.truth_ratio(it["nll_tr_mean"], it["nll_perturbed_mean"], eps=tr_eps)
                                 if scored and it["nll_tr_mean"] is not None else None)
    return items


def generate_roles(model, tok, records: dict[str, list[dict]], cfg: EvalConfig,
                   progress: bool) -> dict[str, list[dict]]:
    """Greedy generations of several roles' questions in one `generate` call (continuous batching keeps every slot
    busy across roles): per role, per item, the generation, ROUGE-L recall, token entropy, refusal."""
    prompts = {role: encode_prompts(tok, [r["question"] for r in recs], max_length=cfg.max_length,
                                    what=f"{role} prompts") for role, recs in records.items()}
    texts, ids = generate(model, tok, [p for ps in prompts.values() for p in ps], max_new_tokens=cfg.max_new_tokens,
                          batch_size=cfg.gen_batch_size, progress=progress, desc=f"generate {'+'.join(records)}",
                          mask_pad_ids=convention("attention_mask", cfg.parity) == "not-pad-id")
    out, start = {}, 0
    for role, recs in records.items():
        refs = [rouge_reference(tok, r["question"], r["answer"], cfg) for r in recs]
        out[role] = [{"generation": t, "rouge_l_recall": M.rouge_l_recall(t, ref),
                      "token_entropy": M.token_entropy(g), "refusal_rate": M.refusal(t), "n_generated_tokens": len(g)}
                     for ref, t, g in zip(refs, texts[start:start + len(recs)], ids[start:start + len(recs)])]
        start += len(recs)
    return out


def rouge_reference(tok, question: str, answer: str, cfg: EvalConfig) -> str:
    """The text ROUGE compares a generation with (convention `rouge_reference`): the record's answer, or
    open-unlearning's: the scored sequence decoded (special tokens skipped, tokenization spaces cleaned up) with
    the decoded prompt removed, stripped (src/evals/metrics/utils.py:271-281 at d3d7cf9)."""
    if convention("rouge_reference", cfg.parity) != "decoded-labels":
        return answer
    ex = encode_scored(tok, question, answer, max_length=cfg.max_length, parity=cfg.parity)
    n_prompt = next((t for t, y in enumerate(ex["labels"]) if y != IGNORE_INDEX), len(ex["labels"]))
    dec = lambda ids: tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)  # noqa: E731
    return dec(ex["input_ids"]).replace(dec(ex["input_ids"][:n_prompt]), "").strip()


def before_generations(before_results: dict | None, role: str, items: list[dict]) -> tuple[list[str] | None, str]:
    if before_results is None:
        return None, "no 'before' generations (--original-model / --original-results)"
    split = before_results.get("splits", {}).get(role)
    if not split or any("generation" not in b for b in split.get("items", [])):
        return None, f"the 'before' results have no generations for split '{role}'"
    before = split["items"]
    if len(before) != len(items) or any(b["question"] != a["question"] for a, b in zip(items, before)):
        return None, f"the 'before' results of split '{role}' hold different questions"
    return [b["generation"] for b in before], ""


def text_stage(model, tok, role: str, records: list[dict], cfg: EvalConfig, progress: bool) -> list[dict]:
    """MIA scores of each text (its first `max_length` tokens, every token scored), members or not."""
    from obliviate.rundir import progress_bar

    pad_id = pad_token_id(tok)
    examples = []
    for r in records:
        ids = with_bos(tok, tok(r["text"], add_special_tokens=False)["input_ids"])[: cfg.max_length]
        examples.append({"input_ids": ids, "labels": list(ids)})
    items = []
    for start in progress_bar(range(0, len(examples), cfg.batch_size), desc=f"forward {role}",
                              progress=progress):
        chunk = examples[start:start + cfg.batch_size]
        for k, row in enumerate(score_batch(model, pad_batch(chunk, pad_id), k=cfg.min_k)):
            i = start + k
            if row["nll_mean"] is None:  # a text of one token: nothing to score
                items.append({"index": i, "text": records[i]["text"][:200], "n_tokens": 0, "nll_mean": None,
                              "mia": None, "not_computed": "no token to score"})
                continue
            items.append({"index": i, "text": records[i]["text"][:200], "n_tokens": row["n_tokens"],
                          "nll_mean": row["nll_mean"], "mia": M.mia_item_scores(row, records[i]["text"])})
    return items


def _mean_of(items: list[dict], key: str) -> float | None:
    vals = [it[key] for it in items if it.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def gen_roles(results: dict) -> list[str]:
    return [r for r, s in results["splits"].items() if r != "holdout" and s["items"] and "generation" in s["items"][0]]


def cosine_stage(results: dict, before_results: dict | None, cfg: EvalConfig, embedder) -> None:
    if cfg.embedder is None and embedder is None:
        results["stage_not_computed"]["cosine_similarity"] = "embedder=None in the config"
        return
    from obliviate.evaluate.embeddings import embedder_missing

    if embedder is None and embedder_missing(cfg.embedder):
        results["stage_not_computed"]["cosine_similarity"] = embedder_missing(cfg.embedder)
        return
    reasons = []
    for role in gen_roles(results):
        items = results["splits"][role]["items"]
        before, reason = before_generations(before_results, role, items)
        if before is None:
            reasons.append(reason)
            continue
        if embedder is None:
            from obliviate.evaluate.embeddings import load_embedder

            embedder = load_embedder(cfg.embedder)
        from obliviate.evaluate.embeddings import cosine_similarities

        for it, cs in zip(items, cosine_similarities(embedder, [it["generation"] for it in items], before)):
            it["cosine_similarity"] = cs
        results["splits"][role]["means"] = split_means(role, items, cfg.parity)
    if reasons:
        results["stage_not_computed"]["cosine_similarity"] = "; ".join(dict.fromkeys(reasons))


def nli_stage(results: dict, cfg: EvalConfig, nli, progress: bool) -> None:
    from obliviate.evaluate.nli import NO_NLI_REASON, load_nli, nli_labels

    if cfg.nli is None and nli is None:
        results["stage_not_computed"]["entailment_score"] = NO_NLI_REASON
        return
    nli = nli or load_nli(cfg.nli)
    results["config"]["nli"] = nli.name
    for role in gen_roles(results):
        items = results["splits"][role]["items"]
        todo = [it for it in items if it["rouge_l_recall"] >= cfg.rouge_floor]
        # forget: does the output entail the truth? retain-type: does the truth entail the output?
        pairs = [(it["generation"], it["answer"]) if role == "forget" else (it["answer"], it["generation"])
                 for it in todo]
        labels = nli_labels(nli, [p for p, _ in pairs], [h for _, h in pairs]) if pairs else []
        for it in items:
            it["entailment_label"] = None
        for it, lab in zip(todo, labels):
            it["entailment_label"] = lab
        for it in items:
            it["entailed"] = M.entailed(it["entailment_label"], it["rouge_l_recall"], rouge_floor=cfg.rouge_floor)
        results["splits"][role]["means"] = split_means(role, items, cfg.parity)


def extra_stages(model, tok, roles: Roles, cfg: EvalConfig, cache: EvalCache, results: dict, progress: bool,
                 save) -> None:
    """VerbMem, KnowMem (with each knowmem role's few-shot role) and MCQ on the roles that hold them."""
    from obliviate.evaluate.mcq import mcq_eval
    from obliviate.evaluate.muse import knowmem_eval, verbmem_eval

    bos = convention("muse_bos", cfg.parity)
    par = [] if cfg.parity == "paper" else [cfg.parity]  # paper: the keys of caches written before the switch
    for role, loaded in roles.found.items():
        recs = loaded.records
        if loaded.format == "prompt":
            ref = convention("verbmem_reference", cfg.parity)
            results.setdefault("muse", {})[role] = cache.get_or_compute(
                loaded.source, "verbmem", [recs, *par] if par else recs, lambda: verbmem_eval(
                    model, tok, recs, batch_size=cfg.gen_batch_size, progress=progress, bos=bos, reference=ref))
        elif role in roles.knowmem_icl:
            icl = roles.found[roles.knowmem_icl[role]].records if roles.knowmem_icl[role] in roles.found else []
            stop = convention("knowmem_stop", cfg.parity)
            results.setdefault("muse", {})[role] = cache.get_or_compute(
                loaded.source, "knowmem", [recs, icl, *par], lambda: knowmem_eval(
                    model, tok, recs, icl, batch_size=cfg.gen_batch_size, progress=progress, bos=bos, stop=stop))
            if not icl:
                results["stage_not_computed"][f"{role}_icl"] = (f"no few-shot split for {role}: "
                                                                f"{roles.missing.get(roles.knowmem_icl[role], '')}")
        elif loaded.format == "mcq":
            conv = {"description": convention("mcq_description", cfg.parity), "bos": convention("mcq_bos", cfg.parity)}
            key = recs if cfg.parity == "paper" else [recs, role, conv]  # paper: the key of caches before the switch
            results.setdefault("mcq", {})[role] = cache.get_or_compute(
                loaded.source, "mcq", key, lambda: mcq_eval(model, tok, recs, batch_size=cfg.batch_size, role=role,
                                                            **conv))
        elif loaded.format == "text":
            items = cache.get_or_compute(loaded.source, f"text-{role}", [records_hash(recs), cfg.min_k, cfg.max_length],
                                         lambda: text_stage(model, tok, role, recs, cfg, progress))
            results.setdefault("text", {})[role] = {"source": loaded.source, "n": len(recs), "items": items,
                                                    "means": {"nll_mean": _mean_of(items, "nll_mean")}}
        else:
            continue
        save()
