"""The search space of `obliviate tune`: which UnlearnConfig fields vary, over which range.

    space = parse_space(["lr=1e-5..1e-2:log", "npo_beta=0.05..0.5", "npo_granularity=sequence|token_mean"], cfg)
    space = parse_space(["space.yaml"], cfg)             # lr: 1e-5..1e-2:log   or   lr: {low: 1e-5, high: 1e-2, log: true}
    space = default_space(cfg, size="tiny")              # lr (log), epochs, and the recipe's β / λ / ρ
    values = suggest(trial, space)                       # {"lr": 3.1e-4, ...}: UnlearnConfig values of one trial

A range is `low..high` (uniform), `low..high:log` (log-uniform) or `a|b|c` (categorical); an int field of
UnlearnConfig gets integer suggestions. The default space is derived from the records, not listed twice: the float
fields of UnlearnConfig named after the recipe's objective / regulariser / smoother key (`npo_beta`, `ap_beta`,
`sam_rho`, ...) over [v/10, 10·v] around their default v (narrowed to [v/10, v] when UnlearnConfig refuses 10·v),
the retain weight λ (`lam`) when the recipe has a regulariser, lr over [lr/10, 10·lr] (log) and epochs over
[epochs/2, 2·epochs] around the model size's defaults (UnlearnConfig.hyperparams).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from obliviate import ObliviateError
from obliviate.config import from_dict
from obliviate.reader import read_yaml
from obliviate.unlearn import UnlearnConfig
from obliviate.unlearn.config import CHOICES

# fields a trial may not vary: they name the run, not an operating point
FIXED = {"recipe", "objective", "regularizer", "smoothing", "seed", "micro_batch", "grad_accum", "max_memory",
         "checkpoint_every", "keep_checkpoints", "lora"}


@dataclass(frozen=True)
class Param:
    """One searched UnlearnConfig field: a numeric range (`low`..`high`, `log`, `integer`) or `choices`."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.choices:
            return "|".join(self.choices)
        return f"{self.low:g}..{self.high:g}" + (":log" if self.log else "") + (" (int)" if self.integer else "")


def _field_kind(name: str) -> type:
    hints = typing.get_type_hints(UnlearnConfig)
    if name not in hints:
        known = sorted(f.name for f in dataclasses.fields(UnlearnConfig) if f.name not in FIXED)
        raise ObliviateError(f"search space: {name!r} is not an UnlearnConfig field; known: {', '.join(known)}")
    if name in FIXED:
        raise ObliviateError(f"search space: {name!r} names the run, it cannot be searched (tune one recipe per "
                             "study; fix it with --recipe or key=value)")
    args = [a for a in typing.get_args(hints[name]) if a is not type(None)] or [hints[name]]
    return args[0]


