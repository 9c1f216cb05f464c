"""One forward pass per (question, answer) sequence feeds every likelihood-based metric.

    rows = forward_scores(model, tok, [("Who wrote X?", "Ann Lee."), ...], batch_size=16)
    rows[0] == {"nll_sum", "nll_mean", "n_tokens", "min_k", "min_k_pp", "extraction_strength",
                "exact_memorization"}

From the answer-token logits (`lm_head` never sees the question) we take the log-probs
log p(y_t) = logit[y_t] − logsumexp(logit) (`models.logps.selective_logps`), the argmax (Extraction Strength,
Exact Memorization) and the mean/std of log p under the model's own next-token distribution (Min-K%++),
computed in chunks of positions so no B×T×V log-softmax is ever kept. `score_row` turns one answer's
(log-probs, logits, targets) into the row; both paths below feed it.

Prompt sharing (`share_prompts=True`, the default): the answer, the paraphrase and the perturbed answers of
an item share one question, and `encode_qa` tokenizes prompt and answer separately, so they share the exact
prompt ids x. Each distinct x is run once (left-padded, KV cache kept, only the last position's logits,
which predict y_1); its answers y^(j) then run from that cache, each prompt's keys/values repeated once per
answer, with positions continuing at |x|. The answer pass feeds y_1..y_{n-1} and its logits predict
y_2..y_n, so per answer the logits are [last prompt row; answer rows] — the same conditionals
p(y_t | x, y_<t) as the full pass, without recomputing x for every answer (with a chat template x is
most of each sequence). Batches are whole prompts with their answers (at most `batch_size` answers; a prompt
with more is split), sorted by length; rows come back in input order. A model whose cache is not a plain
`DynamicCache` (sliding-window, recurrent, no cache) and prompts of zero tokens use the full pass: one
right-padded (prompt + answer) sequence per pair, `models.logps.sequence_logps`. `score_examples` is this path
for examples already encoded ({input_ids, labels}), as the reformat attack's option texts (`attack.reformat`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from obliviate.data.format import IGNORE_INDEX, encode_prompt, encode_qa, encode_qas, pad_batch, pad_token_id
from obliviate.evaluate.distributed import map_batches, split_map
from obliviate.evaluate.metrics import exact_memorization, extraction_strength, min_k_pp_score, min_k_score
from obliviate.models.device import model_device, to_device
from obliviate.models.logps import can_pack, packed_forward, selective_logps, sequence_logps
from obliviate.parity import convention


def logp_moments(logits: torch.Tensor, *, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of log p(v) under p = softmax(logits), per row: logits (N,V) → μ (N,), σ (N,).

    .. math:: \\mu = \\sum_v p_v \\log p_v, \\qquad \\sigma^2 = \\sum_v p_v (\\log p_v)^2 - \\mu^2

    Processed `chunk` rows at a time, so only a chunk×V log-softmax exists at once.
    """
    mus, sigmas = [], []
    for start in range(0, logits.shape[0], chunk):
        logp = torch.log_softmax(logits[start:start + chunk].float(), dim=-1)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        var = (p * logp.square()).sum(-1) - mu.square()
        mus.append(mu)
        sigmas.append(var.clamp(min=0).sqrt())
    if not mus:
        return torch.zeros(0), torch.zeros(0)
    return torch.cat(mus), torch.cat(sigmas)


NONE_ROW = {"nll_sum": None, "nll_mean": None, "n_tokens": 0, "min_k": None, "min_k_pp": None,
            "extraction_strength": None, "exact_memorization": None}


