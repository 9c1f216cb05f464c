"""`config.jsonable`: the one conversion of results to JSON, used by the CLI's `--json` line (an unknown type
printed as its str) and the API's `.to_dict()` (an unknown type refused)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from obliviate import ObliviateError
from obliviate.config import jsonable


@dataclasses.dataclass
class Point:
    x: float
    where: Path


class Opaque:
    def __str__(self):
        return "opaque!"


def test_nan_and_inf_become_null_anywhere():
    assert jsonable({"a": [1.0, float("nan"), (float("-inf"), "x")], "b": {"c": float("inf"), "d": 2}}) == \
        {"a": [1.0, None, [None, "x"]], "b": {"c": None, "d": 2}}


def test_scalars_paths_dataclasses_and_keys():
    got = jsonable({"f32": np.float32(0.5), "f64": np.float64(np.nan), "i": np.int64(3), "t": torch.tensor(2.5),
                    "tnan": torch.tensor(float("inf")), "p": Path("runs/a"), "d": Point(1.5, Path("m")), 7: True})
    assert got == {"f32": 0.5, "f64": None, "i": 3, "t": 2.5, "tnan": None, "p": "runs/a",
                   "d": {"x": 1.5, "where": "m"}, "7": True}
    assert type(got["f32"]) is float and type(got["i"]) is int and type(got["t"]) is float
    assert type(jsonable(np.float64(0.25))) is float  # a float subclass becomes a plain float
    assert jsonable(True) is True and jsonable(None) is None  # bool is not turned into an int


def test_unknown_type_is_an_error_without_other_and_other_of_it_with():
    with pytest.raises(ObliviateError, match="a value of type Opaque is not JSON data"):
        jsonable({"a": [Opaque()]})
    with pytest.raises(ObliviateError, match="type ndarray"):  # an array is not a scalar
        jsonable(np.zeros(2))
    assert jsonable({"a": [Opaque()], "b": float("nan")}, other=str) == {"a": ["opaque!"], "b": None}


def test_the_api_refuses_an_unknown_type():
    from obliviate.api import AttackResult

    res = AttackResult(name="mia", result={"auc": np.float32(0.75), "bad": Opaque()}, config=None, out=Path("o"))
    with pytest.raises(ObliviateError, match="type Opaque is not JSON data"):
        res.to_dict()
    res.result.pop("bad")
    assert res.to_dict() == {"attack": "mia", "config": None, "out": "o", "result": {"auc": 0.75}}


def test_the_cli_json_line_prints_an_unknown_type_as_its_str(monkeypatch, capfd):
    from obliviate import cli

    summary = {"nan": float("nan"), "f32": np.float32(0.5), "path": Path("runs/x"), "point": Point(2.0, Path("p")),
               "odd": Opaque()}
    monkeypatch.setattr(cli._module("ls"), "run", lambda args: summary)
    capfd.readouterr()
    assert cli.main(["--json", "ls"]) == 0
    line = capfd.readouterr().out
    assert json.loads(line) == {"verb": "ls", "nan": None, "f32": 0.5, "path": "runs/x",
                                "point": {"x": 2.0, "where": "p"}, "odd": "opaque!"}
    assert "NaN" not in line
