"""LoRA adapters (peft) for fine-tuning and unlearning: wrap before training, merge after.

    model = add_lora(model, r=8, alpha=16)   # only the adapters train
    ...
    model = model.merge_and_unload()         # a plain model again, W ← W + (α/r)·B·A
"""

from __future__ import annotations


def add_lora(model, *, r: int, alpha: int, dropout: float = 0.0):
    """`model` with a LoRA adapter on every linear layer (peft `target_modules="all-linear"`), base frozen."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear",
                                            lora_dropout=dropout, task_type="CAUSAL_LM"))
