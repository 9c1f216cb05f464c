import json

import pytest
import torch


@pytest.fixture
def make_adapter(base_dir):
    """make(out, base_name=None) -> (input ids, the adapted model's logits): a LoRA adapter made with peft on the
    micro model, saved to `out`, with non-zero B so that it changes the outputs; `base_name` replaces its
    `base_model_name_or_path`."""
    from peft import LoraConfig, get_peft_model

    from obliviate.models.loading import load_model

    def make(out, base_name=None):
        model, _ = load_model(base_dir)
        peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear",
                                                      task_type="CAUSAL_LM"))
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
        peft_model.save_pretrained(out)
        assert not (out / "config.json").exists() and (out / "adapter_model.safetensors").is_file()
        if base_name is not None:
            cfg = json.loads((out / "adapter_config.json").read_text())
            cfg["base_model_name_or_path"] = base_name
            (out / "adapter_config.json").write_text(json.dumps(cfg))
        ids = torch.tensor([[1, 5, 9, 12]])
        with torch.no_grad():
            return ids, peft_model(input_ids=ids).logits

    return make