def score_row(logps: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, *, k: float = 0.4,
              chunk: int = 256, parity: str = "paper") -> dict:
    """The scores of one answer from its token log-probs (n,), logits (n,V) and target ids (n,).

    Under `parity=open-unlearning` (convention `scored_positions`) Min-K%, Min-K%++, ES and EM leave out the last
    answer token, as its `tokenwise_logprobs` (src/evals/metrics/utils.py:129-131,173-175 at d3d7cf9); NLL
    and Prob keep it (utils.py:88-95)."""
    n = int(targets.numel())
    if n == 0:  # answer truncated away: nothing to score, so no score (not NLL 0 = "probability 1")
        return dict(NONE_ROW)
    nll_sum = -float(logps.sum())
    row = {"nll_sum": nll_sum, "nll_mean": nll_sum / n, "n_tokens": n}
    if convention("scored_positions", parity) == "drop-last":
        logps, logits, targets = logps[:-1], logits[:-1], targets[:-1]
    if targets.numel() == 0:
        return {**NONE_ROW, **row, "extraction_strength": 0.0}  # OU: ES 0, the rest None (memorization.py:242-251)
    preds = logits.argmax(-1)
    mu, sigma = logp_moments(logits, chunk=chunk)
    return {**row, "min_k": min_k_score(logps, k=k), "min_k_pp": min_k_pp_score(logps, mu, sigma, k=k),
            "extraction_strength": extraction_strength(preds, targets,
                                                       form=convention("extraction_strength", parity)),
            "exact_memorization": exact_memorization(preds, targets)}


def template_tail(tokenizer, parity: str) -> bool:
    """Convention `answer_tokens` is open-unlearning's ``template-tail`` and the tokenizer has a chat template."""
    return convention("answer_tokens", parity) == "template-tail" and bool(getattr(tokenizer, "chat_template", None))


def encode_scored(tokenizer, question: str, answer: str, *, max_length: int = 512,
                  parity: str = "paper") -> dict[str, list[int]]:
    """The scored (question, answer) sequence under convention `answer_tokens`: `encode_qa` (answer + EOS), or,
    with ``template-tail`` and a chat template, open-unlearning's: the whole two-turn chat through the template,
    EOS appended unless it is already last, labels on everything after the prompt — the template's end-of-turn
    tokens included (src/data/utils.py:61-70,113-124 at d3d7cf9). Its tokens are cut at `max_length`."""
    if not template_tail(tokenizer, parity):
        return encode_qa(tokenizer, question, answer, max_length=max_length)
    prompt = encode_prompt(tokenizer, question)
    chat = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    ids = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None and ids[-1] != tokenizer.eos_token_id:
        ids = ids + [tokenizer.eos_token_id]
    ids = ids[:max(max_length, len(prompt) + 1)]
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * len(prompt) + ids[len(prompt):]}


@torch.inference_mode()
def score_batch(model, batch: dict[str, torch.Tensor], *, k: float = 0.4, chunk: int = 256,
                parity: str = "paper") -> list[dict]:
    """Scores of each sequence in a right-padded batch (input_ids, attention_mask, labels: (B,T))."""
    batch = to_device(batch, model)
    out = sequence_logps(model, batch, answer_logits=True, pack=False)  # the padded pass, as open-unlearning's
    labels = batch["labels"][:, 1:]
    ends = out.mask.sum(-1).long().cumsum(0).tolist()  # answer_logits rows of sequence i: ends[i-1]:ends[i]
    rows = []
    for i in range(labels.shape[0]):
        m = out.mask[i].bool()
        logits = out.answer_logits[(ends[i - 1] if i else 0):ends[i]]  # (n,V)
        rows.append(score_row(out.token_logps[i][m], logits, labels[i][m], k=k, chunk=chunk, parity=parity))
    return rows


