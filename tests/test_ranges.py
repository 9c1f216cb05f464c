"""Declared config ranges (issue 28, defect 6): every numeric field of every config dataclass has a range in its
class's RANGES, checked by `config.check_ranges` before any work, with one line naming field, value and range."""

import dataclasses
import importlib
import math
import pkgutil
import types
import typing

import pytest

import obliviate
from obliviate import ObliviateError
from obliviate import config as C
from obliviate.config import load_config


def _config_classes() -> list[type]:
    """Every dataclass named *Config in the package (importing every module, so a new one is found)."""
    found = {}
    for mod in pkgutil.walk_packages(obliviate.__path__, "obliviate."):
        if mod.name.endswith("__main__"):
            continue
        module = importlib.import_module(mod.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__name__.endswith("Config"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def _numeric(hint) -> bool:
    if hint in (int, float):
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType, list, tuple):
        return any(_numeric(a) for a in typing.get_args(hint))
    return False


def _numeric_fields(cls) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if _numeric(hints[f.name])]


CLASSES = _config_classes()


def test_the_enumeration_finds_every_verb_config():
    names = {c.__name__ for c in CLASSES}
    assert {"UnlearnConfig", "FinetuneConfig", "EvalConfig", "DemoConfig", "RealworldConfig", "ContinualConfig",
            "StealConfig", "InvertConfig", "JailbreakConfig", "RelearnConfig", "MIAConfig", "BenchConfig"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_numeric_field_declares_a_range(cls):
    ranges = getattr(cls, "RANGES", None)
    assert isinstance(ranges, dict), f"{cls.__name__} has no RANGES"
    missing = sorted(set(_numeric_fields(cls)) - set(ranges))
    assert not missing, f"{cls.__name__}: numeric field(s) without a declared range: {missing}"
    stray = sorted(set(ranges) - {f.name for f in dataclasses.fields(cls)})
    assert not stray, f"{cls.__name__}.RANGES names no field: {stray}"
    for spec in ranges.values():
        C.parse_range(spec)


def _outside(spec: str, is_int: bool) -> list[float]:
    low, high, low_closed, high_closed = C.parse_range(spec)
    out = [math.nan, math.inf, -math.inf]
    if math.isfinite(low):
        out.append(low - 1 if is_int else (low - 1e-9 if low_closed else low))
    if math.isfinite(high):
        out.append(high + 1 if is_int else (high + abs(high) * 1e-6 + 1e-9 if high_closed else high))
    return out


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_refuses_values_outside_its_range_in_one_line(cls):
    """Each declared field, set to NaN, ±inf and just past each bound, is refused naming the field and range."""
    hints = typing.get_type_hints(cls)
    for name, spec in cls.RANGES.items():
        is_int = int in (typing.get_args(hints[name]) or (hints[name],)) and float not in typing.get_args(hints[name])
        is_list = typing.get_origin(hints[name]) is list
        for bad in _outside(spec, is_int):
            value = [bad] if is_list else bad
            with pytest.raises(ObliviateError) as err:
                cls(**{name: value})
            msg = str(err.value)
            assert "\n" not in msg and msg.startswith(f"{name} must be a finite number in {spec}"), msg


def test_interval_arithmetic():
    assert C.parse_range("[8, 131072]") == (8.0, 131072.0, True, True)
    assert C.parse_range("(0, inf)") == (0.0, math.inf, False, False)
    assert C.in_range(8, "[8, 10]") and not C.in_range(8, "(8, 10]") and not C.in_range(10, "[8, 10)")
    assert not C.in_range(math.nan, "[0, inf)") and not C.in_range(math.inf, "[0, inf)")
    with pytest.raises(ValueError):
        C.parse_range("8..10")


@pytest.mark.parametrize("override, field", [
    ("weight_decay=nan", "weight_decay"), ("max_length=0", "max_length"), ("max_length=-5", "max_length"),
    ("lam=-1", "lam"), ("epochs=1e12", "epochs"), ("grad_clip=nan", "grad_clip"), ("lr=inf", "lr"),
])
def test_issue28_defect6_values_are_refused_before_any_work(override, field):
    from obliviate.models.finetune import FinetuneConfig
    from obliviate.unlearn import UnlearnConfig

    for cls in (UnlearnConfig, FinetuneConfig):
        if field in cls.RANGES:
            with pytest.raises(ObliviateError, match=f"^{field} must be a finite number in "):
                load_config(cls, None, [override])


def test_defaults_and_none_pass():
    for cls in CLASSES:
        C.check_ranges(cls())


def test_the_step_plan_is_refused_before_it_is_built():
    """epochs within range can still multiply to a huge plan (epochs × forget batches): refused up front."""
    import time

    from obliviate.config import MAX_STEPS
    from obliviate.unlearn.batch import plan

    t0 = time.perf_counter()
    with pytest.raises(ObliviateError, match=f"would take {MAX_STEPS + 1} optimiser steps, over the cap"):
        plan(400, 3600, batch_size=1, batches=MAX_STEPS + 1, seed=0)
    assert time.perf_counter() - t0 < 1.0
    assert len(plan(4, None, batch_size=2, batches=3, seed=0)) == 3
