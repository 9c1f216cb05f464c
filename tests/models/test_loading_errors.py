"""Issue 9: model/tokenizer loading failures are one clear line naming the file, not a traceback."""

import json
import shutil

import pytest

from obliviate import ObliviateError
from obliviate.cli import main
from obliviate.models.loading import load_model


def test_truncated_safetensors_names_the_file(base_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(base_dir, d)
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ObliviateError, match=f"{f}: corrupt or truncated safetensors file"):
        load_model(d)
    f.write_bytes(b"\0" * 64)
    with pytest.raises(ObliviateError, match="corrupt or truncated"):
        load_model(d)


def _with_tokenizer_of_size(base_dir, tmp_path, n):
    from transformers import AutoTokenizer

    d = tmp_path / f"v{n}"
    shutil.copytree(base_dir, d)
    tok = AutoTokenizer.from_pretrained(base_dir)
    have = len(tok)
    if n > have:
        tok.add_tokens([f"<extra{i}>" for i in range(n - have)])
        tok.save_pretrained(d)
    else:  # a smaller vocabulary: shrink the saved tokenizer.json's BPE vocab
        t = json.loads((d / "tokenizer.json").read_text())
        vocab = t["model"]["vocab"]
        keep = dict(sorted(vocab.items(), key=lambda kv: kv[1])[: n - len(t.get("added_tokens", []))])
        t["model"]["vocab"] = keep
        t["model"]["merges"] = [m for m in t["model"]["merges"]
                                if all(p in keep for p in (m.split(" ") if isinstance(m, str) else m))
                                and "".join(m.split(" ") if isinstance(m, str) else m) in keep]
        (d / "tokenizer.json").write_text(json.dumps(t))
    return d


def test_tokenizer_larger_or_smaller_than_the_model_vocab_is_refused(base_dir, tmp_path):
    from transformers import AutoTokenizer

    rows = len(AutoTokenizer.from_pretrained(base_dir))
    with pytest.raises(ObliviateError, match=f"tokenizer has {rows + 5} tokens but the model's embedding only"):
        load_model(_with_tokenizer_of_size(base_dir, tmp_path, rows + 5))
    with pytest.raises(ObliviateError, match="the tokenizer does not belong to this model"):
        load_model(_with_tokenizer_of_size(base_dir, tmp_path, rows - 20))


def test_nonexistent_local_model_path_says_so(tmp_path, capsys):
    with pytest.raises(ObliviateError, match="no such model directory"):
        load_model(tmp_path / "nope" / "model")
    with pytest.raises(ObliviateError, match="no such model directory"):
        load_model("./runs/missing")
    assert main(["eval", "--model", str(tmp_path / "a" / "b"), "--data", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no such model directory" in err and "Repo id" not in err