def _cache_kwarg(model) -> str | None:
    """The forward keyword that takes a KV cache (`cache` in transformers ≥ 5.x, `past_key_values` before)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def _plain_dynamic_cache(cache) -> bool:
    """A cache whose per-layer keys/values hold every prompt position, so rows can be repeated and extended."""
    from transformers import DynamicCache

    if not isinstance(cache, DynamicCache) or not hasattr(cache, "batch_select_indices"):
        return False
    return all(type(layer).__name__ == "DynamicLayer" for layer in getattr(cache, "layers", []))


def _common_prefix(prompts: list[list[int]]) -> int:
    """Length of the token prefix every prompt shares, leaving each prompt at least one token of its own."""
    n = min(len(p) for p in prompts) - 1
    first = prompts[0]
    for p in prompts[1:]:
        n = next((t for t in range(n) if p[t] != first[t]), n)
    return max(n, 0)


def _run_prompts(model, prompts: list[list[int]], pad_id: int, dev, cache_kwarg: str):
    """Run the prompts with their KV cache kept: (last-position logits (P,V), cache, prompt mask), or None when
    the cache is not a plain one. A prefix all prompts share (a chat template's system turn) runs once and its
    keys/values are repeated per prompt; each remainder is left-padded after it (positions continue at the
    prefix), so the cache is [prefix | padding | remainder] with the padding masked out."""
    c = _common_prefix(prompts) if len(prompts) > 1 else 0
    cache, head = None, torch.ones(len(prompts), c, dtype=torch.long, device=dev)
    if c > 1:
        out = model(input_ids=torch.tensor([prompts[0][:c]], device=dev), use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if not _plain_dynamic_cache(cache):
            return None
        cache.batch_select_indices(torch.zeros(len(prompts), dtype=torch.long, device=dev))
    else:
        c, head = 0, head[:, :0]
    rest = [p[c:] for p in prompts]
    width = max(len(p) for p in rest)
    pids = torch.tensor([[pad_id] * (width - len(p)) + p for p in rest], device=dev)
    rmask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rest], device=dev)
    pmask = torch.cat([head, rmask], -1)
    ppos = (c + rmask.cumsum(-1) - 1).clamp(min=0)
    extra = {cache_kwarg: cache} if cache is not None else {}
    out = model(input_ids=pids, attention_mask=pmask, position_ids=ppos, use_cache=True, logits_to_keep=1, **extra)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if not _plain_dynamic_cache(cache):
        return None
    return out.logits[:, -1], cache, pmask


@torch.inference_mode()
def score_shared_prompts(model, prompts: list[list[int]], answers: list[list[list[int]]], pad_id: int, *,
                         k: float = 0.4, chunk: int = 256, cache_kwarg: str = "cache",
                         parity: str = "paper") -> list[list[dict]] | None:
    """Rows for every answer of each prompt (prompt ids ≥ 1 token; answer ids incl. EOS), the prompt run once.

    Returns None when the model's cache cannot be shared (the caller then uses the full pass).
    """
    dev = model_device(model)
    run = _run_prompts(model, prompts, pad_id, dev, cache_kwarg)
    if run is None:
        return None
    first, cache, pmask = run  # first (P,V): predicts each prompt's first answer token
    owner = [p for p, group in enumerate(answers) for _ in group]
    flat = [a for group in answers for a in group]
    feed = [a[:-1] for a in flat]  # y_1..y_{n-1}: their logits predict y_2..y_n
    awidth = max((len(f) for f in feed), default=0)
    rest = first.new_zeros(0, first.shape[-1])
    ends = [0] * len(flat)
    if awidth:
        rep = torch.tensor(owner, device=first.device)
        cache.batch_select_indices(rep)  # each prompt's keys/values once per answer
        aids = torch.tensor([f + [pad_id] * (awidth - len(f)) for f in feed], device=dev)
        amask = torch.tensor([[1] * len(f) + [0] * (awidth - len(f)) for f in feed], device=dev)
        plen = pmask.sum(-1)[rep]
        apos = plen[:, None] + torch.arange(awidth, device=first.device)
        keep = amask.bool()
        rest = model(input_ids=aids, attention_mask=torch.cat([pmask[rep], amask], -1), position_ids=apos,
                     use_cache=True, logits_to_keep=keep, **{cache_kwarg: cache}).logits
        if rest.dim() == 3:  # a model without boolean `logits_to_keep`: it returned every position
            rest = rest[keep]
        ends = amask.sum(-1).cumsum(0).tolist()
    rows: list[list[dict]] = [[] for _ in prompts]
    for j, (p, a) in enumerate(zip(owner, flat)):
        if not a:
            rows[p].append(dict(NONE_ROW))
            continue
        logits = torch.cat([first[p:p + 1], rest[(ends[j - 1] if j else 0):ends[j]]])  # (n,V)
        targets = torch.tensor(a, device=logits.device)
        rows[p].append(score_row(selective_logps(logits, targets), logits, targets, k=k, chunk=chunk, parity=parity))
    return rows


@torch.inference_mode()
def score_packed_prompts(model, prompts: list[list[int]], answers: list[list[list[int]]], pad_id: int, *,
                         mask_pad_ids: bool = False, k: float = 0.4, chunk: int = 256,
                         parity: str = "paper") -> list[list[dict]]:
    """`score_shared_prompts`' rows from one forward over one packed row: each prompt once, each of its answers
    after it (y_1..y_{n-1}), a 4-D mask letting an answer attend to its own prompt and, causally, to itself, at
    the positions of the full right-padded pass (0.. per sequence). `mask_pad_ids`: no token attends to a pad-id
    token, as open-unlearning's padded pass with `attention_mask = ids != pad id` (convention `attention_mask`)."""
    dev = model_device(model)
    ids, seg, pos, parent, keep = [], [], [], [], []
    top = 0  # the prompt's segment; its answers' are the next len(group)
    for prompt, group in zip(prompts, answers):
        ids += prompt
        seg += [top] * len(prompt)
        pos += range(len(prompt))
        parent += [top] * len(prompt)
        keep += [False] * (len(prompt) - 1) + [True]  # the prompt's last position predicts every y_1
        for j, a in enumerate(group):
            feed = a[:-1]
            ids += feed
            seg += [top + 1 + j] * len(feed)
            pos += range(len(prompt), len(prompt) + len(feed))
            parent += [top] * len(feed)
            keep += [True] * len(feed)
        top += 1 + len(group)
    ids_t = torch.tensor(ids, device=dev)
    logits = packed_forward(model, ids_t, *(torch.tensor(v, device=dev) for v in (seg, parent, pos, keep)),
                            hide=ids_t.eq(pad_id) if mask_pad_ids else None)
    rows: list[list[dict]] = []
    at = 0
    for group in answers:
        first, at = logits[at:at + 1], at + 1
        rows.append([])
        for a in group:
            if not a:
                rows[-1].append(dict(NONE_ROW))
                continue
            both, at = torch.cat([first, logits[at:at + len(a) - 1]]), at + len(a) - 1
            targets = torch.tensor(a, device=dev)
            rows[-1].append(score_row(selective_logps(both, targets), both, targets, k=k, chunk=chunk, parity=parity))
    return rows


def forward_scores(model, tokenizer, pairs: Sequence[tuple[str, str]], *, batch_size: int = 16, k: float = 0.4,
                   max_length: int = 512, progress: bool = False, desc: str = "forward",
                   share_prompts: bool = True, parity: str = "paper") -> list[dict]:
    """Score rows of (question, answer) pairs, in input order; `share_prompts=False` forces the full pass;
    `parity` picks the conventions (`obliviate.parity`: `answer_tokens`, `scored_positions`, `extraction_strength`).
    Under `accelerate launch` whole batches are split across the processes (`distributed`): bit-identical rows."""
    if template_tail(tokenizer, parity):
        examples = [encode_scored(tokenizer, q, a, max_length=max_length, parity=parity) for q, a in pairs]
    else:  # our convention: the question left-truncated to fit, the answer kept; one warning counts the cut rows
        examples = encode_qas(tokenizer, pairs, max_length=max_length, what=f"{desc} rows")
    return score_examples(model, examples, pad_token_id(tokenizer), batch_size=batch_size, k=k, progress=progress,
                          desc=desc, share_prompts=share_prompts, parity=parity)


def score_examples(model, examples: Sequence[dict], pad_id: int, *, batch_size: int = 16, k: float = 0.4,
                   progress: bool = False, desc: str = "forward", share_prompts: bool = True,
                   parity: str = "paper") -> list[dict]:
    """Score rows of already-encoded examples ({input_ids, labels}: -100 on the prompt), in input order: examples
    with the same prompt ids share one prompt pass (`_shared_pass`), the rest (and all of them when the cache
    cannot be shared, or `share_prompts=False`) go through the full pass, sorted by length."""
    from obliviate.rundir import progress_bar

    mask_pad_ids = convention("attention_mask", parity) == "not-pad-id"
    rows: list[dict | None] = [None] * len(examples)
    full = list(range(len(examples)))
    kwarg = _cache_kwarg(model) if share_prompts else None
    bar = progress_bar(total=len(examples), desc=desc, progress=progress)
    score = None
    if share_prompts and mask_pad_ids and can_pack(model):  # the cache pass counts positions from the mask: packed
        score = lambda pr, ans: score_packed_prompts(model, pr, ans, pad_id, mask_pad_ids=True, k=k,  # noqa: E731
                                                     parity=parity)
    elif kwarg is not None and not mask_pad_ids:
        score = lambda pr, ans: score_shared_prompts(model, pr, ans, pad_id, k=k, cache_kwarg=kwarg,  # noqa: E731
                                                     parity=parity)
    if score is not None:
        full = _shared_pass(examples, rows, score, batch_size=batch_size, bar=bar)
    order = sorted(full, key=lambda i: len(examples[i]["input_ids"]))

    def run(idx: list[int]) -> list[dict]:
        batch = pad_batch([examples[i] for i in idx], pad_id, side="right")
        if mask_pad_ids:  # open-unlearning: attention_mask = input_ids != pad id (src/data/collators.py:48-49)
            batch["attention_mask"] = batch["input_ids"].ne(pad_id).long()
        scored = score_batch(model, batch, k=k, parity=parity)
        bar.update(len(idx))
        return scored

    for i, row in enumerate(map_batches(run, order, batch_size, len(examples))):  # halves a batch on OOM
        if row is not None:
            rows[i] = row
    bar.close()
    return rows  # type: ignore[return-value]


def _shared_pass(examples: Sequence[dict], rows: list, score, *, batch_size: int, bar) -> list[int]:
    """Fill `rows` by prompt sharing (`score(prompts, answers)`: `score_shared_prompts` or `score_packed_prompts`);
    return the indices left for the full pass (all, if the cache can't be shared)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    full = []
    for i, ex in enumerate(examples):
        n_prompt = next((t for t, y in enumerate(ex["labels"]) if y != IGNORE_INDEX), len(ex["labels"]))
        if n_prompt == 0:  # nothing before the first answer token: it has no prediction to share
            full.append(i)
        else:
            groups.setdefault(tuple(ex["input_ids"][:n_prompt]), []).append(i)
    pieces = [(prompt, idx[s:s + batch_size]) for prompt, idx in groups.items()
              for s in range(0, len(idx), batch_size)]
    pieces.sort(key=lambda pc: (len(pc[0]), max(len(examples[i]["input_ids"]) for i in pc[1])))
    batches, cur, n = [], [], 0
    for pc in pieces:
        if cur and n + len(pc[1]) > batch_size:
            batches.append(cur)
            cur, n = [], 0
        cur.append(pc)
        n += len(pc[1])
    if cur:
        batches.append(cur)

    unshareable: list[bool] = []

    def run(b: list) -> list[list[dict]] | None:
        if unshareable:  # an earlier batch showed the cache cannot be shared: skip the rest
            return None
        answers = [[examples[i]["input_ids"][len(prompt):] for i in idx] for prompt, idx in b]
        scored = score([list(prompt) for prompt, _ in b], answers)
        if scored is None:
            unshareable.append(True)
            return None
        bar.update(sum(len(idx) for _, idx in b))
        return scored

    # whole batches split across processes; None = not a shareable cache (the same model on every process)
    scored = split_map(lambda part: [run(b) for b in part], batches)
    if any(s is None for s in scored):  # everything goes through the full pass
        return list(range(len(examples)))
    for b, group_rows in zip(batches, scored):
        for (_, idx), rows_of_prompt in zip(b, group_rows):
            for i, row in zip(idx, rows_of_prompt):
                rows[i] = row
    return full
