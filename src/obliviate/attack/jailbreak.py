"""The jailbreak attack (SPEC §5, seed B): one universal adversarial string found by greedy coordinate gradient.

    result = jailbreak(model, tok, "data/demo", JailbreakConfig(tokens=20, steps=250), out="runs/x/jailbreak")
    result["string"]["text"], result["metrics"]["unseen"]["with"]["prob"]

GCG (Zou et al., "Universal and Transferable Adversarial Attacks on Aligned Language Models",
arXiv:2307.15043). The string's n tokens sit where the chat template puts the user text, before the
question (``prefix``) or after it (``suffix``), and are optimised jointly over k forget items (the same
fixed sample per seed the relearning attack trains on) to maximise the log-likelihood of their true answers:

.. math:: \\mathcal{L}(s) = \\frac1k \\sum_i \\mathrm{NLL}_{mean}(y_i \\mid x_i \\oplus s)
          \\;+\\; \\lambda\\, \\frac1k \\sum_i \\frac1{|y_i|} \\sum_t
          \\big\\lVert h^{(L)}_t(x_i \\oplus s) - h^{(L),orig}_t(x_i) \\big\\rVert_2

The second term is the "enhanced" GCG of the unlearning-robustness papers (`original` model given): the
unlearned model's hidden states at layer L, at the positions that predict the answer, are pulled towards the
original model's on the clean prompt (computed once). Each step: the gradient of L w.r.t. the one-hot token
matrix (through `inputs_embeds`) ranks, per position, the top-k replacement tokens; `search_width` single-token
swaps (a random position, a random token of its top-k) are scored exactly; the best-scoring swap whose text
re-tokenizes to exactly the same ids in every attacked prompt becomes the string (kept even when worse, as in
GCG); the best string over all steps is the result. Tokens never change the prompt around them, so the
keys/values of everything before the string (the template head with ``prefix``, shared by every prompt; head
+ question with ``suffix``, one per prompt) are computed once and expanded over the candidate batch.

The report evaluates the forget split with and without the string through the evaluation suite, separately on
the attacked items and on the forget items the search never saw.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import torch

from obliviate import ObliviateError
from obliviate.attack.relearn import relearn_sample
from obliviate.config import MAX_BATCH, MAX_SEED, MAX_STEPS, MAX_TOKENS, check_ranges, versions
from obliviate.data.format import IGNORE_INDEX, encode_prompt, encode_qa
from obliviate.evaluate import EvalConfig, evaluate
from obliviate.evaluate.suite import resolve_splits, split_means
from obliviate.models.device import model_device
from obliviate.models.logps import gather_token_logps
from obliviate.rundir import write_json, write_text

POSITIONS = ("prefix", "suffix")
FILLERS = ("x", " x", "!", " !", "a", " a")  # the initial string repeats the first that tokenizes stably
REPORT_METRICS = ("prob", "rouge_l_recall", "truth_ratio")


@dataclass
class JailbreakConfig:
    forget: str = "forget10"
    position: str = "prefix"  # prefix | suffix: before or after the question, inside the user turn
    tokens: int = 20  # length of the adversarial string
    k: int = 8  # forget items the search optimises over (fixed sample per seed)
    steps: int = 250
    search_width: int = 128  # candidate swaps scored per step
    topk: int = 64  # tokens per position the gradient proposes
    batch_size: int = 32  # candidate sequences per forward pass
    time_limit: float | None = None  # seconds of search; stops early (the steps run are recorded)
    match_layer: int | None = None  # enhanced GCG: hidden-state layer matched to the original model
    match_weight: float = 1.0  # λ of the hidden-state term
    max_new_tokens: int = 48  # generation length for ROUGE in the with/without evaluation
    seed: int = 0

    RANGES: ClassVar[dict[str, str]] = {  # config.check_ranges
        "tokens": "[1, 4096]", "k": "[1, 1e7]", "steps": f"[1, {MAX_STEPS}]", "search_width": f"[1, {MAX_BATCH}]",
        "topk": "[1, 1e6]", "batch_size": f"[1, {MAX_BATCH}]", "time_limit": "(0, 1e9]", "match_layer": "[1, 1000]",
        "match_weight": "[0, 1e6]", "max_new_tokens": f"[1, {MAX_TOKENS}]", "seed": f"[0, {MAX_SEED}]",
    }

    def __post_init__(self):
        check_ranges(self)
        if self.position not in POSITIONS:
            raise ObliviateError(f"position must be one of {', '.join(POSITIONS)}, got {self.position!r}")


def match_loss(hidden: torch.Tensor, ref_hidden: torch.Tensor) -> torch.Tensor:
    """Mean L2 distance between hidden states and the original model's at the same positions.

    .. math:: \\frac1T \\sum_t \\lVert h_t - h^{orig}_t \\rVert_2

    Args:
        hidden: (B,T,D) the attacked model's states; ref_hidden: (T,D). Returns (B,).
    """
    return (hidden.float() - ref_hidden.float().to(hidden.device)).norm(dim=-1).mean(-1)


def attacked_question(tokenizer, question: str, adv_ids, position: str) -> str:
    """The question with the adversarial string (decoded token ids) before or after it."""
    adv = tokenizer.decode(list(adv_ids), clean_up_tokenization_spaces=False)
    return f"{adv} {question}" if position == "prefix" else f"{question} {adv}"


def split_prompt(tokenizer, question: str, adv_ids, position: str) -> tuple[list[int], list[int]] | None:
    """(ids before, ids after) the string in the tokenized attacked prompt; None if the string's ids are not there."""
    ids, adv = encode_prompt(tokenizer, attacked_question(tokenizer, question, adv_ids, position)), list(adv_ids)
    hits = [i for i in range(len(ids) - len(adv) + 1) if ids[i:i + len(adv)] == adv]
    if not hits:
        return None
    i = hits[-1] if position == "suffix" else hits[0]
    return ids[:i], ids[i + len(adv):]


