"""Fine-tuning with the answer-only NLL: target and retain models, and the relearning attack.

    log = finetune(model, tokenizer, load_split(data, "full+world_facts"), FinetuneConfig(epochs=20))

The loss is the token-mean NLL over every answer token of the batch,
    L = −(1/N) Σ_i Σ_{t ∈ answer_i} log π(y_t | x_i, y_<t),   N = Σ_i |answer_i|,
which is what transformers computes from `labels=`, but through `models.logps.sequence_logps`: `lm_head`
(and its log-softmax) runs only at answer positions, never on the prompt (`answer_nll`). N counts the answer
tokens of the whole (effective) batch of `batch_size` items, which runs as `batch_size / micro_batch`
micro-batches (`micro_batch=auto`: the largest that fits, `models.microbatch`): the split changes memory, not
the loss.

Batches are drawn length-grouped by default (`group_by_length`): each epoch is a random permutation cut into
mega-batches of `GROUP_BATCHES` batches, each sorted by length (transformers' `get_length_grouped_indices`), so
a batch pads to a similar length. On the `reproduce` world (batch 16) this trains on 24 % fewer tokens than
plain shuffled batches (33 % of those were padding); every item is still seen once per epoch.
With `lora`, only a LoRA adapter (peft, every linear layer) trains, and it is merged into the weights at the end.

`train_steps` is the same loop as a generator that yields after every optimiser step,
so a caller can evaluate at chosen steps (the relearning curve) without callbacks.
Training goes through `accelerate.Accelerator`, so `accelerate launch` gives DDP/FSDP.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import torch

from obliviate import ObliviateError
from obliviate.config import (MAX_BATCH, MAX_EPOCHS, MAX_SEED, MAX_STEPS, MAX_TOKENS, check_ranges, seed_everything,
                              write_run_info)
from obliviate.data.format import IGNORE_INDEX, Collator, QADataset, pad_token_id
from obliviate.models.device import check_launch, default_mixed_precision
from obliviate.models.init import training_defaults
from obliviate.models.loading import model_size_name, save_model
from obliviate.models.logps import sequence_logps
from obliviate.models.microbatch import check_micro_batch, choose_micro_batch, resolve_micro_batch
from obliviate.models.tracking import check_tracker, log_values, start_trackers, stop_trackers, tracker_kwargs
from obliviate.rundir import write_json_lines
from obliviate.stats import check_finite_weights


@dataclass
class FinetuneConfig:
    split: str = "full"
    epochs: float = 20.0
    max_steps: int | None = None  # overrides epochs when set
    lr: float | None = None  # None: the model size's finetune_lr (models.init.TRAINING_DEFAULTS), else 1e-5
    batch_size: int = 32  # the effective batch: items per optimiser step (per process)
    micro_batch: str | int = "auto"  # items per forward/backward; auto: the largest that fits (models.microbatch)
    grad_accum: int | None = None  # micro-batches per step = batch_size / micro_batch (give one of the two)
    max_memory: float | None = None  # GiB the process may peak at, for micro_batch=auto on CPU
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: str = "linear"  # linear | constant
    max_length: int = 256
    grad_clip: float = 1.0
    group_by_length: bool = True  # mega-batches of GROUP_BATCHES batches sorted by length: less padding
    lora: bool = False  # train a LoRA adapter (finetune() merges it at the end) instead of every weight
    lora_r: int = 16
    lora_alpha: int = 32
    seed: int = 0
    log_with: str | None = None  # tensorboard | wandb | trackio | mlflow: loss, lr, grad norm per step (models.tracking)
    tracker_dir: str | None = None  # where local trackers write (None: <out>/trackers)

    # the declared range of every numeric field (config.check_ranges)
    RANGES: ClassVar[dict[str, str]] = {
        "epochs": f"(0, {MAX_EPOCHS}]", "max_steps": f"[1, {MAX_STEPS}]", "lr": "(0, 10]",
        "batch_size": f"[1, {MAX_BATCH}]", "micro_batch": f"[1, {MAX_BATCH}]", "grad_accum": f"[1, {MAX_BATCH}]",
        "max_memory": "(0, 1e6]", "weight_decay": "[0, 10]", "warmup_ratio": "[0, 1]",
        "max_length": f"[8, {MAX_TOKENS}]", "grad_clip": "[0, 1e6]",  # grad_clip 0 = off
        "lora_r": "[1, 4096]", "lora_alpha": "[1, 65536]", "seed": f"[0, {MAX_SEED}]",
    }

    def __post_init__(self):
        check_ranges(self)
        self.micro_batch = check_micro_batch(self.micro_batch)
        if self.schedule not in ("linear", "constant"):
            raise ObliviateError(f"schedule {self.schedule!r}: choose linear or constant")
        resolve_micro_batch(self.batch_size, self.micro_batch, self.grad_accum)
        check_tracker(self.log_with)


GROUP_BATCHES = 4  # batches per length-sorted mega-batch (transformers' default, 50, is the whole of a small split)


class LengthGroupedOrder(torch.utils.data.Sampler):
    """Per epoch: a permutation from `generator`, cut into mega-batches of `GROUP_BATCHES × batch_size`, each
    sorted by length (transformers.trainer_pt_utils.get_length_grouped_indices); consecutive slices of
    `batch_size` are the batches."""

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator):
        self.lengths, self.batch_size, self.generator = lengths, batch_size, generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return iter(get_length_grouped_indices(self.lengths, self.batch_size, mega_batch_mult=GROUP_BATCHES,
                                               generator=self.generator))


def adamw(params, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable `params`, fused (one kernel over all tensors; on CPU since torch 2.4): on
    SmolLM2-135M with one thread a step takes 0.17 s against 0.92 s for the default per-tensor loop, with updates
    equal to 1 float32 ulp (docs/speed.md)."""
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay, fused=True)


