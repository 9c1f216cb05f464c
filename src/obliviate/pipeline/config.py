"""The pipeline's config: `DemoConfig` (demo and reproduce), its overrides language, and the command presets.

    cfg = resolve(DemoConfig, ["reproduce"], "my.yaml", ["seeds=2", "unlearn_overrides=*:lr=1e-4;npo+gd:beta=0.2"],
                  out="runs/x")

Precedence (highest first): a command-line flag > a `key=value` override > the YAML file of `--config` > the
command's preset(s) > the dataclass default. A *command preset* is a YAML file shipped in the package
(`obliviate/pipeline/presets/<name>.yaml`, opening with the command that runs it) that lists only what its
command changes over the dataclass defaults: `demo.yaml` is empty (the demo is DemoConfig's defaults, each
commented below), `reproduce.yaml` (+ `reproduce-lora.yaml` with --lora) and `realworld.yaml` (UnlearnConfig
fields of `obliviate realworld`). Not to be confused with the *world* preset, the `preset` field (tiny | demo |
full). Size defaults of the lower layers stay theirs: `models/init.TRAINING_DEFAULTS` and
`unlearn/config.PAPER_HYPERPARAMS` fill what a config leaves unset.

`unlearn_overrides` language: "recipe:key=value,key=value;recipe:..."; "*:key=value" applies to every recipe and a
recipe's own entry wins. A `continual` entry is "recipe[:key=value,...]".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from obliviate import ObliviateError
from obliviate.config import MAX_BATCH, MAX_EPOCHS, MAX_SEED, MAX_STEPS, MAX_TOKENS, check_ranges
from obliviate.reader import parse_yaml

C = TypeVar("C")

DEMO_RECIPES = ["ga+gd", "npo+gd", "me+gd", "idk+gd", "idk+ap", "npo+gd+sam"]

# How far each recipe × seed run unlearns (`protocol`). fixed: the recipe's epochs / max_steps, nothing else.
# matched: every recipe at the same lr evaluates after each epoch and stops once its forget Prob on the probe
# reaches the retain model's (stop=match:retain; the pipeline gives the retain model's eval as the reference) or at
# the cap (`matched_epochs`), keeping the point of lowest forget Prob among those where retain Prob stayed
# >= 0.9 × its start: the recipes are then compared at matched forgetting (report.claims' matched claims).
PROTOCOLS = {
    "fixed": {},
    "matched": {"eval_every": "epoch", "stop": "match:retain", "keep": "best",
                "select": "min forget_prob subject to retain_prob >= 0.9 * start"},
}


@dataclass
class DemoConfig:
    preset: str = "demo"  # world preset: tiny (tests) | demo | full
    seeds: int = 3
    out: str = "runs/demo"
    world_seed: int = 0
    model_size: str = "tiny"  # the model trained from scratch on the world (models.init sizes)...
    base_model: str = ""  # ... or a pretrained model (hub id, directory, smollm2-135m-instruct) to fine-tune instead
    recipes: list[str] = field(default_factory=lambda: list(DEMO_RECIPES))
    forget: str = "forget10"
    retain: str = "retain90"
    # target / retain model training (measured on the demo world: forget prob ≈ 0.98 after 20 epochs)
    finetune_epochs: float = 20.0
    finetune_lr: float = 3e-3
    finetune_batch_size: int = 32
    finetune_lora: bool = False  # train a LoRA adapter (r = finetune_lora_r, α = 2r) and merge it, not every weight
    finetune_lora_r: int = 16
    # unlearning: recipe overrides as "recipe:key=value,key=value;recipe:..." (empty = the size preset);
    # "*:key=value" applies to every recipe (a recipe's own entry wins)
    unlearn_overrides: str = ""
    protocol: str = "fixed"  # fixed | matched (PROTOCOLS): a fixed step count, or until forgetting matches retain
    matched_epochs: float | None = None  # matched: the cap in epochs (over unlearn_overrides' epochs; None: theirs)
    # evaluation
    max_new_tokens: int = 48  # the tiny model's answers are < 40 tokens
    # relearning attack
    relearn_k: int = 8
    relearn_steps: list[int] = field(default_factory=lambda: [5, 10, 20])
    relearn_batch_size: int = 4
    # attacks on every unlearned model (report.attacks.ATTACKS); mia reuses the evaluation's scores (no new pass)
    attacks: list[str] = field(default_factory=lambda: ["relearn", "mia"])
    attack_recipes: list[str] = field(default_factory=list)  # recipes relearn/jailbreak attack (empty = every one)
    jailbreak_tokens: int = 10  # demo size of the GCG search (see docs/attacks.md for its time)
    jailbreak_steps: int = 8
    jailbreak_search_width: int = 32
    # continual unlearning of the target (scenarios.continual), one run per spec "recipe[:key=value,...]",
    # e.g. "npo+gd", "npo+gd:reference=original"; tasks of `continual_forget`'s size; empty = none
    continual: list[str] = field(default_factory=list)
    continual_forget: str = "forget01"
    continual_tasks: int = 3
    continual_seeds: int = 1  # claims need ≥ 2 seeds for an interval
    # parallel worker processes (1 thread each) for independent stages; 1 = everything in this process
    jobs: int = 2
    # `--model-args` (lm-eval style: dtype=bfloat16,revision=...,device_map=...,attn_implementation=...): how every
    # model of the run is loaded (models.hub); empty = float32 on this process's device
    model_args: str = ""

    # the declared range of every numeric field (config.check_ranges)
    RANGES: ClassVar[dict[str, str]] = {
        "seeds": "[1, 1000]", "world_seed": f"[0, {MAX_SEED}]", "finetune_epochs": f"(0, {MAX_EPOCHS}]",
        "finetune_lr": "(0, 10]", "finetune_batch_size": f"[1, {MAX_BATCH}]", "finetune_lora_r": "[1, 4096]",
        "max_new_tokens": f"[1, {MAX_TOKENS}]", "relearn_k": "[1, 1e7]", "relearn_steps": f"[1, {MAX_STEPS}]",
        "relearn_batch_size": f"[1, {MAX_BATCH}]", "jailbreak_tokens": "[1, 4096]",
        "jailbreak_steps": f"[1, {MAX_STEPS}]", "jailbreak_search_width": f"[1, {MAX_BATCH}]",
        "continual_tasks": "[1, 10000]", "continual_seeds": "[1, 1000]", "jobs": "[1, 1024]",
        "matched_epochs": f"(0, {MAX_EPOCHS}]",
    }

    def __post_init__(self):
        from obliviate.unlearn.recipe import parse_recipe

        check_ranges(self)
        from obliviate.models.hub import parse_model_args

        parse_model_args(self.model_args)  # a bad key or value is one line before any work
        if self.protocol not in PROTOCOLS:
            raise ObliviateError(f"protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        for r in self.recipes:
            parse_recipe(r)
        from obliviate.attack.registry import ATTACKS

        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise ObliviateError(f"attacks: unknown {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
        stray = [r for r in self.attack_recipes if r not in self.recipes]
        if stray:
            raise ObliviateError(f"attack_recipes: {', '.join(stray)} not among the recipes ({', '.join(self.recipes)})")
        self.overrides_for("")  # validate the syntax early
        for spec in self.continual:
            self.continual_spec(spec)
        self._check_trackers()

    def _check_trackers(self) -> None:
        """A `log_with` of the unlearn overrides / continual entries names a tracker that is installed: checked
        before the first stage, not when a recipe's run starts (models.tracking)."""
        from obliviate.models.tracking import check_tracker

        runs = [self.overrides_for(r) for r in self.recipes] + [self.continual_spec(s)[1] for s in self.continual]
        for values in runs:
            check_tracker(values.get("log_with"))

    def overrides_for(self, recipe: str) -> dict[str, str]:
        """UnlearnConfig overrides of `recipe`: the "*" entries, then the recipe's own (which win)."""
        every, own = {}, {}
        for chunk in filter(None, (c.strip() for c in self.unlearn_overrides.split(";"))):
            name, sep, kvs = chunk.partition(":")
            if not sep:
                raise ObliviateError(f"unlearn_overrides: {chunk!r} is not 'recipe:key=value,...'")
            values = _key_values(kvs, "unlearn_overrides")
            if name.strip() in ("*", recipe):
                (every if name.strip() == "*" else own).update(values)
        return {**every, **own}

    def unlearn_values(self, recipe: str) -> dict:
        """The UnlearnConfig values of `recipe`'s runs: the protocol's rules (`unlearn_overrides` win over them),
        and with protocol matched its cap `matched_epochs` when set."""
        values = {**PROTOCOLS[self.protocol], **self.overrides_for(recipe)}
        if self.protocol == "matched" and self.matched_epochs is not None:
            values["epochs"] = self.matched_epochs
        return values

    def continual_spec(self, spec: str) -> tuple[str, dict[str, str], str]:
        """(recipe, UnlearnConfig overrides, directory name) of a `continual` entry "recipe[:key=value,...]"."""
        from obliviate.unlearn.recipe import parse_recipe

        recipe, _, kvs = spec.partition(":")
        parse_recipe(recipe.strip())
        own = _key_values(kvs, f"continual {spec!r}")
        name = "_".join([recipe.strip().replace("+", "_")] + [f"{k}-{v}" for k, v in own.items()])
        return recipe.strip(), {**self.overrides_for(recipe.strip()), **own}, name

    def attacked(self, recipe: str) -> bool:
        """Whether the relearning / jailbreak attacks run on `recipe`'s models (mia always: it needs no pass)."""
        return not self.attack_recipes or recipe in self.attack_recipes

    def base_dir(self) -> Path | str:
        """The model target and retain are fine-tuned from: the pretrained `base_model`, else models/base."""
        return self.base_model or Path(self.out) / "models" / "base"


