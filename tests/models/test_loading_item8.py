"""Issue 28 item 8: model loading failures are one line and never run code: a tokenizer asking for remote code,
an index file naming shards that are not there (with a pickle beside it), a non-tensor pickle under
--allow-pickle, a malformed obliviate.json. Each also through the CLI: exit 2, one stderr line."""

import json
import pickle
import shutil
import re

import pytest
import torch

from obliviate import ObliviateError
from obliviate.cli import main
from obliviate.models.loading import load_model

MARKER = "obliviate-item8-code-ran"


class _Evil:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _copy(base_dir, tmp_path, name="m"):
    d = tmp_path / name
    shutil.copytree(base_dir, d)
    return d


def _cli_one_line(capsys, d, world_dir, tmp_path, *extra):
    capsys.readouterr()
    assert main(["eval", "--model", str(d), "--data", str(world_dir), "--out", str(tmp_path / "ev"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_tokenizer_asking_for_remote_code_is_one_line(base_dir, world_dir, tmp_path, capsys):
    d = _copy(base_dir, tmp_path)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]})
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    (d / "tokenization_evil.py").write_text(f"open({str(tmp_path / MARKER)!r}, 'w')\n")
    with pytest.raises(ObliviateError, match="trust_remote_code"):
        load_model(d)
    assert "trust_remote_code" in _cli_one_line(capsys, d, world_dir, tmp_path)
    assert not (tmp_path / MARKER).exists()


def test_index_file_does_not_let_a_pickle_only_dir_past_the_check(base_dir, world_dir, tmp_path, capsys):
    d = _copy(base_dir, tmp_path)
    names = list(json.loads((d / "config.json").read_text()) and
                 __import__("safetensors.torch", fromlist=["load_file"]).load_file(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: "model-00001-of-00001.safetensors" for n in names}}))
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump(_Evil(str(tmp_path / MARKER)), f)
    with pytest.raises(ObliviateError, match="model.safetensors.index.json: names shard "
                                             "'model-00001-of-00001.safetensors', which is not a safetensors file"):
        load_model(d)
    line = _cli_one_line(capsys, d, world_dir, tmp_path)
    assert "names shard" in line
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../../elsewhere.safetensors"}}))
    with pytest.raises(ObliviateError, match="names shard '../../elsewhere.safetensors'"):
        load_model(d)
    (d / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ObliviateError, match="model.safetensors.index.json: line 1 column 2: not valid JSON"):
        load_model(d)
    assert not (tmp_path / MARKER).exists()


def test_allow_pickle_with_a_non_tensor_pickle_is_one_line(base_dir, world_dir, tmp_path, capsys):
    d = _copy(base_dir, tmp_path)
    (d / "model.safetensors").unlink()
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump(_Evil(str(tmp_path / MARKER)), f)
    with pytest.raises(ObliviateError, match="cannot load model"):
        load_model(d, allow_pickle=True)
    assert "cannot load model" in _cli_one_line(capsys, d, world_dir, tmp_path, "--allow-pickle")
    assert not (tmp_path / MARKER).exists()  # torch's weights_only refused it: no code ran
    torch.save({"not": "tensors"}, d / "pytorch_model.bin")  # a pickle of plain data: still one line
    with pytest.raises(ObliviateError, match="cannot load model"):
        load_model(d, allow_pickle=True)


def test_malformed_obliviate_json_is_one_line(base_dir, world_dir, tmp_path, capsys):
    d = _copy(base_dir, tmp_path)
    (d / "obliviate.json").write_text('{"size": "micro",')
    with pytest.raises(ObliviateError, match="obliviate.json: line 1 column [0-9]*: not valid JSON"):
        load_model(d)
    said = _cli_one_line(capsys, d, world_dir, tmp_path)
    assert re.search(r"obliviate.json: line 1 column [0-9]+: not valid JSON", said), said
    (d / "obliviate.json").write_text('["micro"]')
    with pytest.raises(ObliviateError, match="obliviate.json: expected a JSON object, got list"):
        load_model(d)