def allowed_tokens(tokenizer, vocab_size: int) -> torch.Tensor:
    """(V,) bool: non-special tokens that decode to printable, non-blank ASCII."""
    ok = torch.zeros(vocab_size, dtype=torch.bool)
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode([[i] for i in range(min(vocab_size, len(tokenizer)))],
                                   clean_up_tokenization_spaces=False)
    for i, s in enumerate(texts):
        ok[i] = i not in special and s.isascii() and s.isprintable() and bool(s.strip())
    return ok


def sample_candidates(adv_ids: torch.Tensor, grad: torch.Tensor, allowed: torch.Tensor, *, search_width: int,
                      topk: int, generator: torch.Generator) -> torch.Tensor:
    """(W,n) single-token swaps of adv_ids (n,): a random position, a random token of its top-k by −gradient."""
    top = (-grad.masked_fill(~allowed, math.inf)).topk(min(topk, int(allowed.sum())), dim=-1).indices  # (n, topk)
    pos = torch.randint(0, adv_ids.numel(), (search_width,), generator=generator)
    pick = torch.randint(0, top.shape[1], (search_width,), generator=generator)
    cands = adv_ids.repeat(search_width, 1)
    cands[torch.arange(search_width), pos] = top[pos, pick]
    return cands


@dataclass
class _Target:
    """One attacked item: ids around the string, answer ids, the cached keys/values of `head`."""

    question: str
    head: list[int]
    tail: list[int]
    answer: list[int]  # answer + EOS, as the evaluation scores them
    cache: list | None = None  # [(keys, values)] per layer, batch 1
    ref_hidden: torch.Tensor | None = None  # (a, D) original model's layer-L states


