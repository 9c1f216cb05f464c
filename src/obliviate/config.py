"""Configs are dataclasses that YAML fills; CLI overrides are `key=value`.

    cfg = load_config(UnlearnConfig, "recipe.yaml", ["lr=2e-4", "beta=0.2"], seed=args.seed)

Precedence (highest first): a command-line flag (`--seed 3`) > a `key=value` override > the YAML
file (`--config`) > the dataclass default. `key=value` overrides may sit anywhere on the command line.
A recipe is the one exception to "higher wins": its parts (`--recipe npo+gd`, `smoothing=sam`,
`objective:` in YAML) are merged, and two different values for one part are an error.

Unknown keys and values of the wrong type are one-line errors naming the key. Opt-ins that lower
safety (`--allow-pickle`, `--trust-remote-code`) are command-line flags only: a config or override
naming them is refused. Each config validates itself in `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import random
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar


from obliviate import ObliviateError, __version__
from obliviate.rundir import write_json
from obliviate.reader import read_yaml

C = TypeVar("C")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a YAML/CLI value to the field's annotated type (int, float, bool, str, lists, Optional)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(name, value, args[0])
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        return [_coerce(name, v, item) for v in value]
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint in (int, float, str):
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return hint(value)
    except (TypeError, ValueError):
        raise ObliviateError(f"config key '{name}': cannot read {value!r} as {hint.__name__}") from None
    return value


# opt-ins that lower safety: command-line flags only, never a config value
FLAG_ONLY = {"allow_pickle": "--allow-pickle", "trust_remote_code": "--trust-remote-code"}


def from_dict(cls: type[C], values: dict[str, Any], *, source: str = "config") -> C:
    """Build dataclass `cls` from a flat dict, refusing unknown keys."""
    flag_only = sorted(set(values) & set(FLAG_ONLY))
    if flag_only:
        raise ObliviateError(f"{source}: '{flag_only[0]}' cannot be set in a config or override (it lets files run "
                             f"code); pass the command-line flag {FLAG_ONLY[flag_only[0]]} instead")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ObliviateError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    return cls(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})


def parse_overrides(overrides: list[str] | None) -> dict[str, str]:
    out = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ObliviateError(f"override {item!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None, *,
                defaults: dict[str, Any] | None = None, **flags: Any) -> C:
    """`cls` defaults < `defaults` (a verb's own, e.g. `reproduce`) < YAML file < `key=value` overrides < `flags`
    (command-line flags; None = not given)."""
    values: dict[str, Any] = dict(defaults or {})
    if path:
        p = Path(path)
        if not p.exists():
            raise ObliviateError(f"{p}: config file not found")
        loaded = read_yaml(p) or {}
        if not isinstance(loaded, dict):
            raise ObliviateError(f"{p}: a config is a mapping of key: value")
        values.update(loaded)
    values.update(parse_overrides(overrides))
    values.update({k: v for k, v in flags.items() if v is not None})
    return from_dict(cls, values, source=str(path or "config"))


def versions() -> dict[str, str]:
    """Library versions recorded next to every result."""
    out = {"obliviate": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("torch", "transformers", "tokenizers", "accelerate", "peft", "numpy", "scipy"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def write_run_info(out_dir: str | Path, config: Any, *, seed: int | None = None, name: str = "run.json",
                   extra: dict | None = None) -> Path:
    """Write the resolved config, seed, versions and command line (+ `extra`) next to a run's results."""
    out_dir = Path(out_dir)
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    info = {"config": cfg, "seed": seed if seed is not None else cfg.get("seed"), "versions": versions(),
            "command": sys.argv, **(extra or {})}
    return write_json(out_dir / name, info)


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and torch: a training stage calls it first with its config's seed (the one
    `write_run_info` records)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def jsonable(value: Any, *, other: Callable[[Any], Any] | None = None) -> Any:
    """`value` as JSON-ready data, the one conversion of results to JSON (the API's `.to_dict()`, the CLI's
    `--json` line): numbers stay numbers (numpy / torch scalars become Python ones), a NaN / ±inf float becomes None
    (JSON has no NaN), paths become strings, tuples lists, dataclasses dicts, dict keys strings. A value of any
    other type is `other(value)` (the CLI passes `str`: its summary line always prints) or, without `other`, an
    `ObliviateError` (the API's `.to_dict()` promises JSON data)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v, other=other) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, other=other) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalar
        return jsonable(value.item(), other=other)
    if other is not None:
        return other(value)
    raise ObliviateError(f"a value of type {type(value).__name__} is not JSON data")


# caps of the declared ranges: far above any real run, low enough that a typo (epochs=1e12) is refused before
# a plan of 2e12 steps is built
MAX_EPOCHS = 10_000
MAX_STEPS = 1_000_000
MAX_TOKENS = 131_072  # max_length / max_new_tokens: the longest context of a current model
MAX_BATCH = 65_536
MAX_SEED = 2**32 - 1  # numpy's limit


def _bound(text: str) -> float:
    return {"inf": math.inf, "-inf": -math.inf}.get(text.strip()) or float(text)


def parse_range(spec: str) -> tuple[float, float, bool, bool]:
    """(low, high, low_closed, high_closed) of an interval "[8, 131072]", "(0, 10]", "[0, inf)".

    >>> parse_range("(0, 10]")
    (0.0, 10.0, False, True)
    """
    if len(spec) < 5 or spec[0] not in "[(" or spec[-1] not in "])" or spec.count(",") != 1:
        raise ValueError(f"range {spec!r} is not an interval like [0, 1) or (0, inf)")
    low, high = spec[1:-1].split(",")
    return _bound(low), _bound(high), spec[0] == "[", spec[-1] == "]"


def in_range(value: float, spec: str) -> bool:
    """`value` is a finite number inside the interval `spec` (nan and ±inf never are)."""
    low, high, low_closed, high_closed = parse_range(spec)
    if not math.isfinite(value):
        return False
    return (low <= value if low_closed else low < value) and (value <= high if high_closed else value < high)


def check_ranges(cfg: Any) -> None:
    """Every field of `cfg` named in its class's `RANGES` ({field: interval}) is None, a non-number (e.g.
    micro_batch="auto", checked elsewhere), or a finite number in its interval (each item, for a list); else a
    one-line error naming the field, the value and the range. Called first in each config's `__post_init__`, so
    it runs before any work."""
    for name, spec in type(cfg).RANGES.items():
        value = getattr(cfg, name)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not in_range(v, spec):
                raise ObliviateError(f"{name} must be a finite number in {spec}, got {value}")
