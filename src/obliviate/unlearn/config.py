"""`UnlearnConfig`: every switch of SPEC §1 with its default; unset lr/epochs/batch come from the model size.

    cfg = UnlearnConfig(recipe="npo+gd+sam")                      # or objective="npo", regularizer="gd", ...
    cfg = load_config(UnlearnConfig, "src/obliviate/configs/unlearn_npo_gd_sam.yaml", ["npo_beta=0.2"])
"""

from __future__ import annotations

from dataclasses import dataclass

from obliviate import ObliviateError
from obliviate.config import check_positive
from obliviate.models.init import TRAINING_DEFAULTS, training_defaults
from obliviate.models.microbatch import check_micro_batch, resolve_micro_batch
from obliviate.parity import check_mode
from obliviate.unlearn.objectives import OBJECTIVES
from obliviate.unlearn.recipe import parse_recipe, recipe_name
from obliviate.unlearn.regularizers import REGULARIZERS
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
    mixed_precision: str | None = None  # "bf16": training forwards under bf16 autocast (weights, gradients and
    # AdamW stay fp32); None/"no": fp32, or what `accelerate launch --mixed_precision` set
    # run directory
    checkpoint_every: int = 0  # optimiser steps; 0 = no intermediate checkpoints
    keep_checkpoints: int = 2  # the newest N intermediate checkpoints are kept (the final model always is)

    def __post_init__(self):
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
        for name in ("batch_size", "max_steps", "grad_accum", "rs_samples", "wa_every", "lora_r"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ObliviateError(f"{name} must be >= 1, got {v}")
        for name in ("npo_beta", "simnpo_beta", "dpo_beta", "ap_beta"):
            if getattr(self, name) <= 0:
                raise ObliviateError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("wga_beta", "satimp_beta1", "satimp_beta2", "undial_beta", "ceu_ignore_first_n"):
            if getattr(self, name) < 0:
                raise ObliviateError(f"{name} must be >= 0, got {getattr(self, name)}")
        self._check_dual()
        self.micro_batch = check_micro_batch(self.micro_batch)
        if self.batch_size is not None:  # else checked once the size's default batch is known (unlearn.fit)
            resolve_micro_batch(self.batch_size, self.micro_batch, self.grad_accum)
        check_positive(self, "lr", "epochs", "max_memory")
        if not 0.0 <= self.wa_start <= 1.0:
            raise ObliviateError(f"wa_start must be in [0, 1], got {self.wa_start}")
        if self.checkpoint_every < 0:
            raise ObliviateError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.keep_checkpoints < 1:
            raise ObliviateError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
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
        if self.lam < 0:
            raise ObliviateError(f"lam (the initial dual weight) must be >= 0, got {self.lam}")
        if self.dual_step is not None and self.dual_step <= 0:
            raise ObliviateError(f"dual_step must be > 0, got {self.dual_step}")
        if self.dual_warmup_epochs is not None and self.dual_warmup_epochs < 0:
            raise ObliviateError(f"dual_warmup_epochs must be >= 0, got {self.dual_warmup_epochs}")

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