def _run(model, t: _Target, adv_ids: torch.Tensor | None = None, adv_embeds: torch.Tensor | None = None,
         layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Answer NLL_mean (B,) after head + string + tail, and layer-L states at the answer-predicting positions."""
    from transformers import DynamicCache

    B = adv_ids.shape[0] if adv_ids is not None else adv_embeds.shape[0]
    dev = model_device(model)  # the candidates are sampled on the CPU generator; the passes run on the model's device
    rest, a = torch.tensor(t.tail + t.answer, device=dev), len(t.answer)
    cache = None if t.cache is None else DynamicCache(
        [(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in t.cache], config=model.config)
    kw = dict(cache=cache, use_cache=cache is not None, logits_to_keep=a + 1, output_hidden_states=layer is not None)
    if adv_ids is not None:
        out = model(input_ids=torch.cat([adv_ids.to(dev), rest.expand(B, -1)], 1), **kw)
    else:
        rest_embeds = model.get_input_embeddings()(rest).expand(B, -1, -1)
        out = model(inputs_embeds=torch.cat([adv_embeds, rest_embeds], 1), **kw)
    labels = torch.tensor([IGNORE_INDEX] + t.answer, device=dev).expand(B, -1)
    token_logps, _ = gather_token_logps(out.logits, labels)
    hidden = out.hidden_states[layer][:, -(a + 1):-1] if layer is not None else None
    return -token_logps.sum(-1) / a, hidden


def _objective(model, t: _Target, cfg: JailbreakConfig, **adv) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, answer NLL) per candidate, (B,) each."""
    nll, hidden = _run(model, t, layer=cfg.match_layer if t.ref_hidden is not None else None, **adv)
    if hidden is None:
        return nll, nll
    return nll + cfg.match_weight * match_loss(hidden, t.ref_hidden), nll


def _gradient(model, targets: list[_Target], adv_ids: torch.Tensor, cfg: JailbreakConfig) -> torch.Tensor:
    """∂L/∂(one-hot string) (n,V), averaged over the attacked items."""
    weight = model.get_input_embeddings().weight
    one_hot = torch.nn.functional.one_hot(adv_ids.to(weight.device), weight.shape[0]).to(weight.dtype)
    one_hot.requires_grad_(True)
    grad = torch.zeros_like(one_hot)
    for t in targets:
        loss, _ = _objective(model, t, cfg, adv_embeds=(one_hot @ weight).unsqueeze(0))
        grad += torch.autograd.grad(loss.sum() / len(targets), one_hot)[0]
    return grad.to(adv_ids.device)  # beside the candidates and the allowed-token mask


@torch.no_grad()
def _score(model, targets: list[_Target], cands: torch.Tensor, cfg: JailbreakConfig) -> tuple[torch.Tensor, ...]:
    """(loss, answer NLL) of every candidate string (W,n), averaged over the attacked items."""
    loss, nll = torch.zeros(cands.shape[0]), torch.zeros(cands.shape[0])
    for t in targets:
        for s in range(0, cands.shape[0], cfg.batch_size):
            lo, nl = _objective(model, t, cfg, adv_ids=cands[s:s + cfg.batch_size])
            loss[s:s + cfg.batch_size] += lo.float().to(loss.device) / len(targets)
            nll[s:s + cfg.batch_size] += nl.float().to(nll.device) / len(targets)
    return loss, nll


@torch.no_grad()
def _prepare(model, tokenizer, records: list[dict], cfg: JailbreakConfig, allowed: torch.Tensor,
             original=None) -> tuple[list[int], list[_Target]]:
    """The initial string (a repeated filler token that tokenizes stably) and one `_Target` per attacked item."""
    for filler in FILLERS:
        ids = tokenizer(filler, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or not allowed[ids[0]]:
            continue
        adv = ids * cfg.tokens
        splits = [split_prompt(tokenizer, r["question"], adv, cfg.position) for r in records]
        if all(s is not None for s in splits):
            break
    else:
        fillers = ", ".join(map(repr, FILLERS))
        raise ObliviateError(f"no initial string of {cfg.tokens} repeated filler tokens ({fillers}) survives "
                             "re-tokenization inside the prompt")
    caches: dict[tuple, list] = {}  # one per distinct head: with `prefix` every item shares the template head
    targets = []
    for r, (head, tail) in zip(records, splits):
        ex = encode_qa(tokenizer, r["question"], r["answer"], max_length=10**9)
        answer = [i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
        if head and tuple(head) not in caches:
            out = model(input_ids=torch.tensor([head], device=model_device(model)), use_cache=True)
            caches[tuple(head)] = [(k, v) for k, v, *_ in out.cache]
        ref = None
        if original is not None:
            states = original(input_ids=torch.tensor([ex["input_ids"]], device=model_device(original)),
                              output_hidden_states=True).hidden_states
            ref = states[cfg.match_layer][0, -(len(answer) + 1):-1]
        targets.append(_Target(r["question"], head, tail, answer, caches.get(tuple(head)), ref))
    return adv, targets


def search(model, tokenizer, records: list[dict], cfg: JailbreakConfig, *, original=None,
           progress: bool = True) -> dict:
    """GCG over `records` (the attacked items); returns the best string's ids, the loss curve and timings."""
    from obliviate.rundir import progress_bar

    if cfg.match_layer is not None:
        n_layers = model.config.num_hidden_layers
        if original is None:
            raise ObliviateError("match_layer needs the original model (--original-model)")
        if cfg.match_layer > n_layers:
            raise ObliviateError(f"match_layer {cfg.match_layer} > the model's {n_layers} layers")
    elif original is not None:
        raise ObliviateError("an original model was given without match_layer: set --match-layer")
    model.eval()
    if original is not None:
        original.eval()
    allowed = allowed_tokens(tokenizer, model.get_input_embeddings().weight.shape[0])
    adv, targets = _prepare(model, tokenizer, records, cfg, allowed, original)
    valid: dict[tuple, bool] = {}

    def is_valid(ids: list[int]) -> bool:
        if tuple(ids) not in valid:
            valid[tuple(ids)] = all(split_prompt(tokenizer, t.question, ids, cfg.position) == (t.head, t.tail)
                                    for t in targets)
        return valid[tuple(ids)]

    gen = torch.Generator().manual_seed(cfg.seed)
    current = torch.tensor(adv)
    loss, nll = _score(model, targets, current[None], cfg)
    best_ids, best_loss = adv, float(loss[0])
    curve = [{"step": 0, "loss": best_loss, "nll": float(nll[0]), "best_loss": best_loss}]
    t0, stopped, invalid = time.perf_counter(), "steps", 0
    bar = progress_bar(range(1, cfg.steps + 1), desc="jailbreak", progress=progress)
    for step in bar:
        cands = sample_candidates(current, _gradient(model, targets, current, cfg), allowed,
                                  search_width=cfg.search_width, topk=cfg.topk, generator=gen)
        loss, nll = _score(model, targets, cands, cfg)
        order = torch.argsort(loss, stable=True).tolist()
        j = next((j for j in order if is_valid(cands[j].tolist())), None)
        invalid += order.index(j) if j is not None else len(order)
        if j is not None:
            current = cands[j]
            if float(loss[j]) < best_loss:
                best_ids, best_loss = current.tolist(), float(loss[j])
        row = curve[-1] if j is None else {"loss": float(loss[j]), "nll": float(nll[j])}
        curve.append({"step": step, "loss": row["loss"], "nll": row["nll"], "best_loss": best_loss})
        bar.set_postfix(loss=f"{row['loss']:.3f}", best=f"{best_loss:.3f}")
        if cfg.time_limit is not None and time.perf_counter() - t0 > cfg.time_limit:
            stopped = "time_limit"
            break
    seconds = time.perf_counter() - t0
    heads = {tuple(t.head) for t in targets}
    return {"ids": best_ids, "init_ids": adv, "curve": curve, "steps_run": len(curve) - 1, "stopped": stopped,
            "seconds": seconds, "seconds_per_step": seconds / max(1, len(curve) - 1),
            "rejected_by_retokenization": invalid,
            "kv_cache": f"{len(heads)} cached head(s) of {sorted(len(h) for h in heads)} tokens reused for every "
                        f"candidate ({cfg.position}: the ids before the string never change)"}


def jailbreak(model, tokenizer, data: str | Path, cfg: JailbreakConfig, *, original=None,
              start_results: dict | None = None, out: str | Path | None = None, progress: bool = True) -> dict:
    """Search the string on k forget items, then evaluate the forget split with and without it.

    start_results: the model's own eval results (same forget split), reused as the "without" evaluation.
    Writes `<out>/jailbreak.json` and `<out>/attacked_<split>.json` (the forget split with the string applied).
    """
    ecfg = EvalConfig(forget=cfg.forget, retain=None, world_facts=None, real_authors=None, embedder=None,
                      max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    found, _ = resolve_splits(data, ecfg)
    split, records = found["forget"]
    attacked = relearn_sample(len(records), cfg.k, cfg.seed)
    torch.manual_seed(cfg.seed)
    found_search = search(model, tokenizer, [records[i] for i in attacked], cfg, original=original, progress=progress)
    ids = found_search["ids"]
    if start_results is not None and start_results["splits"]["forget"]["source"] == split:
        clean = start_results["splits"]["forget"]["items"]
    else:
        clean = evaluate(model, tokenizer, data, ecfg, progress=False)["splits"]["forget"]["items"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"attacked_{split}.json"
        write_text(path, json.dumps([{**r, "question": attacked_question(tokenizer, r["question"], ids, cfg.position)}
                                    for r in records], indent=1) + "\n")
        with_string = evaluate(model, tokenizer, path, ecfg, progress=False)["splits"]["forget"]["items"]
    seen = set(attacked)
    metrics, not_computed = {}, {}
    for group in ("seen", "unseen"):
        idx = [i for i in range(len(records)) if (i in seen) == (group == "seen")]
        if not idx:
            not_computed[group] = f"every forget item was attacked (k={cfg.k} of {len(records)})"
            continue
        metrics[group] = {name: {m: split_means("forget", [its[i] for i in idx]).get(m) for m in REPORT_METRICS}
                          for name, its in (("without", clean), ("with", with_string))}
        metrics[group]["n"] = len(idx)
    items = [{"index": i, "seen": i in seen, "question": with_string[i]["question"],
              **{f"{m}_{name}": its[i].get(m) for name, its in (("without", clean), ("with", with_string))
                 for m in REPORT_METRICS + ("generation",)}} for i in range(len(records))]
    result = {"config": dataclasses.asdict(cfg), "split": split, "n_forget": len(records), "attacked_items": attacked,
              "enhanced": original is not None,
              "string": {"text": tokenizer.decode(ids, clean_up_tokenization_spaces=False), "token_ids": ids,
                         "tokens": tokenizer.convert_ids_to_tokens(ids),
                         "example": attacked_question(tokenizer, records[attacked[0]]["question"], ids, cfg.position)},
              "search": found_search, "metrics": metrics, "not_computed": not_computed, "items": items,
              "versions": versions()}
    if out is not None:
        write_json(Path(out) / "jailbreak.json", result, indent=1)
    return result