def _number(name: str, text, source: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ObliviateError(f"{source}: {name}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ObliviateError(f"{source}: {name}: {text!r} is not a finite number")
    return v


def make_param(name: str, spec, source: str = "search space") -> Param:
    """A Param from `spec`: "low..high[:log]", "a|b|c", a list of choices, or {low, high, log}."""
    kind = _field_kind(name)
    if isinstance(spec, list) or (isinstance(spec, str) and "|" in spec):
        choices = tuple(str(c).strip() for c in (spec if isinstance(spec, list) else spec.split("|")))
        if len(choices) < 2 or "" in choices:
            raise ObliviateError(f"{source}: {name}={spec!r}: a categorical range needs two or more non-empty "
                                 "choices a|b|c")
        for c in choices:  # each choice must be a value UnlearnConfig accepts for this field
            _check_value(name, c, source)
        return Param(name, choices=choices)
    if isinstance(spec, dict):
        extra = sorted(set(spec) - {"low", "high", "log"})
        if extra or not {"low", "high"} <= set(spec):
            raise ObliviateError(f"{source}: {name}: a range mapping has keys low, high and optionally log; got "
                                 f"{', '.join(map(str, spec))}")
        low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    else:
        text = str(spec).strip()
        body, _, flag = text.partition(":")
        low, sep, high = body.partition("..")
        if not sep or flag not in ("", "log"):
            raise ObliviateError(f"{source}: {name}={text!r} is not low..high, low..high:log or a|b|c")
        log = flag == "log"
    if kind not in (int, float):
        raise ObliviateError(f"{source}: {name} is a {kind.__name__} field; give its values as a|b|c")
    low, high = _number(name, low, source), _number(name, high, source)
    if not low < high:
        raise ObliviateError(f"{source}: {name}: low {low:g} must be below high {high:g}")
    if log and low <= 0:
        raise ObliviateError(f"{source}: {name}: a log range needs low > 0, got {low:g}")
    if kind is int and not (low.is_integer() and high.is_integer()):
        raise ObliviateError(f"{source}: {name} is an integer field; give integer bounds, got {low:g}..{high:g}")
    param = Param(name, low, high, log, integer=kind is int)
    for v in (low, high):
        _check_value(name, int(v) if kind is int else v, source)
    return param


def _check_value(name: str, value, source: str) -> None:
    try:
        from_dict(UnlearnConfig, {name: value})
    except ObliviateError as e:
        raise ObliviateError(f"{source}: {name}={value}: {e}") from None


def parse_space(items: list[str]) -> dict[str, Param]:
    """The space of `--space` items: `key=range` strings and/or YAML files (key: range) read in order."""
    space: dict[str, Param] = {}
    for item in items:
        if item.endswith((".yaml", ".yml")) and "=" not in item:
            space.update(_space_file(Path(item)))
            continue
        name, sep, spec = item.partition("=")
        if not sep or not name.strip():
            raise ObliviateError(f"search space: {item!r} is not key=low..high[:log], key=a|b|c or a YAML file")
        space[name.strip()] = make_param(name.strip(), spec.strip())
    return space


def _space_file(path: Path) -> dict[str, Param]:
    loaded = read_yaml(path, what="search space")  # a missing or malformed file: one line naming it
    if not isinstance(loaded, dict) or not loaded:
        raise ObliviateError(f"{path}: a search space is a mapping of field: range")
    return {str(k): make_param(str(k), v, source=str(path)) for k, v in loaded.items()}


def recipe_fields(cfg: UnlearnConfig) -> list[str]:
    """The float hyper-parameters of `cfg`'s recipe: UnlearnConfig fields `<key>_*` of its objective,
    regulariser and smoother keys (the registry keys), with a positive default; `lam` with a regulariser."""
    keys = [k for k in (cfg.objective, cfg.regularizer, cfg.smoothing) if k]
    hints = typing.get_type_hints(UnlearnConfig)
    names = [f.name for f in dataclasses.fields(UnlearnConfig)
             if any(f.name.startswith(f"{k}_") for k in keys) and f.name not in CHOICES
             and hints[f.name] is float and getattr(cfg, f.name) > 0]
    return names + (["lam"] if cfg.regularizer and cfg.lam > 0 else [])


def default_space(cfg: UnlearnConfig, size: str | None) -> dict[str, Param]:
    """lr (log) and epochs around the size's defaults, and the recipe's own hyper-parameters (module docstring)."""
    hp = cfg.hyperparams(size)
    space = {"lr": Param("lr", hp.lr / 10, hp.lr * 10, log=True)}
    if cfg.max_steps is None:
        space["epochs"] = Param("epochs", hp.epochs / 2, hp.epochs * 2)
    for name in recipe_fields(cfg):
        v = float(getattr(cfg, name))
        high = v * 10
        try:
            from_dict(UnlearnConfig, {**_values(cfg), name: high})
        except ObliviateError:
            high = v  # UnlearnConfig bounds this field (e.g. a fraction): search below the default only
        space[name] = Param(name, v / 10, high, log=True)
    return space


def _values(cfg: UnlearnConfig) -> dict:
    """`cfg` as from_dict input: the recipe string stands for its parts."""
    values = dataclasses.asdict(cfg)
    for part in ("objective", "regularizer", "smoothing"):
        values.pop(part)
    return values


def suggest(trial, space: dict[str, Param]) -> dict:
    """One trial's values of the space (Optuna's suggest_* per Param)."""
    out = {}
    for name, p in space.items():
        if p.choices:
            out[name] = trial.suggest_categorical(name, list(p.choices))
        elif p.integer:
            out[name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
        else:
            out[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
    return out


def trial_config(cfg: UnlearnConfig, values: dict) -> UnlearnConfig:
    """`cfg` with one trial's values (coerced as a config file's would be)."""
    return from_dict(UnlearnConfig, {**_values(cfg), **values}, source="trial")


def recipe_yaml(cfg: UnlearnConfig, values: dict, header: str) -> str:
    """A YAML config for `obliviate unlearn --config`: the recipe and every field that differs from the recipe's
    defaults (the fixed settings of the study and the trial's values)."""
    base = _values(UnlearnConfig(recipe=cfg.recipe))
    own = {k: v for k, v in _values(cfg).items() if v != base.get(k) or k == "recipe" or k in values}
    return header + yaml.safe_dump(own, sort_keys=False)


@dataclass(frozen=True)
class Objective:
    """What a study optimises: one `min|max <expr> [subject to <rule>]` (unlearn.rules' selection grammar), or
    `pareto <min|max expr>, <min|max expr>, ...` (a multi-objective study; its Pareto front)."""

    text: str
    parts: tuple  # unlearn.rules.Selection per objective

    @property
    def directions(self) -> list[str]:
        return ["maximize" if s.direction == "max" else "minimize" for s in self.parts]

    @property
    def constraint(self):
        """The single objective's `subject to` rule, or None."""
        return self.parts[0].constraint if len(self.parts) == 1 else None

    def values(self, metrics: dict, start: dict | None, reference: dict | None) -> list[float]:
        return [s.score(metrics, start, reference) for s in self.parts]

    def feasible(self, metrics: dict, start: dict | None, reference: dict | None) -> bool:
        return self.constraint is None or self.constraint.holds(metrics, start, reference)

    def reads_reference(self) -> bool:
        return any(s.reads_reference() for s in self.parts)

    def axes(self) -> list[tuple[str, str]] | None:
        """[(metric, direction)] of the front plot's forgetting and utility axes: the two objectives' metrics, or
        the objective's and its constraint's (`>=` / `>`: maximize); None unless both name a single metric."""
        axes = [(s.expr.names(), d) for s, d in zip(self.parts, self.directions)]
        if len(self.parts) == 1 and self.constraint is not None:
            left, op, _ = self.constraint.comparisons[0]
            axes.append((left.names(), "maximize" if op in (">=", ">") else "minimize"))
        if len(axes) < 2 or any(len(n) != 1 for n, _ in axes[:2]):
            return None
        return [(next(iter(n)), d) for n, d in axes[:2]]


def parse_objective(text: str, known_metrics) -> Objective:
    """The objective of `--objective`; an unknown metric or bad syntax is a one-line error (before any trial)."""
    from obliviate.unlearn.rules import parse_select

    words = (text or "").strip().split(None, 1)
    try:
        if words and words[0] == "pareto":
            items = [t.strip() for t in (words[1] if len(words) > 1 else "").split(",") if t.strip()]
            if len(items) < 2 or any(" subject to " in t for t in items):
                raise ObliviateError("pareto needs two or more 'min|max <metric>' separated by commas (no "
                                     "'subject to')")
            return Objective(text.strip(), tuple(parse_select(t, known_metrics) for t in items))
        return Objective(text.strip(), (parse_select(text, known_metrics),))
    except ObliviateError as e:
        raise ObliviateError(f"objective {text!r}: {e}") from None