def resolve_lr(cfg_lr: float | None, model) -> float:
    return cfg_lr if cfg_lr is not None else training_defaults(model_size_name(model)).finetune_lr


def answer_nll(model, batch: dict[str, torch.Tensor], n_tokens: float | None = None) -> torch.Tensor:
    """Token-mean NLL over all answer tokens of the batch (labels != -100): transformers' `labels=` loss. With
    `n_tokens`, the N of the effective batch this micro-batch belongs to (its parts then add up to the loss)."""
    out = sequence_logps(model, batch)
    return -out.token_logps.sum() / (out.mask.sum().clamp(min=1) if n_tokens is None else max(n_tokens, 1.0))


def accumulate_nll(model, batch: dict[str, torch.Tensor], micro_batch: int, backward) -> torch.Tensor:
    """Backward `answer_nll` of `batch` in micro-batches of `micro_batch` rows, each normalised by the whole
    batch's answer tokens (so the gradient is the whole batch's); the batch's loss."""
    n = float((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    total = 0.0
    for k in range(0, len(batch["input_ids"]), micro_batch):
        loss = answer_nll(model, {key: t[k:k + micro_batch] for key, t in batch.items()}, n)
        backward(loss)
        total += float(loss.detach())
    return torch.tensor(total)


def _trial(model, data: QADataset, pad_id: int, m: int) -> None:
    """Forward and backward on the m longest examples (`micro_batch=auto`); gradients cleared."""
    order = sorted(range(len(data.examples)), key=lambda i: -len(data.examples[i]["input_ids"]))
    batch = Collator(pad_id)([data.examples[order[i % len(order)]] for i in range(m)])
    batch = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
    with torch.random.fork_rng(devices=[batch["input_ids"].device] if batch["input_ids"].is_cuda else []):
        try:
            answer_nll(model, batch).backward()
        finally:
            model.zero_grad(set_to_none=True)


def train_steps(model, tokenizer, records: list[dict], cfg: FinetuneConfig, *, out_dir=None) -> Iterator[dict]:
    """Train with the answer-only NLL; yield `{step, loss, lr, grad_norm, epoch}` after each optimiser step (and
    log it to `cfg.log_with`'s tracker, in `cfg.tracker_dir` or `<out_dir>/trackers`)."""
    from accelerate import Accelerator
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    seed_everything(cfg.seed)
    data = QADataset(records, tokenizer, max_length=cfg.max_length)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = (dict(sampler=LengthGroupedOrder([len(e["input_ids"]) for e in data.examples], cfg.batch_size, gen))
             if cfg.group_by_length else dict(shuffle=True, generator=gen))
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, collate_fn=Collator(pad_token_id(tokenizer)),
                                         **order)
    per_epoch = max(1, len(loader))
    total = cfg.max_steps or max(1, round(cfg.epochs * per_epoch))
    lr = resolve_lr(cfg.lr, model)
    opt = adamw(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    warmup = round(cfg.warmup_ratio * total)
    sched = (get_linear_schedule_with_warmup(opt, warmup, total) if cfg.schedule == "linear"
             else get_constant_schedule_with_warmup(opt, warmup))
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=default_mixed_precision(),
                      **tracker_kwargs(cfg.log_with, cfg.tracker_dir, out_dir))
    check_launch(acc)
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    model.train()
    micro = choose_micro_batch(cfg.batch_size, cfg.micro_batch, cfg.grad_accum, model=model, device=acc.device,
                               trial=lambda m: _trial(model, data, pad_token_id(tokenizer), m),
                               max_memory=cfg.max_memory)
    split = {"micro_batch": micro, "grad_accum": math.ceil(cfg.batch_size / micro)}
    start_trackers(acc, cfg, out_dir)
    try:
        step = 0
        while step < total:
            for batch in loader:
                loss = accumulate_nll(model, batch, micro, acc.backward)
                if not torch.isfinite(loss):
                    raise ObliviateError(f"non-finite loss {loss.item()} at step {step}; lower the lr")
                grad_norm = float(acc.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf))
                opt.step()
                check_finite_weights(model.named_parameters(), what=f"finetune step {step + 1}")
                sched.step()
                opt.zero_grad()
                step += 1
                row = {"step": step, "loss": float(loss), "lr": sched.get_last_lr()[0], "grad_norm": grad_norm,
                       "epoch": step / len(loader)}
                log_values(acc, {k: v for k, v in row.items() if k != "step"}, step=step, prefix="train")
                yield {**row, "total_steps": total, **split}
                if step >= total:
                    break
    finally:  # also when the caller stops early (the relearning curve) or a step fails
        stop_trackers(acc)
    model.eval()