def _key_values(kvs: str, field: str) -> dict[str, str]:
    """"key=value,key=value" as a dict (`config.parse_overrides`), an error naming the DemoConfig field."""
    from obliviate.config import parse_overrides

    try:
        return parse_overrides([kv for kv in kvs.split(",") if kv])
    except ObliviateError as e:
        raise ObliviateError(f"{field}: {e}") from None


def relearn_k_for(cfg: DemoConfig, n_forget: int) -> int:
    """`relearn_k`, clamped (with a message) so the attacker leaves at least one forget item unseen."""
    from tqdm.auto import tqdm

    if cfg.relearn_k < n_forget:
        return cfg.relearn_k
    if n_forget < 2:
        raise ObliviateError(f"{cfg.forget} has {n_forget} item(s): the relearning attack needs at least 2")
    k = n_forget - 1
    tqdm.write(f"relearn_k={cfg.relearn_k} is not smaller than the {n_forget} items of {cfg.forget}: using k={k} so "
               "that the 'unseen items' curve has an item to measure")
    return k


def command_preset(*names: str) -> dict[str, Any]:
    """The values of the packaged presets `names`, layered in order (a later one wins)."""
    values: dict[str, Any] = {}
    for name in names:
        f = resources.files("obliviate.pipeline") / "presets" / f"{name}.yaml"
        if not f.is_file():
            known = sorted(p.name[:-5] for p in (resources.files("obliviate.pipeline") / "presets").iterdir()
                           if p.name.endswith(".yaml"))
            raise ObliviateError(f"command preset {name!r}: no {name}.yaml in obliviate/pipeline/presets; known: "
                                 f"{', '.join(known)}")
        loaded = parse_yaml(f.read_text(), f"obliviate/pipeline/presets/{name}.yaml") or {}
        if not isinstance(loaded, dict):
            raise ObliviateError(f"obliviate/pipeline/presets/{name}.yaml: a preset is a mapping of key: value")
        values.update(loaded)
    return values


def resolve(cls: type[C], presets: list[str], path=None, overrides: list[str] | None = None, **flags: Any) -> C:
    """`cls` from its defaults < the command presets < YAML `path` < `key=value` overrides < flags (None = unset)."""
    from obliviate.config import load_config

    return load_config(cls, path, overrides, defaults=command_preset(*presets), **flags)
