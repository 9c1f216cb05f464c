"""The forward passes of one micro-batch, run lazily and at most once each, shared by the recipe's parts.

    v = Views(model, batch, ref=ref)
    v.logps("forget")                  # SequenceLogps of the policy on the forget view (one forward)
    v.logps("retain", logits=True)     # + shifted logits (ME, KL)
    v.prefetch(("forget", "retain"))   # both views' log-probs from one forward (their rows stacked)
    v.ref_logps("retain")              # the frozen reference, under no_grad (KL)
    v.hidden("forget", layer)          # hidden state after decoder layer `layer`, forward stopped there (RMU)
    v.batch_size, v.count("forget", answer_mask)   # the effective batch's items / answer tokens (denominators)

With gradient accumulation `batch` is one micro-batch of `step`, the effective batch: every loss averages over
the effective batch (`batch_size`, `count`), so the micro-batches' losses and gradients add up to the
effective batch's exactly, never to a mean of micro-batch means.

`Part(loss, inputs, needs)` is one registry entry: a pure loss function on tensors, the
one-line adapter that pulls its tensors from the views, and the data it needs (so the
collator only tokenizes the views a recipe uses).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from obliviate.data.format import IGNORE_INDEX
from obliviate.models.logps import SequenceLogps, sequence_logps


@dataclass(frozen=True)
class Part:
    """A registry entry. `needs` tags: 'retain', 'alternate', 'retain_alternate' (views to tokenize),
    'ref_logps' (cache per-sequence reference log-probs of the forget/alternate views before training),
    'ref_model' (a live frozen reference each step), 'params' (the part chooses the trainable parameters)."""

    loss: Callable[..., torch.Tensor]
    inputs: Callable  # (views, cfg) -> kwargs of `loss`
    needs: frozenset = field(default_factory=frozenset)
    params: Callable | None = None  # (model, cfg) -> the parameters to train (RMU); None = all
    whole_batch: Callable | None = None  # (cfg) -> the setting that makes the loss not a sum over micro-batches
    # (then one micro-batch per step), or None
    counts_padding: Callable | None = None  # (cfg) -> True when a mean counts padding positions (micro-batches
    # then keep the effective batch's padded width)
    logps_of: tuple[str, ...] = ()  # the views whose policy log-probs (`Views.logps` without logits) are all it
    # reads from a forward; () when it reads more (logits, hidden states, a live reference)

    def __call__(self, views: Views, cfg) -> torch.Tensor:
        return self.loss(**self.inputs(views, cfg))

    @property
    def doc(self) -> str:
        return (self.loss.__doc__ or "").strip().splitlines()[0]


def shared_views(*parts: Part | None) -> tuple[str, ...] | None:
    """The views a step's forward can serve at once: every part's `logps_of` (in order, once each) when each part
    declares them and there are two or more; else None (one forward per view, as the parts ask)."""
    names: list[str] = []
    for part in parts:
        if part is None:
            continue
        if not part.logps_of:
            return None
        names += [n for n in part.logps_of if n not in names]
    return tuple(names) if len(names) > 1 else None


@dataclass
class Ref:
    """The frozen reference for live forwards: a model plus the context that makes it the reference
    (with LoRA: the policy itself with its adapter disabled, so no second copy is kept)."""

    model: torch.nn.Module
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


class _Stop(Exception):
    pass


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of transformer blocks of a causal LM (through DDP and peft wrappers)."""
    m = getattr(model, "module", model)  # DDP
    m = m.get_base_model() if hasattr(m, "get_base_model") else m  # peft
    dec = m.get_decoder() if hasattr(m, "get_decoder") else m
    if not hasattr(dec, "layers"):
        raise TypeError(f"cannot find the decoder layers of {type(model).__name__}")
    return dec.layers


