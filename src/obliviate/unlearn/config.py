"""`UnlearnConfig`: every switch of SPEC §1 with its default; unset lr/epochs/batch come from the model size.

    cfg = UnlearnConfig(recipe="npo+gd+sam")                      # or objective="npo", regularizer="gd", ...
    cfg = load_config(UnlearnConfig, "src/obliviate/configs/unlearn_npo_gd_sam.yaml", ["npo_beta=0.2"])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from obliviate import ObliviateError
from obliviate.config import MAX_BATCH, MAX_EPOCHS, MAX_SEED, MAX_STEPS, MAX_TOKENS, check_ranges
from obliviate.models.init import TRAINING_DEFAULTS, training_defaults
from obliviate.models.microbatch import check_micro_batch, resolve_micro_batch
from obliviate.models.tracking import check_tracker
from obliviate.parity import check_mode
from obliviate.unlearn.objectives import OBJECTIVES
from obliviate.unlearn.recipe import parse_recipe, recipe_name
from obliviate.unlearn.regularizers import REGULARIZERS
from obliviate.unlearn.rules import parse_rule, parse_select
from obliviate.unlearn.smoothing import SMOOTHERS


@dataclass(frozen=True)
class Hyperparams:
    """The resolved lr / epochs / batch size of a run: the config's values over the model size's defaults."""

    lr: float
    epochs: float
    batch_size: int

# open-unlearning's per-method values where they differ from the shared ones: the forget weight α and,
# for real models (no size defaults in models.init), lr / epochs
ALPHA_DEFAULTS = {"satimp": 0.1}
PAPER_HYPERPARAMS = {"undial": Hyperparams(lr=1e-4, epochs=10, batch_size=32)}
DUAL_STEP = 1.0  # η of the primal–dual retain weight (open-unlearning's PDU default)

CHOICES = {
    "npo_granularity": ("sequence", "token_mean"),
    "me_form": ("code", "paper"),
    "me_positions": ("qa", "answer", "qa+padding"),
    "kl_positions": ("answer", "all"),
    "reference": ("previous", "original"),
    "schedule": ("linear", "constant"),
}


@dataclass
class UnlearnConfig:
    # recipe: `recipe` is the `+` shorthand for the three fields below; parts given both ways are merged
    # (`--recipe npo+gd smoothing=sam` = npo+gd+sam) and must not conflict. No objective at all = ga.
    recipe: str | None = None
    objective: str | None = None
    regularizer: str | None = None
    smoothing: str | None = None
    alpha: float | None = None  # forget weight α (None: ALPHA_DEFAULTS of the objective, else 1)
    lam: float = 1.0  # retain weight λ (the initial λ when retain_constraint is set)
    # primal–dual retain weight: λ ← max(0, λ + η·(L_retain − ε)) after each step past the warm-up
    retain_constraint: float | None = None  # ε; None = fixed λ
    dual_step: float | None = None  # η (None: DUAL_STEP)
    dual_warmup_epochs: float | None = None  # epochs before the first update (None: 0)
    # optimisation (None = the model size's default, models.init.TRAINING_DEFAULTS, else the papers' values)
    lr: float | None = None
    epochs: float | None = None  # passes over the forget set
    max_steps: int | None = None  # overrides epochs
    batch_size: int | None = None  # the effective batch: forget items per optimiser step (each paired with one
    # retain item); every loss averages over it, whatever the split below
    micro_batch: str | int = "auto"  # items per forward/backward; auto: the largest that fits (models.microbatch)
    grad_accum: int | None = None  # micro-batches per step = batch_size / micro_batch (give one of the two)
    max_memory: float | None = None  # GiB the process may peak at, for micro_batch=auto on CPU (None: a fraction
    # of the memory available at start, models.microbatch.MEMORY_FRACTION)
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    schedule: str = "linear"
    grad_clip: float = 1.0
    max_length: int = 256
    seed: int = 0
    # reference for npo / dpo / kl / rmu / undial: the model unlearning starts from, or `ref_model` (continual)
    reference: str = "previous"
    # objectives
    npo_beta: float = 0.1
    npo_granularity: str = "sequence"
    simnpo_beta: float = 2.5
    simnpo_gamma: float = 0.0
    me_form: str = "code"
    me_positions: str = "qa"
    dpo_beta: float = 0.1
    rmu_layer: int | None = None  # None: min(7, layers // 2)
    rmu_coeff: float = 6.5  # steering coefficient c
    rmu_retain_weight: float = 1200.0  # α_r
    wga_beta: float = 1.0
    satimp_beta1: float = 5.0
    satimp_beta2: float = 1.0
    undial_beta: float = 10.0
    ceu_ignore_first_n: int = 1  # CE-U skips each answer's first n tokens
    # regularisers
    kl_positions: str = "answer"
    parity: str = "paper"  # paper | open-unlearning | closer-look: loss conventions (obliviate.parity.CONVENTIONS)
    ap_beta: float = 0.1
    # smoothing
    sam_rho: float = 0.01
    rs_sigma: float = 1e-4
    rs_samples: int = 3
    gp_rho: float = 0.01
    cr_h: float = 0.01
    cr_rho: float = 0.01
    wa_start: float = 0.8  # fraction of the steps
    wa_every: int = 5
    # LoRA (peft)
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    # memory and speed
    gradient_checkpointing: bool = False  # recompute activations in the backward: less memory, more compute
    compile: bool = False  # torch.compile (inductor) of the training forward/backward; off: it does not pay on CPU
    # for runs of the default length (docs/speed.md, round 2)
    mixed_precision: str | None = None  # "bf16": training forwards under bf16 autocast (weights, gradients and
    # AdamW stay fp32); None/"no": fp32, or what `accelerate launch --mixed_precision` set
    # run directory
    checkpoint_every: int = 0  # optimiser steps; 0 = no intermediate checkpoints
    keep_checkpoints: int = 2  # the newest N intermediate checkpoints are kept (the final model always is)
    # evaluation during training, stop / guard rules, the kept checkpoint (unlearn.trajectory, unlearn.rules;
    # docs/unlearning.md "How far to go"). Off by default: no probe runs, the numbers are those of a plain run.
    eval_every: str | int | None = None  # "epoch" or N optimiser steps: probe the model there, at step 0 and the end
    stop: str | None = None  # stop once this holds, e.g. "forget_prob <= 0.30" or "match:retain"
    guard: str | None = None  # e.g. "retain_prob >= 0.9 * start": when it fails the run stops and keeps the last
    # evaluation point that passed
    keep: str = "last"  # last | best (best: the evaluation point `select` prefers)
    select: str | None = None  # keep=best: "min forget_prob", "max forget_gap subject to retain_prob >= 0.95 * start"
    probe_size: int = 16  # items per probe role (forget, retain, world facts, holdout, ...)
    probe_rouge: bool = False  # add ROUGE-L recall from a short greedy answer per probe item (slower)
    probe_metrics: str = "default"  # what the probe scores besides the rules' metrics: default (Prob / NLL of each
    # split, MIA AUC, forget gap: answers only, no perturbed answers), all, or names joined by '+'
    # experiment tracking through accelerate (models.tracking; docs/unlearning.md "Tracking"): the loss parts, lr,
    # α / λ per step and the probe's metrics at each evaluation point. None: nothing logged, nothing imported
    log_with: str | None = None  # tensorboard | wandb | trackio | mlflow
    tracker_dir: str | None = None  # where local trackers write (None: <run dir>/trackers)

    # the declared range of every numeric field (config.check_ranges; None is always allowed for an Optional one)
    RANGES: ClassVar[dict[str, str]] = {
        "alpha": "[0, 1e6]", "lam": "[0, 1e6]", "retain_constraint": "[0, 1e6]", "dual_step": "(0, 1e6]",
        "dual_warmup_epochs": f"[0, {MAX_EPOCHS}]", "lr": "(0, 10]", "epochs": f"(0, {MAX_EPOCHS}]",
        "max_steps": f"[1, {MAX_STEPS}]", "batch_size": f"[1, {MAX_BATCH}]", "micro_batch": f"[1, {MAX_BATCH}]",
        "grad_accum": f"[1, {MAX_BATCH}]", "max_memory": "(0, 1e6]", "weight_decay": "[0, 10]",
        "warmup_epochs": f"[0, {MAX_EPOCHS}]", "grad_clip": "[0, 1e6]",  # grad_clip 0 = off
        "max_length": f"[8, {MAX_TOKENS}]", "seed": f"[0, {MAX_SEED}]",
        "eval_every": f"[1, {MAX_STEPS}]", "probe_size": "[1, 1000000]",  # eval_every: or "epoch" (not a number)
        "npo_beta": "(0, 1e3]", "simnpo_beta": "(0, 1e3]", "simnpo_gamma": "[0, 1e3]", "dpo_beta": "(0, 1e3]",
        "rmu_layer": "[0, 1000]", "rmu_coeff": "(0, 1e4]", "rmu_retain_weight": "[0, 1e6]", "wga_beta": "[0, 1e3]",
        "satimp_beta1": "[0, 1e3]", "satimp_beta2": "[0, 1e3]", "undial_beta": "[0, 1e3]",
        "ceu_ignore_first_n": f"[0, {MAX_TOKENS}]", "ap_beta": "(0, 1e3]",
        "sam_rho": "[0, 10]", "rs_sigma": "[0, 10]", "rs_samples": "[1, 1000]", "gp_rho": "[0, 10]",
        "cr_h": "(0, 10]", "cr_rho": "[0, 10]", "wa_start": "[0, 1]", "wa_every": f"[1, {MAX_STEPS}]",
        "lora_r": "[1, 4096]", "lora_alpha": "[1, 65536]", "lora_dropout": "[0, 1)",
        "checkpoint_every": f"[0, {MAX_STEPS}]", "keep_checkpoints": "[1, 10000]",
    }

    def __post_init__(self):
        check_ranges(self)
        if check_mode(self.parity) != "paper" and self.kl_positions != "answer":
            raise ObliviateError(f"kl_positions={self.kl_positions} conflicts with parity={self.parity}, which sets "
                                 "KL's positions itself (obliviate.parity: kl_positions)")
        parts = parse_recipe(self.recipe) if self.recipe else {}
        for kind in ("objective", "regularizer", "smoothing"):
            given, named = getattr(self, kind), parts.get(kind)
            if given is not None and named is not None and given != named:
                raise ObliviateError(f"recipe {self.recipe!r} has {kind} {named!r} but {kind}={given!r} is also "
                                     "set; give one of them")
            setattr(self, kind, named or given)
        if self.objective is None:
            self.objective = "ga"
        for name, reg in (("objective", OBJECTIVES), ("regularizer", REGULARIZERS), ("smoothing", SMOOTHERS)):
            value = getattr(self, name)
            if value is not None and value not in reg:
                raise ObliviateError(f"{name} {value!r} is unknown; choose one of {', '.join(reg)}")
        if self.objective is None:
            raise ObliviateError(f"objective is required; choose one of {', '.join(OBJECTIVES)}")
        self.recipe = recipe_name(self.objective, self.regularizer, self.smoothing)
        if self.alpha is None:
            self.alpha = ALPHA_DEFAULTS.get(self.objective, 1.0)
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ObliviateError(f"{name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        self._check_dual()
        self._check_trajectory()
        check_tracker(self.log_with)
        self.micro_batch = check_micro_batch(self.micro_batch)
        if self.batch_size is not None:  # else checked once the size's default batch is known (unlearn.fit)
            resolve_micro_batch(self.batch_size, self.micro_batch, self.grad_accum)
        if self.mixed_precision not in (None, "no", "bf16"):
            raise ObliviateError(f"mixed_precision {self.mixed_precision!r}: choose one of no, bf16 (fp16 needs a "
                                 "loss scaler: use `accelerate launch --mixed_precision fp16` on a GPU)")
        if self.lora and "params" in OBJECTIVES[self.objective].needs:
            raise ObliviateError("rmu trains the MLPs of layers ℓ-2..ℓ itself; it cannot be combined with lora")

    def _check_dual(self):
        if self.retain_constraint is None:
            given = [n for n in ("dual_step", "dual_warmup_epochs") if getattr(self, n) is not None]
            if given:
                raise ObliviateError(f"{given[0]} is set but retain_constraint is not; set retain_constraint=ε "
                                     "to use the primal–dual retain weight")
            return
        if self.regularizer is None:
            raise ObliviateError(f"retain_constraint needs a retain regularizer in the recipe ({self.recipe}+gd, "
                                 f"+kl or +ap)")

    def _check_trajectory(self):
        """eval_every is "epoch" or a step count; the rules parse (their metric names are checked against the
        probe's before any model work, `unlearn.trajectory`); rules need evaluation points."""
        if isinstance(self.eval_every, str) and self.eval_every.strip().isdigit():
            self.eval_every = int(self.eval_every)
        if self.eval_every not in (None, "epoch") and not (isinstance(self.eval_every, int) and self.eval_every >= 1):
            raise ObliviateError(f"eval_every {self.eval_every!r}: give 'epoch' or a number of steps >= 1")
        if self.keep not in ("last", "best"):
            raise ObliviateError(f"keep {self.keep!r}: choose one of last, best")
        for name in ("stop", "guard"):
            if getattr(self, name) is not None:
                parse_rule(getattr(self, name))
        if self.select is not None:
            parse_select(self.select)
        if self.keep == "best" and self.select is None:
            raise ObliviateError("keep=best needs select=..., e.g. select='min forget_prob'")
        if self.select is not None and self.keep != "best":
            raise ObliviateError(f"select={self.select!r} chooses the kept checkpoint: set keep=best too")
        given = [n for n in ("stop", "guard", "select") if getattr(self, n) is not None]
        if given and self.eval_every is None:
            raise ObliviateError(f"{given[0]}={getattr(self, given[0])!r} needs evaluation points: set eval_every=epoch "
                                 "or eval_every=<steps>")
        if self.smoothing == "wa" and (self.guard is not None or self.keep == "best"):
            raise ObliviateError("smoothing=wa averages the weights at the end: a kept checkpoint (guard, keep=best) "
                                 "would not be that average; use stop only, or another smoother")
        if not self.probe_metrics or not all(self.probe_metrics.split("+")):
            raise ObliviateError(f"probe_metrics {self.probe_metrics!r}: default, all, or metric names joined by '+'")
        if self.probe_size < 1:
            raise ObliviateError(f"probe_size must be >= 1, got {self.probe_size}")

    def hyperparams(self, size: str | None) -> Hyperparams:
        """This config's lr / epochs / batch size, unset ones from the size's defaults (models.init); on a real
        model (no size) an objective's own paper values (PAPER_HYPERPARAMS) before the shared ones."""
        d = training_defaults(size)
        p = PAPER_HYPERPARAMS.get(self.objective) if size not in TRAINING_DEFAULTS else None
        if p is not None:
            return Hyperparams(lr=self.lr or p.lr, epochs=self.epochs or p.epochs,
                               batch_size=self.batch_size or p.batch_size)
        return Hyperparams(lr=self.lr or d.unlearn_lr, epochs=self.epochs or d.unlearn_epochs,
                           batch_size=self.batch_size or d.unlearn_batch_size)
