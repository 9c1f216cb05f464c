"""One unlearning run's setup, before its first step (the "setup" of torchtune's setup → train → cleanup): what
the recipe needs and its inputs, the Accelerator, the model prepared (activation checkpointing, LoRA or the
trainable parameters, the reference), and `_Run`: the plan, optimiser, schedule, smoother state and micro-batch
that the steps of `unlearn.loop` share.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from obliviate import ObliviateError
from obliviate.data.format import records_hash, tokenizer_hash
from obliviate.models.device import autocast_kwargs, check_launch
from obliviate.models.finetune import adamw
from obliviate.models.loading import model_fingerprint
from obliviate.models.tracking import tracker_kwargs
from obliviate.unlearn.batch import BatchIndices, UnlearnBatch, UnlearnData, plan, steps_per_epoch
from obliviate.unlearn.config import UnlearnConfig
from obliviate.unlearn.fit import micro_batch_of
from obliviate.unlearn.forward import Part, Ref, Views, shared_views
from obliviate.unlearn.objectives import OBJECTIVES
from obliviate.unlearn.regularizers import REGULARIZERS
from obliviate.unlearn.smoothing import NO_SMOOTHING, SMOOTHERS, Smoother, Step, plain


def recipe_needs(cfg: UnlearnConfig) -> set[str]:
    """What the recipe's parts need: views to tokenize, cached / live reference, own parameters."""
    parts = [OBJECTIVES[cfg.objective]] + ([REGULARIZERS[cfg.regularizer]] if cfg.regularizer else [])
    return set().union(*(p.needs for p in parts))


def _check_mixed_precision(cfg: UnlearnConfig) -> None:
    """`mixed_precision=bf16` and `accelerate launch --mixed_precision X` must not disagree (one setting, used;
    the launcher's "no" is its default, not a choice against bf16)."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if cfg.mixed_precision is not None and launched != "no" and launched != cfg.mixed_precision:
        raise ObliviateError(f"mixed_precision={cfg.mixed_precision} conflicts with accelerate launch's "
                             f"--mixed_precision {launched}; give one of them")


def _accelerator(cfg: UnlearnConfig, out: Path | None):
    """The run's `accelerate.Accelerator` (CPU when there is no GPU; a tracker only when `log_with` is set), its
    launch checked. The schedule steps once per optimiser step, not once per process."""
    from accelerate import Accelerator

    _check_mixed_precision(cfg)
    acc = Accelerator(cpu=not torch.cuda.is_available(), step_scheduler_with_optimizer=False,
                      **tracker_kwargs(cfg.log_with, cfg.tracker_dir, out))
    check_launch(acc)
    return acc


def _autocast(amp: dict, fn, *args):
    """fn(*args) — a training forward — under autocast when `mixed_precision=bf16` (its backward runs outside
    it, as torch recommends). The reference cache and the probes are not training passes: they stay fp32, so
    the before/after forget probes compare like with like."""
    with torch.autocast(**amp):
        return fn(*args)


def _layer_checkpointing(model, *, on: bool) -> None:
    """transformers' activation checkpointing of every decoder layer (non-reentrant) on or off; the 5.x name
    where it exists (the 4.x `gradient_checkpointing_*` name is deprecated there)."""
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


def _prepare_model(model, cfg: UnlearnConfig, objective, needs: set[str], ref_model):
    """LoRA wrap or choose the trainable parameters; build the live reference for kl / rmu."""
    if cfg.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ObliviateError(f"gradient_checkpointing=true: {type(model).__name__} does not support it")
        _layer_checkpointing(model, on=True)
    if cfg.lora:
        from obliviate.models.lora import add_lora

        model = add_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    elif objective.params is not None:
        keep = {id(p) for p in objective.params(model, cfg)}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    ref = None
    if "ref_model" in needs:
        if ref_model is not None:
            ref = Ref(ref_model.eval())
        elif cfg.lora:  # the base model is the adapter-disabled policy: no second copy
            ref = Ref(model, model.disable_adapter)
        else:
            frozen = copy.deepcopy(model).eval()
            frozen.requires_grad_(False)
            ref = Ref(frozen)
    return model, ref


def sparse_tied_embedding(model, on: bool) -> bool:
    """With tied input and output embeddings (SmolLM2, Llama-3.2), the input embedding's gradient as a sparse tensor
    of the rows a batch used, instead of a dense V×H zero-filled one: autograd adds it to `lm_head`'s dense gradient
    before `.grad`, so `.grad` stays dense while one V×H temporary (113 MB on SmolLM2) is neither allocated nor
    filled. Switched `on` for a run and off at its end; returns whether the model has such an embedding."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = isinstance(emb, torch.nn.Embedding) and head is not None and emb.weight is head.weight
    if tied:
        emb.sparse = on and emb.weight.requires_grad
    return tied