def hidden_at(model, forward: Callable, batch: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    """Output of decoder layer `layer` (B,T,H); a hook raises to stop the forward there (later layers never run)."""
    store = {}

    def hook(_module, _inputs, output):
        store["h"] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return store["h"]


def answer_mask(view: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,T-1) 1.0 where position t predicts an answer token (labels[t+1] != -100): `SequenceLogps.mask`."""
    return (view["labels"][:, 1:] != IGNORE_INDEX).float()


class Views:
    """Forward results of one micro-batch at one parameter point. `forward` overrides the policy call
    (smoothers evaluate at perturbed weights through `torch.func.functional_call`); `step` is the effective
    batch the micro-batch belongs to (default: the micro-batch itself)."""

    def __init__(self, model, batch, *, ref: Ref | None = None, forward: Callable | None = None, step=None):
        self.model, self.batch, self.ref = model, batch, ref
        self.forward = model if forward is None else forward
        self.step = batch if step is None else step
        self._cache: dict = {}

    @property
    def batch_size(self) -> int:
        """B: the effective batch's items (per-sequence means divide by it)."""
        return len(self.step)

    def count(self, name: str, mask: Callable[[dict], torch.Tensor]) -> float:
        """N: Σ of `mask(view)` over the effective batch's `name` view (token means divide by it)."""
        return float(mask(getattr(self.step, name)).sum())

    def view(self, name: str) -> dict[str, torch.Tensor]:
        v = getattr(self.batch, name)
        if v is None:
            raise RuntimeError(f"the batch has no '{name}' view; the recipe's parts must declare it in `needs`")
        return v

    def logps(self, name: str, *, logits: bool = False) -> SequenceLogps:
        key = ("logps", name)
        hit = self._cache.get(key)
        if hit is None or (logits and hit.logits is None):
            hit = self._cache[key] = sequence_logps(self.forward, self.view(name), return_logits=logits)
        return hit

    def prefetch(self, names: tuple[str, ...]) -> None:
        """The policy log-probs of the views `names` from one forward: their rows stacked, right-padded to one width
        (a packed row where `sequence_logps` packs), then split back to each view's rows and width, so
        `logps(name)` returns what its own forward would (up to float rounding)."""
        todo = [n for n in names if ("logps", n) not in self._cache]
        if len(todo) < 2:
            return
        views = [self.view(n) for n in todo]
        width = max(v["input_ids"].shape[1] for v in views)
        fill = {"input_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX}
        stacked = {k: torch.cat([torch.nn.functional.pad(v[k], (0, width - v[k].shape[1]), value=fill[k])
                                 for v in views]) for k in fill}
        out = sequence_logps(self.forward, stacked)
        start = 0
        for name, v in zip(todo, views):
            rows, t = slice(start, start + v["input_ids"].shape[0]), v["input_ids"].shape[1] - 1
            self._cache[("logps", name)] = SequenceLogps(out.token_logps[rows, :t], out.mask[rows, :t])
            start = rows.stop

    def ref_logps(self, name: str, *, logits: bool = True) -> SequenceLogps:
        key = ("ref_logps", name)
        if key not in self._cache:
            with torch.no_grad(), self.ref.context():
                self._cache[key] = sequence_logps(self.ref.model, self.view(name), return_logits=logits)
        return self._cache[key]

    def cached_ref_logps(self, name: str) -> torch.Tensor:
        """(B,) log π_ref(y|x) summed over answer tokens, computed once before training."""
        return self.batch.ref_logps[name]

    def hidden(self, name: str, layer: int) -> torch.Tensor:
        key = ("hidden", name, layer)
        if key not in self._cache:
            self._cache[key] = hidden_at(self.model, self.forward, self.view(name), layer)
        return self._cache[key]

    def ref_hidden(self, name: str, layer: int) -> torch.Tensor:
        key = ("ref_hidden", name, layer)
        if key not in self._cache:
            with torch.no_grad(), self.ref.context():
                self._cache[key] = hidden_at(self.ref.model, self.ref.model, self.view(name), layer)
        return self._cache[key]
