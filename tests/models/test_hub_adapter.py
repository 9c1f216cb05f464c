"""Issue 26 §2: `--model user/adapter-repo` where the hub repo holds a PEFT adapter (adapter_config.json, no
config.json): its `base_model_name_or_path` is loaded (here also a hub id), then the adapter on it.

The hub is a temporary folder in huggingface_hub's own cache layout
(`models--user--repo/{refs/main, snapshots/<sha>/...}`) with the hub offline: never the network."""

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


def test_a_hub_adapter_repo_loads_its_hub_base_and_merges(make_adapter, base_dir, tmp_path, fake_hub):
    from obliviate.models.loading import load_model

    ids, expected = make_adapter(tmp_path / "adapter", base_name="user/micro-base")
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


def test_a_hub_adapter_whose_base_is_not_cached_is_one_line(make_adapter, tmp_path, fake_hub):
    from obliviate.models.loading import load_model

    make_adapter(tmp_path / "adapter", base_name="user/micro-base")
    _publish(fake_hub, "user/micro-lora", tmp_path / "adapter")
    with pytest.raises(ObliviateError, match=r"^user/micro-base: not a local directory, and not in the Hugging "
                                             r"Face cache \(.*models--user--micro-base\) while the hub is offline"):
        load_model("user/micro-lora")
