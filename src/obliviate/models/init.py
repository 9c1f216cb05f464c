"""A tiny Llama-architecture base model with a byte-level BPE tokenizer trained on a world's text.

    init_model("micro", data="data/tiny", out="models/base", seed=0)

The result is a standard Hugging Face directory (safetensors + tokenizer files), so
everything downstream loads it with `AutoModelForCausalLM` / `AutoTokenizer` like any
real model. The weights are random: training from scratch happens in `finetune`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from obliviate import ObliviateError
from obliviate.reader import read_json_or_lines


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


@dataclass(frozen=True)
class TrainingDefaults:
    """Learning rates, epochs and batch size used when a config leaves them unset (None)."""

    finetune_lr: float
    unlearn_lr: float
    unlearn_epochs: float
    unlearn_batch_size: int


# The one table of per-size training defaults (finetune: target/retain models and the relearning attacker's
# training; unlearn: every recipe). Models of another size (real pretrained ones) take PAPER_DEFAULTS.
# finetune lr: fits each size in a few minutes on 2 CPU cores. Measured on the demo world (tiny, 20 epochs,
# batch 32): 2e-3 leaves the answer probability at ~0.75 after 10 epochs, 3e-3 reaches 0.98 on
# forget10/retain90 and 0.95 on world facts (~60 s on 2 cores).
# unlearn: the papers' values (lr 1e-5, 5 epochs, effective batch 32) are for 7B models; from-scratch tiny
# models need a far larger lr. "tiny" was tuned on the demo world (tiny target finetuned 20 epochs on
# full+world_facts; forget10 = 40 items vs retain90 = 360; 2 CPU cores, seed 0): lr 5e-4 x 5 epochs x batch 4
# (50 steps, ~3-5 s per recipe) takes the forget answer probability from 0.98 to <= 0.02 for ga/npo/me
# (+gd, +sam) and to ~0.55 for idk, with retain probability 0.85-0.91 except ga+gd (0.73). Tried: 1e-3 x 5 x 8
# (retain 0.62-0.87), 5e-4 x 5 x 8 (forget fell, retain 0.41-0.91), 3e-4 x 10 x 8 and 5e-4 x 10 x 8 (similar
# retain, twice the time), 7e-4 x 4 x 4 (similar). "micro" (unit tests) unlearns at its finetune lr; "small"
# is an unmeasured interpolation.
TRAINING_DEFAULTS = {
    "micro": TrainingDefaults(finetune_lr=3e-3, unlearn_lr=3e-3, unlearn_epochs=5, unlearn_batch_size=4),
    "tiny": TrainingDefaults(finetune_lr=3e-3, unlearn_lr=5e-4, unlearn_epochs=5, unlearn_batch_size=4),
    "small": TrainingDefaults(finetune_lr=1e-3, unlearn_lr=3e-4, unlearn_epochs=5, unlearn_batch_size=8),
}
PAPER_DEFAULTS = TrainingDefaults(finetune_lr=1e-5, unlearn_lr=1e-5, unlearn_epochs=5, unlearn_batch_size=32)


def training_defaults(size: str | None) -> TrainingDefaults:
    """The defaults of an obliviate model size (`init-model --size`), else the papers' values."""
    return TRAINING_DEFAULTS.get(size or "", PAPER_DEFAULTS)


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
        records = read_json_or_lines(f)  # a .json may hold JSON Lines (TOFU's layout)
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
    """A randomly initialised `LlamaForCausalLM` of architecture `size` (tied embeddings)."""
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
    save_model(model, tokenizer, out, extra={"size": size, "architecture": asdict(SIZES[size]), "seed": seed,
                                             "data": str(data), "params": sum(p.numel() for p in model.parameters())})
    return model, tokenizer
