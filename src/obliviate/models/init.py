"""A tiny Llama-architecture base model with a byte-level BPE tokenizer trained on a world's text.

    init_model("micro", data="data/tiny", out="models/base", seed=0)

The result is a standard Hugging Face directory (safetensors + tokenizer files), so
everything downstream loads it with `AutoModelForCausalLM` / `AutoTokenizer` like any
real model. The weights are random: training from scratch happens in `finetune`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from obliviate import ObliviateError


@dataclass(frozen=True)
class ModelSize:
    vocab: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int = 256


SIZES = {
    "micro": ModelSize(vocab=512, hidden=64, layers=2, heads=4, intermediate=128),  # ~0.1M params, unit tests
    "tiny": ModelSize(vocab=1024, hidden=128, layers=4, heads=4, intermediate=320),  # ~0.9M, the demo
    "small": ModelSize(vocab=2048, hidden=256, layers=6, heads=8, intermediate=688),  # ~5M
}
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def world_text(data: str | Path) -> list[str]:
    """Every question, answer, paraphrase and perturbation in a directory of split files, deduplicated, sorted."""
    root = Path(data)
    files = sorted(root.glob("*.json")) + sorted(root.glob("*.jsonl"))
    if not files:
        raise ObliviateError(f"{root}: no .json/.jsonl split files to train a tokenizer on")
    texts: set[str] = set()
    for f in files:
        if f.name in ("world.json", "run.json"):
            continue
        raw = f.read_text()
        try:
            records = json.loads(raw) if f.suffix == ".json" else [json.loads(x) for x in raw.splitlines() if x.strip()]
        except json.JSONDecodeError as e:
            raise ObliviateError(f"{f}: not valid JSON ({e.msg})") from None
        for r in records if isinstance(records, list) else []:
            if isinstance(r, str):
                texts.add(r)
            elif isinstance(r, dict):
                for v in r.values():
                    if isinstance(v, str):
                        texts.add(v)
                    elif isinstance(v, list):
                        texts.update(x for x in v if isinstance(x, str))
    return sorted(texts)


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (any text encodes) with <pad> <s> </s> <unk>, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = texts + ["Question: \nAnswer:"]
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", model_max_length=1024)


def build_model(size: str, tokenizer, seed: int = 0):
    """A randomly initialised `LlamaForCausalLM` of preset `size` (tied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if size not in SIZES:
        raise ObliviateError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    s = SIZES[size]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=s.hidden, num_hidden_layers=s.layers,
                         num_attention_heads=s.heads, num_key_value_heads=s.heads, intermediate_size=s.intermediate,
                         max_position_embeddings=s.max_positions, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, rms_norm_eps=1e-5)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def init_model(size: str, data: str | Path, out: str | Path, *, seed: int = 0):
    """Train the tokenizer on `data`'s text, build the model, save both to `out`; returns (model, tokenizer)."""
    from obliviate.models.loading import check_output_dir, save_model

    if size not in SIZES:
        raise ObliviateError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    out = check_output_dir(out)
    tokenizer = train_tokenizer(world_text(data), SIZES[size].vocab)
    model = build_model(size, tokenizer, seed)
    save_model(model, tokenizer, out, extra={"size": size, "preset": asdict(SIZES[size]), "seed": seed,
                                             "data": str(data), "params": sum(p.numel() for p in model.parameters())})
    return model, tokenizer
