"""`UnlearnConfig`: every switch of SPEC §1 with its default, and the lr/epoch presets per model size.

    cfg = UnlearnConfig(recipe="npo+gd+sam")                      # or objective="npo", regularizer="gd", ...
    cfg = load_config(UnlearnConfig, "configs/unlearn_npo_gd.yaml", ["npo_beta=0.2"])
"""

from __future__ import annotations

from dataclasses import dataclass

from obliviate import ObliviateError
from obliviate.config import check_positive
from obliviate.unlearn.objectives import OBJECTIVES
from obliviate.unlearn.recipe import parse_recipe, recipe_name
from obliviate.unlearn.regularizers import REGULARIZERS
from obliviate.unlearn.smoothing import SMOOTHERS


@dataclass(frozen=True)
class Preset:
    lr: float
    epochs: float
    batch_size: int


# lr / epochs / batch per model size. The papers' values (lr 1e-5, 5 epochs, effective batch 32) are for 7B
# models; from-scratch tiny models need a far larger lr. "tiny" was tuned on the demo world (tiny target
# finetuned 20 epochs on full+world_facts; forget10 = 40 items vs retain90 = 360; 2 CPU cores, seed 0):
# lr 5e-4 x 5 epochs x batch 4 (50 steps, ~3-5 s per recipe) takes the forget answer probability from
# 0.98 to <= 0.02 for ga/npo/me (+gd, +sam) and to ~0.55 for idk, with retain probability 0.85-0.91
# except ga+gd (0.73). Tried: 1e-3 x 5 x 8 (retain 0.62-0.87), 5e-4 x 5 x 8 (forget fell, retain 0.41-0.91),
# 3e-4 x 10 x 8 and 5e-4 x 10 x 8 (similar retain, twice the time), 7e-4 x 4 x 4 (similar).
# "micro" (unit tests) is the finetune lr of that size; "small" is an unmeasured interpolation.
PRESETS = {
    "micro": Preset(lr=3e-3, epochs=5, batch_size=4),
    "tiny": Preset(lr=5e-4, epochs=5, batch_size=4),
    "small": Preset(lr=3e-4, epochs=5, batch_size=8),
}
PAPER_PRESET = Preset(lr=1e-5, epochs=5, batch_size=32)

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
    alpha: float = 1.0  # forget weight α
    lam: float = 1.0  # retain weight λ
    # optimisation (None = the preset of the model size, else the papers' values)
    lr: float | None = None
    epochs: float | None = None  # passes over the forget set
    max_steps: int | None = None  # overrides epochs
    batch_size: int | None = None  # forget items per micro-batch (each paired with one retain item)
    grad_accum: int = 1
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    schedule: str = "linear"
    grad_clip: float = 1.0
    max_length: int = 256
    seed: int = 0
    # reference for npo / dpo / kl / rmu: the model unlearning starts from, or `ref_model` (continual)
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
    # regularisers
    kl_positions: str = "answer"
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
    # run directory
    checkpoint_every: int = 0  # optimiser steps; 0 = no intermediate checkpoints
    keep_checkpoints: int = 2  # the newest N intermediate checkpoints are kept (the final model always is)

    def __post_init__(self):
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
        check_positive(self, "lr", "epochs")
        if not 0.0 <= self.wa_start <= 1.0:
            raise ObliviateError(f"wa_start must be in [0, 1], got {self.wa_start}")
        if self.checkpoint_every < 0:
            raise ObliviateError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.keep_checkpoints < 1:
            raise ObliviateError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.lora and "params" in OBJECTIVES[self.objective].needs:
            raise ObliviateError("rmu trains the MLPs of layers ℓ-2..ℓ itself; it cannot be combined with lora")

    def preset(self, size: str | None) -> Preset:
        """The size's preset with this config's explicit values on top."""
        p = PRESETS.get(size or "", PAPER_PRESET)
        return Preset(lr=self.lr or p.lr, epochs=self.epochs or p.epochs, batch_size=self.batch_size or p.batch_size)