@dataclass
class _Run:
    """What the steps of one run share: the recipe's parts, the prepared model and optimiser, the plan."""

    cfg: UnlearnConfig
    model: Any
    ref: Ref | None
    data: UnlearnData
    acc: Any
    objective: Part
    regularizer: Part | None
    smoother: Smoother
    batches: list[BatchIndices]  # one effective batch per optimiser step
    per_epoch: int
    total: int
    amp: dict = field(default_factory=lambda: dict(device_type="cpu", enabled=False))  # torch.autocast kwargs
    opt: Any = None
    sched: Any = None
    params: list = field(default_factory=list)
    tracker: Any = None
    micro_batch: int = 0  # items per forward and backward, per process
    lam: float = 1.0  # λ; moved by dual ascent when retain_constraint is set
    compiled: Any = None  # torch.compile(model) for the training forwards (`compile=true`), else None (eager)
    out: Path | None = None

    @property
    def keep_width(self) -> bool:
        """Whether a part's mean counts padding positions (micro-batches keep the effective batch's width)."""
        return any(p is not None and p.counts_padding is not None and p.counts_padding(self.cfg)
                   for p in (self.objective, self.regularizer))

    def weigh(self, forget, retain):
        return self.cfg.alpha * forget + self.lam * retain  # SPEC §1: L = α·L_f + λ·L_r

    def loss_weights(self, row: dict) -> dict:
        """α and the λ step `row` used (its row's under dual ascent, else the fixed one), for a tracker."""
        return {"alpha": self.cfg.alpha, **({"lam": row.get("lam", self.lam)} if self.regularizer else {})}

    def step_closure(self, batch: UnlearnBatch, micro: list[UnlearnBatch], seed: int) -> Step:
        """The smoother's view of one effective batch `batch`, processed as the micro-batches `micro`."""
        world = self.acc.num_processes  # DDP averages the processes' gradients: each adds its shard's share
        cfg, amp, model, ref = self.cfg, self.amp, self.model, self.ref

        def views(k, forward=None):
            return Views(model, micro[k], ref=ref, forward=self.compiled if forward is None else forward, step=batch)

        names = shared_views(self.objective, self.regularizer)

        def both(v: Views):  # the views' log-probs from one forward, then each part's loss from them
            v.prefetch(names)
            return self.objective(v, cfg), self.regularizer(v, cfg) if self.regularizer else None
        return Step(forget=lambda k, forward=None: _autocast(amp, self.objective, views(k, forward), cfg),
                    retain=(lambda k: _autocast(amp, self.regularizer, views(k), cfg)) if self.regularizer else None,
                    weigh=self.weigh, params=self.params, model=model, cfg=cfg, micro_batches=len(micro),
                    backward=(lambda loss: self.acc.backward(loss * world)), seed=seed,
                    shared=(lambda k: _autocast(amp, both, views(k))) if names else None)


def _check_inputs(cfg: UnlearnConfig, needs: set[str], retain_records, refusals, ref_model) -> list[str] | None:
    """The recipe's inputs are there (retain records, a reference model); the refusals it needs, loaded."""
    if needs & {"retain", "retain_alternate"} and not retain_records:
        raise ObliviateError(f"recipe {cfg.recipe} needs retain records (a retain split)")
    if needs & {"alternate", "retain_alternate"} and not refusals:
        from obliviate.data.loading import load_refusals

        refusals = load_refusals()
    if cfg.reference == "original" and ref_model is None:
        raise ObliviateError("reference=original needs ref_model (the model before the first unlearning task)")
    return refusals


def _inputs(model, tokenizer, forget_records, retain_records, refusals, ref_model, *, writes: bool) -> dict:
    """Fingerprints of what the run reads (run.json's `inputs`; a resume must match them, `check_run_dir`); the
    models' only when the run `writes` a directory (hashing the weights costs a pass over them)."""
    return {"model_fingerprint": model_fingerprint(model) if writes else None,
            "forget_hash": records_hash(forget_records), "retain_hash": records_hash(retain_records),
            "ref_model_fingerprint": model_fingerprint(ref_model) if writes and ref_model else None,
            "refusals_hash": records_hash(refusals), "tokenizer_hash": tokenizer_hash(tokenizer)}


def _start(cfg: UnlearnConfig, hp, model, ref, data: UnlearnData, acc) -> _Run:
    """The plan, optimiser, schedule and weight tracker of a run, the model prepared by `acc`, the micro-batch."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    per_epoch = steps_per_epoch(len(data.forget), hp.batch_size)
    total = cfg.max_steps or max(1, round(hp.epochs * per_epoch))
    batches = plan(len(data.forget), len(data.retain) if data.retain else None, batch_size=hp.batch_size,
                   batches=total, seed=cfg.seed)
    opt = adamw(model.parameters(), lr=hp.lr, weight_decay=cfg.weight_decay)
    warmup = min(total, round(cfg.warmup_epochs * per_epoch))
    sched = (get_linear_schedule_with_warmup(opt, warmup, total) if cfg.schedule == "linear"
             else get_constant_schedule_with_warmup(opt, warmup))
    model, opt, sched = acc.prepare(model, opt, sched)
    smoother = SMOOTHERS[cfg.smoothing] if cfg.smoothing else NO_SMOOTHING
    r = _Run(cfg=cfg, model=model, ref=ref, data=data, acc=acc, objective=OBJECTIVES[cfg.objective],
             regularizer=REGULARIZERS[cfg.regularizer] if cfg.regularizer else None, smoother=smoother,
             batches=batches, per_epoch=per_epoch, total=total, opt=opt, sched=sched, lam=cfg.lam,
             amp=autocast_kwargs(acc.device, None if cfg.mixed_precision is None else cfg.mixed_precision == "bf16"))
    r.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    r.tracker = smoother.tracker(r.params, cfg, total) if smoother.tracker else None
    # single process, plain gradient, eager: DDP/FSDP shards, double backward and inductor keep the dense gradient
    sparse_tied_embedding(acc.unwrap_model(model), on=acc.num_processes == 1 and smoother.grad is plain
                          and not cfg.compile and not cfg.lora)
    model.train()  # the trial step of micro_batch=auto is a training pass
    r.micro_batch = micro_batch_of(r, hp.batch_size)
    # the training forwards only (set after the micro_batch=auto trial, which measures eager's saved tensors)
    r.compiled = torch.compile(model) if cfg.compile else None
    return r
