"""Issue 26 §2: `--model user/adapter-repo` where the hub repo holds a PEFT adapter (adapter_config.json, no
config.json): its `base_model_name_or_path` is loaded (here also a hub id), then the adapter on it.

The hub is a temporary folder in huggingface_hub's own cache layout
(`models--user--repo/{refs/main, snapshots/<sha>/...}`) with the hub offline: never the network."""

import json
import shutil

import pytest
import torch

from obliviate import ObliviateError

SHA = "0123456789abcdef0123456789abcdef01234567"


def _publish(cache, repo_id: str, folder) -> None:
    """`folder`'s files as the cached snapshot of `repo_id` on its main branch."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / SHA)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _make_adapter(base_dir, out):
    """A LoRA adapter made with peft on the micro model (non-zero B: it changes the outputs), its base named as
    the hub id user/micro-base. Returns (input ids, the adapted model's logits)."""
    from peft import LoraConfig, get_peft_model

    from obliviate.models.loading import load_model

    model, _ = load_model(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear",
                                                  task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    peft_model.save_pretrained(out)
    cfg = json.loads((out / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "user/micro-base"
    (out / "adapter_config.json").write_text(json.dumps(cfg))
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        return ids, peft_model(input_ids=ids).logits


def test_a_hub_adapter_repo_loads_its_hub_base_and_merges(base_dir, tmp_path, fake_hub):
    from obliviate.models.loading import load_model

    ids, expected = _make_adapter(base_dir, tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "config.json").exists()
    _publish(fake_hub, "user/micro-lora", tmp_path / "adapter")
    _publish(fake_hub, "user/micro-base", base_dir)
    model, tok = load_model("user/micro-lora")
    assert type(model).__name__ == "LlamaForCausalLM" and tok is not None  # merged: a plain model
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
        base = load_model("user/micro-base", with_tokenizer=False)(input_ids=ids).logits
    assert (base - expected).abs().max() > 1e-3  # the adapter was applied
    kept = load_model("user/micro-lora", merge_adapter=False, with_tokenizer=False)
    assert type(kept).__name__ == "PeftModelForCausalLM"


def test_a_hub_adapter_whose_base_is_not_cached_is_one_line(base_dir, tmp_path, fake_hub):
    from obliviate.models.loading import load_model

    _make_adapter(base_dir, tmp_path / "adapter")
    _publish(fake_hub, "user/micro-lora", tmp_path / "adapter")
    with pytest.raises(ObliviateError, match=r"^user/micro-base: not a local directory, and not in the Hugging "
                                             r"Face cache \(.*models--user--micro-base\) while the hub is offline"):
        load_model("user/micro-lora")
