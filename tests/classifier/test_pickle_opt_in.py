"""Issue 9, security: a planted pickle payload never runs unless the user passes --allow-pickle on the command line."""

import json
import pickle

import pytest

from obliviate import ObliviateError
from obliviate.cli import main


class _Payload:
    """Unpickling this calls `open(marker, 'w')`: the marker file appears iff the pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(tmp_path):
    d = tmp_path / "target"
    d.mkdir()
    marker = tmp_path / "PWNED"
    with open(d / "model.pt", "wb") as f:
        pickle.dump({"weight": _Payload(marker)}, f)
    (d / "model.json").write_text(json.dumps({"arch": "evalnet", "kwargs": {"width": 8}, "meta": {}}))
    return d, marker


def test_payload_not_executed_by_load_classifier(tmp_path):
    from obliviate.classifier.models import load_classifier

    d, marker = _plant(tmp_path)
    with pytest.raises(ObliviateError, match="pickle"):
        load_classifier(d)
    assert not marker.exists()


@pytest.mark.parametrize("verb", ["steal", "invert"])
def test_allow_pickle_override_or_yaml_is_refused_and_payload_not_run(tmp_path, capsys, verb):
    d, marker = _plant(tmp_path)
    code = main([verb, "--target", str(d), "--out", str(tmp_path / "out"), "allow_pickle=true"])
    assert code == 2 and "pass the command-line flag --allow-pickle" in capsys.readouterr().err
    y = tmp_path / "shared.yaml"
    y.write_text("allow_pickle: true\n")
    assert main([verb, "--target", str(d), "--out", str(tmp_path / "out2"), "--config", str(y)]) == 2
    assert not marker.exists()


def test_nli_model_directory_gets_the_pickle_check(tmp_path):
    from obliviate.evaluate.nli import load_nli

    d = tmp_path / "nli"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "bert"}))
    marker = tmp_path / "PWNED"
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": _Payload(marker)}, f)
    with pytest.raises(ObliviateError, match="refusing a pickle checkpoint"):
        load_nli(str(d))
    assert not marker.exists()
