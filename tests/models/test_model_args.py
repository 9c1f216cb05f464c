"""Issue 26 §2: `--model` as the ecosystem passes it (hub id, local dir, alias, PEFT adapter dir), `--model-args`
parsed in one place, and a hub id that can be neither found nor reached fails in < 2 s in one line."""

import json
import shutil
import time

import pytest
import torch

from obliviate import ObliviateError
from obliviate.cli import build_parser, main
from obliviate.models import hub
from obliviate.models.loading import load_model


def test_model_args_parse_to_from_pretrained_keywords():
    args = hub.parse_model_args("dtype=bfloat16, revision=v1.0,device_map=auto,attn_implementation=sdpa")
    assert args == {"dtype": "bfloat16", "revision": "v1.0", "device_map": "auto", "attn_implementation": "sdpa"}
    assert hub.from_pretrained_kwargs(args) == {"dtype": torch.bfloat16, "revision": "v1.0", "device_map": "auto",
                                                "attn_implementation": "sdpa"}
    assert hub.from_pretrained_kwargs({}) == {"dtype": torch.float32}
    assert hub.parse_model_args(None) == {} and hub.parse_model_args("") == {}


@pytest.mark.parametrize("text, message", [
    ("dtype=bf16", "dtype='bf16' is not one of auto, float32, float16, bfloat16"),
    ("precision=bfloat16", "unknown key 'precision' (keys: dtype, revision, device_map, attn_implementation)"),
    ("dtype", "'dtype' is not key=value"),
    ("dtype=float16,dtype=bfloat16", "dtype given twice"),
    ("revision=", "revision='' is not one of a value"),
])
def test_bad_model_args_are_one_line(text, message):
    with pytest.raises(ObliviateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        hub.parse_model_args(text)


@pytest.mark.parametrize("verb", ["eval", "unlearn", "finetune", "continual", "realworld", "bench", "attack relearn",
                                  "attack jailbreak", "attack mia"])
def test_every_language_model_verb_takes_model_args(verb):
    words = verb.split()
    args, _ = build_parser(words[0]).parse_known_args(words + ["--model", "m", "--data", "d", "--out", "o",
                                                               "--model-args", "dtype=bfloat16"])
    assert args.model_args == "dtype=bfloat16"


def test_model_args_reach_the_model(base_dir):
    model, _ = load_model(base_dir, model_args="dtype=bfloat16,attn_implementation=eager")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"


def test_bad_model_args_in_a_verb_is_one_line(base_dir, world_dir, tmp_path, capsys):
    assert main(["eval", "--model", str(base_dir), "--data", str(world_dir), "--out", str(tmp_path / "e"),
                 "--model-args", "dtype=fp8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dtype='fp8'" in err[0]


def _adapter(make_adapter, base_dir, tmp_path, *, relative=False):
    """A LoRA adapter on the micro model (the `make_adapter` fixture); `relative`: its base copied beside it and
    named relatively."""
    out = tmp_path / "adapter"
    ids, expected = make_adapter(out, base_name="base" if relative else None)
    if relative:
        shutil.copytree(base_dir, out / "base")
    return out, ids, expected


def test_peft_adapter_dir_loads_its_base_and_merges(make_adapter, base_dir, tmp_path):
    adapter, ids, expected = _adapter(make_adapter, base_dir, tmp_path)
    model, tok = load_model(adapter)
    assert type(model).__name__ == "LlamaForCausalLM"  # merged: a plain model
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
        base = load_model(base_dir)[0](input_ids=ids).logits
    assert (base - expected).abs().max() > 1e-3  # the adapter changed something
    kept = load_model(adapter, merge_adapter=False, with_tokenizer=False)
    assert type(kept).__name__ == "PeftModelForCausalLM"


def test_peft_adapter_with_a_relative_base_and_in_eval(make_adapter, base_dir, world_dir, tmp_path):
    adapter, _, _ = _adapter(make_adapter, base_dir, tmp_path, relative=True)
    assert load_model(adapter)[0] is not None
    assert main(["eval", "--model", str(adapter), "--data", str(world_dir), "--out", str(tmp_path / "ev"),
                 "max_items=2", "max_new_tokens=4", "embedder=null"]) == 0
    assert (tmp_path / "ev" / "eval.json").is_file()


def test_peft_adapter_without_a_base_is_one_line(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, d / "adapter_model.safetensors")
    with pytest.raises(ObliviateError, match="no base_model_name_or_path"):
        load_model(d)


def test_unreachable_hub_fails_fast_in_one_line(monkeypatch, capsys):
    """The hub mocked as unreachable (every connection refused after a 5 s hang): the probe gives up at 1.5 s."""
    import socket

    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def hang(*a, **k):
        time.sleep(5)
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", hang)
    t = time.perf_counter()
    assert main(["eval", "--model", "some-org/model-xyz", "--data", "d", "--out", "o"]) == 2
    assert time.perf_counter() - t < 2.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "some-org/model-xyz" in err[0] and "models--some-org--model-xyz" in err[0]
    assert "unreachable" in err[0]


def test_offline_hub_id_fails_fast(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    t = time.perf_counter()
    with pytest.raises(ObliviateError, match="while the hub is offline"):
        load_model("some-org/model-xyz")
    assert time.perf_counter() - t < 2.0