def finetune(model, tokenizer, records: list[dict], cfg: FinetuneConfig, *, progress: bool = True,
             out_dir=None) -> list[dict]:
    """Run `train_steps` to the end with a progress bar; return the per-step log. The model is trained in place
    (with `cfg.lora`, the adapter is merged into its weights at the end). `out_dir`: the run directory, where
    `cfg.log_with`'s tracker writes by default and which names the tracked run."""
    from obliviate.rundir import progress_bar

    log, bar = [], None
    trained, trainable = model, [p.requires_grad for p in model.parameters()]
    if cfg.lora:
        from obliviate.models.lora import add_lora

        trained = add_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha)
    for row in train_steps(trained, tokenizer, records, cfg, out_dir=out_dir):
        if bar is None:
            bar = progress_bar(total=row["total_steps"], desc="finetune", progress=progress)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
        log.append(row)
    if bar is not None:
        bar.close()
    if cfg.lora:
        trained.merge_and_unload()  # replaces the adapter layers inside `model` by merged nn.Linear
        for p, flag in zip(model.parameters(), trainable):  # peft froze the base weights
            p.requires_grad_(flag)
    return log


def save_finetuned(model, tokenizer, out, cfg: FinetuneConfig, log: list[dict], *, extra: dict | None = None):
    """Write a fine-tuning run into `out`: the model (`save_model`, `extra` into obliviate.json), `run.json`
    (resolved config, seed, versions: `config.write_run_info`) and the per-step `train_log.jsonl`."""
    save_model(model, tokenizer, out, extra=extra)
    write_json_lines(Path(out) / "train_log.jsonl", log)
    return write_run_info(out, cfg, seed=cfg.seed)
